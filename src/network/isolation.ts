/**
 * Keeps the VM's DHCP inside the pod: nftables bridge-family rules in the pod netns so that DHCP
 * (UDP 67/68, DHCPv6's 546/547) and IPv6 router discovery (ICMPv6 RS/RA) never cross the CNI veth
 * ("uplink") in either direction, while everything else is bridged. Without them the VM's
 * DISCOVER would reach the CNI network (and a real DHCP server there), and a DHCP server on the
 * pod network could answer the VM instead of ours.
 *
 * One table per wired interface, named after its pod bridge, so interfaces are installed and
 * removed independently, each with one atomic `nft -f` transaction. The rules cover all four paths
 * a frame can take through the pod bridge: uplink→VM and VM→uplink (forward hook), uplink→local
 * stack (input hook: a DHCP client outside must not reach our server) and local stack→uplink
 * (output hook: our server's replies must not leak out). 802.1Q/802.1ad frames are dropped on the
 * uplink as well: a tagged frame would carry DHCP past the UDP match, and a CNI pod network has no
 * use for VLAN tags from a VM.
 *
 * The same table gives the VM its DHCP server's unicast address (dhcp/server_address.ts): ARP for
 * it never crosses the uplink, and, once the bridge's MAC is known, a prerouting rule hands the
 * VM's unicast DHCP to that address (whatever MAC it went to: the gateway's, usually) to the local
 * stack, where the server's socket is.
 *
 * nft's bridge family works on this kernel (checked: rules load and count), so no ebtables fallback.
 */
import { isIPv4 } from 'node:net';
import { FailedPreconditionError, InternalError } from '../errors.js';
import { DHCP_SERVER_ADDRESS } from './dhcp/server_address.js';
import { netnsPath } from './netns.js';
import { runTool, ToolFailedError } from './iproute.js';
import { assertInterfaceName } from './names.js';

export interface IsolationSpec {
  /** The CNI veth: the only bridge port that leads out of the pod. */
  uplink: string;
  /** The pod bridge the uplink is a port of; names the table. */
  bridge: string;
  /**
   * The bridge's MAC, once it has its final one: the VM's unicast DHCP to the server address is
   * readdressed to it so the bridge delivers it locally. Unset (a warm netns's prewired table),
   * renewals at T1 are not redirected until the wiring installs the table again with it.
   */
  bridgeMac?: string;
  /**
   * The VM's port on the bridge (its TAP); required with bridgeMac. The redirect takes only the
   * frames that come in through it: a bridge-family hook sees the frames of every bridge in the
   * netns, so a rule matching "not from the uplink" would readdress another network's renewals to
   * this bridge's MAC, where its own bridge drops them (seen: a second network's T1 renewals lost).
   */
  tap?: string;
  /**
   * More addresses of the bridge whose ARP stays on this side of the uplink, like the server
   * address's (a Calico fake gateway: only the bridge may answer for it).
   */
  localAddresses?: string[];
}

