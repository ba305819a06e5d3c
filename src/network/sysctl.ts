/**
 * The seam between the bindings and a pod netns's sysctls (forwarding for the Calico gateway and
 * the masquerade binding). Per-netns sysctls are those of the namespace that opens /proc/sys/net,
 * so the real runner runs `sysctl` under `nsenter --net`; netd itself never changes namespace.
 */
import { InvalidArgumentError } from '../errors.js';
import { runTool } from './iproute.js';
import { netnsPath } from './netns.js';

export interface SysctlRunner {
  /** Current values of `keys` in netns `netns`. */
  read(netns: string, keys: readonly string[]): Promise<Record<string, string>>;
  /** Sets every key to its value in netns `netns`, in order. */
  write(netns: string, values: Readonly<Record<string, string>>): Promise<void>;
}

/** net.ipv4.conf.<dev>.<name>, net.ipv4.ip_forward, …: dotted words only, values digits only. */
const KEY = /^net\.ipv[46]\.[A-Za-z0-9_.-]{1,80}$/;
const VALUE = /^[0-9]{1,10}$/;

export function checkSysctl(key: string, value?: string): void {
  if (!KEY.test(key) || key.includes('..')) throw new InvalidArgumentError(`sysctl key ${JSON.stringify(key)} is not one netd sets`);
  if (value !== undefined && !VALUE.test(value)) throw new InvalidArgumentError(`sysctl value ${JSON.stringify(value)} for ${key} is not a number`);
}

export class ExecSysctlRunner implements SysctlRunner {
  constructor(private readonly options: { sysctlPath?: string; nsenterPath?: string; timeoutMs?: number } = {}) {}

  async read(netns: string, keys: readonly string[]): Promise<Record<string, string>> {
    for (const key of keys) checkSysctl(key);
    const { stdout } = await this.run(netns, ['-n', ...keys]);
    const values = stdout.trim().split('\n');
    if (values.length !== keys.length) throw new InvalidArgumentError(`sysctl printed ${values.length} values for ${keys.length} keys`);
    return Object.fromEntries(keys.map((key, i) => [key, values[i]!.trim()]));
  }

  async write(netns: string, values: Readonly<Record<string, string>>): Promise<void> {
    const pairs = Object.entries(values);
    for (const [key, value] of pairs) checkSysctl(key, value);
    if (pairs.length > 0) await this.run(netns, ['-q', '-w', ...pairs.map(([k, v]) => `${k}=${v}`)]);
  }

  private run(netns: string, args: string[]) {
    return runTool(this.options.nsenterPath ?? 'nsenter', [`--net=${netnsPath(netns)}`, '--', this.options.sysctlPath ?? 'sysctl', ...args], {
      timeoutMs: this.options.timeoutMs ?? 10_000,
    });
  }
}
