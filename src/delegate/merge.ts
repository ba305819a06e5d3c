/**
 * Pure merges of two runtimes' answers.
 *
 * Every merged List*Response (and ImageFsInfoResponse) consists of repeated fields only, and
 * protobuf defines the concatenation of two encoded messages as their merge, with repeated
 * fields appended: so a merged list is vmlet's bytes followed by the delegate's, with no decode
 * and re-encode of the delegate's records.
 *
 * Status is merged field by field: a condition is true only when it is true on both sides (the
 * node can only do what both runtimes can), and a false one says which side is not ready.
 */
import type { StatusResponse } from '../cri/generated/runtime/v1/StatusResponse.js';
import type { RuntimeCondition } from '../cri/generated/runtime/v1/RuntimeCondition.js';

export function concatEncoded(parts: readonly Buffer[]): Buffer {
  return Buffer.concat(parts);
}

/** The delegate's Status answer, or why there is none. */
export type DelegateStatus = { ok: true; response: StatusResponse } | { ok: false; code: number; message: string };

const REQUIRED_CONDITIONS = ['RuntimeReady', 'NetworkReady'] as const;

export function mergeStatus(vmlet: StatusResponse, delegate: DelegateStatus, endpoint: string): StatusResponse {
  const own = vmlet.status?.conditions ?? [];
  const theirs = delegate.ok ? (delegate.response.status?.conditions ?? []) : [];
  const conditions: RuntimeCondition[] = [];
  const types = [...new Set([...own.map((c) => c.type ?? ''), ...REQUIRED_CONDITIONS, ...theirs.map((c) => c.type ?? '')])].filter((t) => t !== '');
  for (const type of types) {
    const mine = own.find((c) => c.type === type);
    const other = theirs.find((c) => c.type === type);
    if (mine && mine.status !== true) {
      conditions.push({ ...mine });
    } else if (!delegate.ok && (REQUIRED_CONDITIONS as readonly string[]).includes(type)) {
      conditions.push({ type, status: false, reason: 'ContainerRuntimeUnavailable', message: `container runtime ${endpoint} does not answer: ${delegate.message}` });
    } else if (other && other.status !== true) {
      conditions.push({ type, status: false, reason: other.reason || 'ContainerRuntimeNotReady', message: `container runtime ${endpoint}: ${other.message ?? ''}` });
    } else if (mine || other) {
      conditions.push({ type, status: true });
    }
  }
  const response: StatusResponse = { status: { conditions } };
  const info: Record<string, string> = { ...(vmlet.info ?? {}) };
  if (delegate.ok) {
    for (const [k, v] of Object.entries(delegate.response.info ?? {})) info[`delegate.${k}`] = v;
  }
  if (vmlet.info) response.info = info;
  return response;
}