/** Rule comments double as the keys of the counters `status` reports. */
export const ISOLATION_RULES = [
  { chain: 'forward', match: 'iifname', what: 'dhcp', comment: 'dhcp-from-uplink' },
  { chain: 'forward', match: 'oifname', what: 'dhcp', comment: 'dhcp-to-uplink' },
  { chain: 'input', match: 'iifname', what: 'dhcp', comment: 'dhcp-from-uplink-to-local' },
  { chain: 'output', match: 'oifname', what: 'dhcp', comment: 'dhcp-from-local-to-uplink' },
  { chain: 'forward', match: 'iifname', what: 'vlan', comment: 'vlan-from-uplink' },
  { chain: 'forward', match: 'oifname', what: 'vlan', comment: 'vlan-to-uplink' },
  { chain: 'input', match: 'iifname', what: 'vlan', comment: 'vlan-from-uplink-to-local' },
  { chain: 'output', match: 'oifname', what: 'vlan', comment: 'vlan-from-local-to-uplink' },
  { chain: 'forward', match: 'iifname', what: 'server-arp', comment: 'server-arp-from-uplink' },
  { chain: 'forward', match: 'oifname', what: 'server-arp', comment: 'server-arp-to-uplink' },
  { chain: 'input', match: 'iifname', what: 'server-arp', comment: 'server-arp-from-uplink-to-local' },
  { chain: 'output', match: 'oifname', what: 'server-arp', comment: 'server-arp-from-local-to-uplink' },
  { chain: 'forward', match: 'iifname', what: 'router-discovery', comment: 'ra-from-uplink' },
  { chain: 'forward', match: 'oifname', what: 'router-discovery', comment: 'ra-to-uplink' },
  { chain: 'input', match: 'iifname', what: 'router-discovery', comment: 'ra-from-uplink-to-local' },
  { chain: 'output', match: 'oifname', what: 'router-discovery', comment: 'ra-from-local-to-uplink' },
] as const;
/** The rule that readdresses the VM's unicast DHCP (from its TAP) to the server address (only with a bridge MAC). */
export const SERVER_REDIRECT_RULE = { chain: 'prerouting', match: 'iifname', comment: 'dhcp-to-server-address' } as const;

function payload(what: (typeof ISOLATION_RULES)[number]['what'], spec: IsolationSpec): string {
  switch (what) {
    case 'dhcp':
      // DHCPv4 (67, 68) and DHCPv6 (546, 547).
      return 'udp dport { 67-68, 546-547 }';
    case 'router-discovery':
      // The bridge is the VM's IPv6 router (ipv6/tap_ipv6.ts): its advertisements stay on this
      // side, and neither the pod network's routers nor its solicitations reach the VM or us.
      return 'icmpv6 type { nd-router-solicit, nd-router-advert }';
    case 'vlan':
      return 'ether type { 8021q, 8021ad }';
    case 'server-arp': {
      // Requests for the addresses and answers from them: either way they stay on this side of the uplink.
      const local = [DHCP_SERVER_ADDRESS, ...(spec.localAddresses ?? [])];
      return `arp daddr ip ${local.length === 1 ? local[0] : `{ ${local.join(', ')} }`}`;
    }
  }
}
export type IsolationRuleName = (typeof ISOLATION_RULES)[number]['comment'] | typeof SERVER_REDIRECT_RULE.comment;

const CHAINS = ['forward', 'input', 'output'] as const;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
export const ISOLATION_FAMILY = 'bridge';

function checkSpec(spec: IsolationSpec): void {
  assertInterfaceName(spec.uplink);
  assertInterfaceName(spec.bridge);
  if (spec.bridgeMac !== undefined && !MAC.test(spec.bridgeMac)) throw new InternalError(`bridge MAC ${JSON.stringify(spec.bridgeMac)} is not a lower-case MAC`);
  if (spec.bridgeMac !== undefined && spec.tap === undefined) throw new InternalError('a bridge MAC without the TAP whose frames the redirect takes');
  if (spec.tap !== undefined) assertInterfaceName(spec.tap);
  for (const address of spec.localAddresses ?? []) {
    if (!isIPv4(address)) throw new InternalError(`local address ${JSON.stringify(address)} is not an IPv4 address`);
  }
}

export function isolationTableName(spec: IsolationSpec): string {
  checkSpec(spec);
  return `vmlet-${spec.bridge}`;
}

/**
 * The nft script that installs (or replaces) the table for `spec`, as one transaction. "add table"
 * then "flush table" empties an existing table of rules and is a no-op on a new one, so installing
 * twice leaves one set of rules. (Replacing by "delete table" would be simpler, but any deletion
 * makes the commit wait for an RCU grace period: measured 24 ms per install against 9 ms.)
 */
