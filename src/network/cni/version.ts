/** CNI spec versions vmlet speaks: 0.3.0 brought results and chaining, which everything here relies on. */
export const SUPPORTED_CNI_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_CNI_VERSIONS)[number];

export const OLDEST_CNI_VERSION: CniVersion = '0.3.0';

/** [major, minor, patch] of a "x.y.z" version string, or undefined when it is not one. */
export function parseVersion(text: unknown): [number, number, number] | undefined {
  if (typeof text !== 'string') return undefined;
  const m = /^(\d{1,4})\.(\d{1,4})\.(\d{1,4})$/.exec(text);
  if (!m) return undefined;
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

/** Negative, zero or positive like a sort comparator; both must be valid versions. */
export function compareVersions(a: string, b: string): number {
  const pa = parseVersion(a);
  const pb = parseVersion(b);
  if (!pa || !pb) throw new TypeError(`not a CNI version: ${pa ? b : a}`);
  for (let i = 0; i < 3; i++) {
    if (pa[i] !== pb[i]) return pa[i]! - pb[i]!;
  }
  return 0;
}

export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_CNI_VERSIONS as readonly string[]).includes(v);
}

/** CHECK arrived in 0.4.0 (and so did passing prevResult on DEL). */
export function supportsCheck(v: string): boolean {
  return compareVersions(v, '0.4.0') >= 0;
}

/** From 0.4.0 on, DEL gets the cached ADD result as prevResult; 0.3.x plugins never see one. */
export function passesPrevResultOnDel(v: string): boolean {
  return compareVersions(v, '0.4.0') >= 0;
}
