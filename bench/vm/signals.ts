/**
 * When did the guest get its address? Read from two real signals, both pure functions here:
 * - netd's own debug line "sent DHCP reply" (reply "ack", sandboxId): logged by vmlet's DHCP
 *   server in the send callback, i.e. when the ACK left the socket. Its pino `time` is epoch ms.
 * - the guest's console protocol (images/README.md) in the CRI log file: "VMLET-GUEST boot …",
 *   "VMLET-GUEST ip eth0 <ip>/<prefix>", "VMLET-GUEST ready". Their timestamps are when vmlet's
 *   console pump read the bytes, so they trail the guest by the pump's polling.
 */
import type { LogLine } from '../lib/daemon.js';

export interface DhcpAck {
  /** Epoch milliseconds (pino's `time`). */
  atMs: number;
  mac?: string;
  yiaddr?: string;
}

/** The first DHCP ACK netd logged for `sandboxId`, or undefined. Pure. */
export function firstDhcpAck(lines: readonly LogLine[], sandboxId: string): DhcpAck | undefined {
  let first: DhcpAck | undefined;
  for (const l of lines) {
    if (l.msg !== 'sent DHCP reply' || l.reply !== 'ack' || l.sandboxId !== sandboxId) continue;
    const atMs = Number(l.time);
    if (!Number.isFinite(atMs)) continue;
    if (first === undefined || atMs < first.atMs) {
      first = { atMs, ...(typeof l.mac === 'string' ? { mac: l.mac } : {}), ...(typeof l.yiaddr === 'string' ? { yiaddr: l.yiaddr } : {}) };
    }
  }
  return first;
}

const RFC3339 = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/;

/** An RFC 3339 timestamp with up to nanosecond digits → epoch ms (fraction kept). NaN when malformed. Pure. */
export function rfc3339ToEpochMs(ts: string): number {
  const m = RFC3339.exec(ts);
  if (!m) return NaN;
  const whole = Date.parse(`${m[1]}${m[3]}`);
  const fraction = m[2] ? Number(`0.${m[2]}`) * 1000 : 0;
  return whole + fraction;
}

export interface CriLogLine {
  atMs: number;
  stream: string;
  text: string;
}

/**
 * The lines of a CRI container log (`<RFC3339Nano> <stream> <P|F> <content>`), partial entries
 * joined; a line's time is that of its last entry. Malformed lines and an unfinished last line are skipped. Pure.
 */
export function parseCriLog(text: string): CriLogLine[] {
  const out: CriLogLine[] = [];
  let partial = '';
  for (const raw of text.split('\n')) {
    if (raw === '') continue;
    const m = /^(\S+) (stdout|stderr) ([PF]) (.*)$/s.exec(raw);
    if (!m) continue;
    const atMs = rfc3339ToEpochMs(m[1]!);
    if (!Number.isFinite(atMs)) continue;
    partial += m[4]!;
    if (m[3] === 'F') {
      out.push({ atMs, stream: m[2]!, text: partial });
      partial = '';
    }
  }
  return out;
}

export interface GuestMarks {
  /** "VMLET-GUEST boot <kernel>": the guest's /init runs (firmware and kernel done). */
  bootAtMs?: number;
  /** "VMLET-GUEST ip <nic> <ip>/<prefix>": udhcpc applied its lease. */
  ipAtMs?: number;
  ip?: string;
  /** "VMLET-GUEST ready": seed read, responder up. */
  readyAtMs?: number;
  /** Lines saying something failed in the guest ("dhcp-failed", "module-failed", …). */
  failures: string[];
}

const FAILURE = /^VMLET-GUEST (\S*(?:failed|invalid|missing)\S*)/;

/** The guest protocol lines that time its boot, for the NIC `nic`. Pure. */
export function guestMarks(lines: readonly CriLogLine[], nic = 'eth0'): GuestMarks {
  const marks: GuestMarks = { failures: [] };
  for (const l of lines) {
    if (marks.bootAtMs === undefined && l.text.startsWith('VMLET-GUEST boot ')) marks.bootAtMs = l.atMs;
    const ip = new RegExp(`^VMLET-GUEST ip ${nic} (\\S+)$`).exec(l.text);
    if (ip && marks.ipAtMs === undefined) {
      marks.ipAtMs = l.atMs;
      marks.ip = ip[1]!;
    }
    if (marks.readyAtMs === undefined && l.text === 'VMLET-GUEST ready') marks.readyAtMs = l.atMs;
    const failure = FAILURE.exec(l.text);
    if (failure) marks.failures.push(l.text);
  }
  return marks;
}

/** `network.dhcp.stats.acks` of a PodSandboxStatus verbose `info.info` document (netd's status). Pure. */
export function acksFromVerboseInfo(info: string | undefined): number | undefined {
  if (!info) return undefined;
  try {
    const doc = JSON.parse(info) as { network?: { dhcp?: { stats?: { acks?: unknown } } } };
    const acks = doc.network?.dhcp?.stats?.acks;
    return typeof acks === 'number' ? acks : undefined;
  } catch {
    return undefined;
  }
}