export function isolationScript(spec: IsolationSpec): string {
  const table = isolationTableName(spec);
  const lines = [`add table ${ISOLATION_FAMILY} ${table}`, `flush table ${ISOLATION_FAMILY} ${table}`];
  lines.push(`table ${ISOLATION_FAMILY} ${table} {`);
  for (const chain of CHAINS) {
    lines.push(`\tchain ${chain} {`, `\t\ttype filter hook ${chain} priority filter; policy accept;`);
    for (const rule of ISOLATION_RULES.filter((r) => r.chain === chain)) {
      lines.push(`\t\t${rule.match} "${spec.uplink}" ${payload(rule.what, spec)} counter drop comment "${rule.comment}"`);
    }
    lines.push('\t}');
  }
  // Always declared, so a reinstall without the MAC empties it like the others.
  lines.push(`\tchain ${SERVER_REDIRECT_RULE.chain} {`, `\t\ttype filter hook prerouting priority filter; policy accept;`);
  if (spec.bridgeMac !== undefined) {
    // "pkttype host" alone is not enough: the bridge delivers locally only frames to its own MAC.
    lines.push(
      `\t\t${SERVER_REDIRECT_RULE.match} "${spec.tap}" ip daddr ${DHCP_SERVER_ADDRESS} udp dport 67 counter ` +
        `ether daddr set ${spec.bridgeMac} meta pkttype set host comment "${SERVER_REDIRECT_RULE.comment}"`,
    );
  }
  lines.push('\t}');
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

/** The nft script that removes the table for `spec`, and succeeds when it is already gone. */
export function isolationRemovalScript(spec: IsolationSpec): string {
  const table = isolationTableName(spec);
  return `add table ${ISOLATION_FAMILY} ${table}\ndelete table ${ISOLATION_FAMILY} ${table}\n`;
}

export interface Counter {
  packets: number;
  bytes: number;
}

export interface IsolationStatus {
  /** Every expected rule is present once, matching the spec's uplink, and nothing else is. */
  complete: boolean;
  /** Drop counters by rule comment; rules that are missing are absent here. */
  counters: Partial<Record<IsolationRuleName, Counter>>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads `nft -j list table` output for `spec`'s table into counters and a completeness verdict. Pure. */
export function parseIsolationStatus(listing: unknown, spec: IsolationSpec): IsolationStatus {
  const table = isolationTableName(spec);
  if (!isRecord(listing) || !Array.isArray(listing.nftables)) {
    throw new InternalError('nft -j list printed no "nftables" array');
  }
  const counters: IsolationStatus['counters'] = {};
  const expectedRules = [
    ...ISOLATION_RULES.map((r) => ({ ...r, verdict: 'drop' as const })),
    ...(spec.bridgeMac !== undefined ? [{ ...SERVER_REDIRECT_RULE, verdict: 'mangle' as const }] : []),
  ];
  let matching = 0;
  let rules = 0;
  for (const item of listing.nftables) {
    if (!isRecord(item) || !isRecord(item.rule)) continue;
    const rule = item.rule;
    if (rule.table !== table || rule.family !== ISOLATION_FAMILY) continue;
    rules++;
    const expected = expectedRules.find((r) => r.comment === rule.comment && r.chain === rule.chain);
    if (!expected || !Array.isArray(rule.expr) || counters[expected.comment]) continue;
    let counter: Counter | undefined;
    let uplinkMatches = false;
    let verdict = false;
    for (const expr of rule.expr) {
      if (!isRecord(expr)) continue;
      if (isRecord(expr.counter)) {
        counter = { packets: Number(expr.counter.packets), bytes: Number(expr.counter.bytes) };
      }
      if (expected.verdict === 'drop' && 'drop' in expr) verdict = true;
      // The redirect: the destination MAC set to the bridge's.
      if (expected.verdict === 'mangle' && isRecord(expr.mangle) && expr.mangle.value === spec.bridgeMac) verdict = true;
      if (isRecord(expr.match) && isRecord(expr.match.left) && isRecord(expr.match.left.meta)) {
        // Drops name the uplink; the redirect names the VM's TAP.
        const port = expected.verdict === 'mangle' ? spec.tap : spec.uplink;
        uplinkMatches ||= expr.match.left.meta.key === expected.match && expr.match.right === port;
      }
    }
    if (counter) counters[expected.comment] = counter;
    if (counter && uplinkMatches && verdict) matching++;
  }
  // Exactly the expected rules: a duplicate or foreign rule means the table is not what we installed.
  return { complete: matching === expectedRules.length && rules === expectedRules.length, counters };
}

/** Runs nft inside a pod netns. Unit tests fake it; `ExecNftRunner` is the real one. */
export interface NftRunner {
  /** Applies `script` atomically (`nft -f -`) in netns `netns`. */
  apply(netns: string, script: string): Promise<void>;
  /** `nft -j list table FAMILY TABLE` in netns `netns`; undefined when the table does not exist. */
  listTable(netns: string, family: string, table: string): Promise<unknown>;
}

export class ExecNftRunner implements NftRunner {
  constructor(
    private readonly options: { nftPath?: string; nsenterPath?: string; timeoutMs?: number } = {},
  ) {}

  async apply(netns: string, script: string): Promise<void> {
    await this.run(netns, ['-f', '-'], script);
  }

  async listTable(netns: string, family: string, table: string): Promise<unknown> {
    let stdout: string;
    try {
      ({ stdout } = await this.run(netns, ['-j', 'list', 'table', family, table]));
    } catch (err) {
      if (err instanceof ToolFailedError && /No such file or directory/.test(err.stderr)) return undefined;
      throw err;
    }
    try {
      return JSON.parse(stdout);
    } catch (err) {
      throw new InternalError(`nft -j list printed invalid JSON`, { cause: err });
    }
  }

  private run(netns: string, args: string[], stdin?: string) {
    // nsenter switches only the child's network namespace; nft needs nothing else from the pod.
    return runTool(
      this.options.nsenterPath ?? 'nsenter',
      [`--net=${netnsPath(netns)}`, '--', this.options.nftPath ?? 'nft', ...args],
      { stdin, timeoutMs: this.options.timeoutMs ?? 10_000 },
    );
  }
}

/** nsenter's complaint when the namespace file is gone. */
const NETNS_GONE = /nsenter: cannot open .*No such file or directory/;

export class DhcpIsolation {
  constructor(private readonly nft: NftRunner) {}

  /** Installs (or replaces) the rules for `spec` in netns `netns`. Idempotent. */
  async install(netns: string, spec: IsolationSpec): Promise<void> {
    await this.nft.apply(netns, isolationScript(spec));
  }

  /** Removes the rules for `spec`; succeeds when they or the whole netns are already gone. */
  async remove(netns: string, spec: IsolationSpec): Promise<void> {
    try {
      await this.nft.apply(netns, isolationRemovalScript(spec));
    } catch (err) {
      if (err instanceof ToolFailedError && NETNS_GONE.test(err.stderr)) return;
      throw err;
    }
  }

  /** The installed rules and their drop counters, or undefined when the table is not there. */
  async status(netns: string, spec: IsolationSpec): Promise<IsolationStatus | undefined> {
    const listing = await this.nft.listTable(netns, ISOLATION_FAMILY, isolationTableName(spec));
    return listing === undefined ? undefined : parseIsolationStatus(listing, spec);
  }

  /** Throws FailedPreconditionError unless every rule for `spec` is in place. */
  async verify(netns: string, spec: IsolationSpec): Promise<void> {
    const status = await this.status(netns, spec);
    if (!status?.complete) {
      throw new FailedPreconditionError(`DHCP isolation rules for ${spec.uplink} in netns ${netns} are incomplete`);
    }
  }
}
