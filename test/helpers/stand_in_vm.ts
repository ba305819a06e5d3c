/**
 * A stand-in VM for the netd tests that run no guest: a netns of its own with a veth carrying the
 * VM's MAC, whose peer joins a bridge in the pod netns. Its kernel takes the bridge's router
 * advertisements as a guest's does. With the pieces those IPv6 tests share: a random ULA prefix,
 * polling, cleanup that does not mind what is already gone.
 */
import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';

/** A random ULA /48 (RFC 4193) starting `fd<first two chars of tag>`; groups without leading zeros, so they read back from the kernel as written. */
export function randomUla(tag: string): string {
  return `fd${tag.slice(0, 2)}:${randomInt(0x1000, 0x10000).toString(16)}:${randomInt(0x1000, 0x10000).toString(16)}`;
}

/** Runs a command for cleanup: what is not there is no failure. */
export function quiet(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
  } catch {
    /* not there */
  }
}

/** `probe` every 100 ms until it gives a value; fails naming `what` after `ms`. */
export async function until<T>(what: string, ms: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface StandInVmSpec {
  /** The stand-in's netns (random-tagged by the caller). */
  netns: string;
  /** Its interface, with the VM's MAC. */
  dev: string;
  mac: string;
  /** The veth's other end, in `sandboxNs`, on `bridge`. */
  peer: string;
  sandboxNs: string;
  bridge: string;
}

export class StandInVm {
  readonly netns: string;
  readonly dev: string;

  private constructor(spec: StandInVmSpec) {
    this.netns = spec.netns;
    this.dev = spec.dev;
  }

  /** Makes the netns and the veth (up, and lo); call remove() in the test's cleanup, even on failure. */
  static create(spec: StandInVmSpec): StandInVm {
    const vm = new StandInVm(spec);
    execFileSync('ip', ['netns', 'add', spec.netns]);
    execFileSync('ip', ['link', 'add', spec.dev, 'netns', spec.netns, 'address', spec.mac, 'type', 'veth', 'peer', 'name', spec.peer, 'netns', spec.sandboxNs]);
    execFileSync('ip', ['-n', spec.sandboxNs, 'link', 'set', spec.peer, 'master', spec.bridge, 'up']);
    execFileSync('ip', ['-n', spec.netns, 'link', 'set', 'lo', 'up']);
    execFileSync('ip', ['-n', spec.netns, 'link', 'set', spec.dev, 'up']);
    return vm;
  }

  /** The stand-in's IPv6 routes once `accept` finds what a router advertisement adds (the kernel files an on-link prefix with its lifetime). */
  routerAdvertised(ms: number, accept: (routes: string) => boolean): Promise<string> {
    return until('the router advertisement', ms, () => {
      const out = execFileSync('ip', ['-n', this.netns, '-6', 'route', 'show'], { encoding: 'utf8' });
      return accept(out) ? out : undefined;
    });
  }

  /** Until its link-local address is out of duplicate address detection (a DHCPv6 client can bind it). */
  async linkLocalReady(ms: number): Promise<void> {
    await until('a link-local address out of DAD', ms, () => {
      const out = execFileSync('ip', ['-n', this.netns, '-6', 'addr', 'show', 'dev', this.dev], { encoding: 'utf8' });
      return /inet6 fe80/.test(out) && !/tentative/.test(out) ? true : undefined;
    });
  }

  /** Deletes its netns (and with it the veth); idempotent. */
  remove(): void {
    quiet('ip', ['netns', 'del', this.netns]);
  }
}
