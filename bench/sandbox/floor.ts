/**
 * The floor RunPodSandbox and StopPodSandbox are held against: what any runtime has to do for a
 * pod network with this conflist, and nothing more. Setup is `ip netns add` plus the conflist's
 * plugins run directly with ADD in order, each given the previous result as prevResult; teardown
 * is DEL in reverse (with the ADD result as prevResult, as CNI 1.0 wants) plus `ip netns delete`.
 * No cache, no records, no fsync: plugins run through the project's ExecPluginRunner, the same
 * exec path netd uses, so process start-up costs count on both sides.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { performance } from 'node:perf_hooks';
import type { NetworkConfigList } from '../../src/network/cni/config.js';
import type { PluginRunner } from '../../src/network/cni/exec.js';
import { buildCniArgs, buildPluginConfig, type PodArgs } from '../../src/network/cni/invocation.js';

const execFileP = promisify(execFile);

export const POD_IFNAME = 'eth0';

export interface FloorAttachment {
  containerId: string;
  netnsName: string;
  pod: PodArgs;
  /** The last plugin's ADD result, for DEL. */
  result: unknown;
}

export interface FloorSetupTiming {
  totalMs: number;
  netnsAddMs: number;
  /** ADD of each plugin, in list order. */
  pluginMs: number[];
}

export interface FloorTeardownTiming {
  totalMs: number;
  /** DEL of each plugin, in reverse list order. */
  pluginMs: number[];
  netnsDeleteMs: number;
}

export class CniFloor {
  /** Namespaces this floor created and has not deleted yet: what a cleanup must remove. */
  readonly live = new Set<string>();

  constructor(
    private readonly config: NetworkConfigList,
    private readonly runner: PluginRunner,
  ) {}

  async setup(containerId: string, netnsName: string, pod: PodArgs): Promise<{ attachment: FloorAttachment; timing: FloorSetupTiming }> {
    const t0 = performance.now();
    await execFileP('ip', ['netns', 'add', netnsName], { timeout: 10_000 });
    this.live.add(netnsName);
    const netnsAddMs = performance.now() - t0;
    const netns = `/run/netns/${netnsName}`;
    const cniArgs = buildCniArgs(pod);
    const pluginMs: number[] = [];
    let prevResult: unknown;
    for (const plugin of this.config.plugins) {
      const t = performance.now();
      prevResult = await this.runner.run({
        command: 'ADD',
        pluginType: plugin.type,
        containerId,
        netns,
        ifName: POD_IFNAME,
        cniArgs,
        config: buildPluginConfig(this.config, plugin, { prevResult }),
      });
      pluginMs.push(performance.now() - t);
    }
    return {
      attachment: { containerId, netnsName, pod, result: prevResult },
      timing: { totalMs: performance.now() - t0, netnsAddMs, pluginMs },
    };
  }

  async teardown(a: FloorAttachment): Promise<FloorTeardownTiming> {
    const t0 = performance.now();
    const cniArgs = buildCniArgs(a.pod);
    const pluginMs: number[] = [];
    for (const plugin of [...this.config.plugins].reverse()) {
      const t = performance.now();
      await this.runner.run({
        command: 'DEL',
        pluginType: plugin.type,
        containerId: a.containerId,
        netns: `/run/netns/${a.netnsName}`,
        ifName: POD_IFNAME,
        cniArgs,
        config: buildPluginConfig(this.config, plugin, { prevResult: a.result }),
      });
      pluginMs.push(performance.now() - t);
    }
    const t = performance.now();
    await execFileP('ip', ['netns', 'delete', a.netnsName], { timeout: 10_000 });
    this.live.delete(a.netnsName);
    const end = performance.now();
    return { totalMs: end - t0, pluginMs, netnsDeleteMs: end - t };
  }
}
