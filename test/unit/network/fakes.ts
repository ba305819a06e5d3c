/** Fakes of the iproute2 and nft seams for unit tests: they record calls and replay scripted answers. */
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
  onShow: (commands: readonly IpCommand[]) => unknown[] = () => [];
  /** Called on apply; throw from it to simulate a failing batch. */
  onApply: (commands: readonly IpCommand[]) => void = () => undefined;

  async show(netns: string, commands: readonly IpCommand[]): Promise<unknown[]> {
    this.calls.push({ op: 'show', netns, commands });
    return this.onShow(commands);
  }

  async apply(netns: string, commands: readonly IpCommand[]): Promise<void> {
    this.calls.push({ op: 'apply', netns, commands });
    this.onApply(commands);
  }
}

export class FakeNftRunner implements NftRunner {
  readonly scripts: { netns: string; script: string }[] = [];
  onApply: (script: string) => void = () => undefined;
  listing: unknown = undefined;

  async apply(netns: string, script: string): Promise<void> {
    this.scripts.push({ netns, script });
    this.onApply(script);
  }

  async listTable(): Promise<unknown> {
    return this.listing;
  }
}
