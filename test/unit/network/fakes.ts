/** Fakes of the iproute2, nft and CNI plugin seams for unit tests: they record calls and replay scripted answers. */
import { CniPluginError } from '../../../src/network/cni/errors.js';
import type { PluginLaunch, PluginRequest, PluginRunner } from '../../../src/network/cni/exec.js';
import type { IpCommand, IpRunner } from '../../../src/network/iproute.js';
import type { NftRunner } from '../../../src/network/isolation.js';

export interface IpCall {
  op: 'show' | 'apply';
  netns: string;
  commands: readonly IpCommand[];
}

export class FakeIpRunner implements IpRunner {
  readonly calls: IpCall[] = [];
  /** Answers show calls; throw from it to simulate a failure. */
  onShow: (commands: readonly IpCommand[], netns: string) => unknown[] = () => [];
  /** Called on apply; throw from it (or reject) to simulate a failing batch. */
  onApply: (commands: readonly IpCommand[], netns: string) => void | Promise<void> = () => undefined;

  async show(netns: string, commands: readonly IpCommand[]): Promise<unknown[]> {
    this.calls.push({ op: 'show', netns, commands });
    return this.onShow(commands, netns);
  }

  async apply(netns: string, commands: readonly IpCommand[]): Promise<void> {
    this.calls.push({ op: 'apply', netns, commands });
    await this.onApply(commands, netns);
  }
}

export class FakeNftRunner implements NftRunner {
  readonly scripts: { netns: string; script: string }[] = [];
  onApply: (script: string, netns: string) => void = () => undefined;
  listing: unknown = undefined;

  async apply(netns: string, script: string): Promise<void> {
    this.scripts.push({ netns, script });
    this.onApply(script, netns);
  }

  async listTable(): Promise<unknown> {
    return this.listing;
  }
}

/**
 * CNI plugins: records every call; ADD of "bridge" makes a result, other plugins pass prevResult
 * through; `failOn` makes one plugin fail one command, `output` replaces every other answer.
 */
export class FakePluginRunner implements PluginRunner {
  calls: PluginRequest[] = [];
  failOn?: { command: string; type: string; error?: unknown };
  output?: (req: PluginRequest) => unknown;
  /** Sees every call first, the failing ones too. */
  onCall: (req: PluginRequest) => void = () => undefined;
  /** Every prestart (PluginRunner.prestart): its launch, how many calls ran before it, and its fate. */
  prestarts: { launch: PluginLaunch; callsBefore: number; taken: boolean; discarded: boolean }[] = [];

  prestart(launch: PluginLaunch): () => void {
    const entry = { launch: structuredClone(launch), callsBefore: this.calls.length, taken: false, discarded: false };
    this.prestarts.push(entry);
    return () => {
      if (!entry.taken) entry.discarded = true;
    };
  }

  async run(req: PluginRequest): Promise<unknown> {
    const { config: _config, ...launch } = req;
    const prestarted = this.prestarts.find((p) => !p.taken && !p.discarded && JSON.stringify(p.launch) === JSON.stringify(launch));
    if (prestarted) prestarted.taken = true;
    this.calls.push(structuredClone(req));
    this.onCall(req);
    if (this.failOn && this.failOn.command === req.command && this.failOn.type === req.pluginType) {
      throw (
        this.failOn.error ??
        new CniPluginError(
          { kind: 'plugin-error', plugin: req.pluginType, command: req.command, cniCode: 7, pluginMessage: `${req.pluginType} says no`, details: 'bad subnet' },
          'failed',
        )
      );
    }
    if (this.output) return this.output(req);
    if (req.command !== 'ADD') return undefined;
    if (req.pluginType === 'bridge') {
      return {
        cniVersion: req.config.cniVersion,
        interfaces: [{ name: 'eth0', mac: 'aa:bb:cc:00:00:01', sandbox: req.netns }],
        ips: [{ address: '198.18.0.2/24', gateway: '198.18.0.1', interface: 0 }],
        routes: [{ dst: '0.0.0.0/0' }],
      };
    }
    return { ...(req.config.prevResult as object), touchedBy: req.pluginType };
  }

  summary(): string[] {
    return this.calls.map((c) => `${c.command} ${c.pluginType}`);
  }
}
