/**
 * The part of a sandbox's network the pod IP depends on (RunPodSandbox): its netns (made, or a
 * warm one adopted) and CNI ADD in it; and the same backwards (StopPodSandbox, RemovePodSandbox).
 * The record is written before anything is made, so a crash at any point leaves what a teardown needs.
 */
import { FailedPreconditionError, InvalidArgumentError, errorText } from '../errors.js';
import type { Logger } from '../log.js';
import type { AttachmentCache } from '../network/cni/cache.js';
import { capabilityArgs } from '../network/cni/capabilities.js';
import type { AttachmentRequest, CniChain } from '../network/cni/chain.js';
import { loadNetworkConfig } from '../network/cni/config.js';
import { toVmNetworkView } from '../network/cni/result.js';
import { POD_IFNAME, isWarmNetnsName, netnsNameFor, prewiredNames } from '../network/names.js';
import { netnsPath, type NetnsOps } from '../network/netns.js';
import type { Readiness, SetupParams } from './protocol.js';
import type { SandboxNetworkRecord, SandboxNetworkRecords } from './records.js';
import { StepTimer } from './step_timer.js';
import { runUndos, type Undo } from './undo.js';

export interface SandboxSetupDeps {
  records: SandboxNetworkRecords;
  netns: NetnsOps;
  chain: CniChain;
  cache: AttachmentCache;
  cniConfDir: string;
  logger: Logger;
}

export class SandboxSetup {
  constructor(private readonly deps: SandboxSetupDeps) {}

  async networkReady(): Promise<Readiness> {
    const loaded = await loadNetworkConfig(this.deps.cniConfDir);
    if (loaded.ok) return { ready: true };
    const skipped = loaded.skipped.map((s) => `${s.file}: ${s.reason}`).join('; ');
    return { ready: false, reason: 'NetworkPluginNotReady', message: skipped ? `${loaded.reason} (${skipped})` : loaded.reason };
  }

  /** netns and CNI ADD for a new sandbox; returns its record, CNI's answer in it. Rolls back on failure. */
  async setUp(params: SetupParams): Promise<SandboxNetworkRecord> {
    const { records, netns, chain, logger } = this.deps;
    const steps = new StepTimer();
    const loaded = await loadNetworkConfig(this.deps.cniConfDir);
    if (!loaded.ok) throw new FailedPreconditionError(`network is not ready: ${loaded.reason}`);
    const netConfig = loaded.config;
    steps.mark('config');

    const undos: Undo[] = [];
    const adopting = params.netnsName !== undefined;
    if (adopting && !isWarmNetnsName(params.netnsName!)) throw new InvalidArgumentError(`netns ${JSON.stringify(params.netnsName)} is not a warm netns`);
    const netnsName = params.netnsName ?? netnsNameFor(params.sandboxId);
    const record: SandboxNetworkRecord = {
      id: params.sandboxId,
      netnsName,
      netnsPath: netnsPath(netnsName),
      interfaces: [],
      leases: [],
      ...(adopting ? { prewired: prewiredNames(netnsName) } : {}),
    };
    try {
      // Recorded first, so a crash at any later point leaves what a teardown needs.
      await records.put(record);
      undos.push({ what: 'record', run: () => records.delete(record.id) });
      steps.mark('record');

      if (adopting) {
        if (!(await netns.exists(netnsName))) throw new FailedPreconditionError(`warm netns ${netnsName} does not exist`);
      } else {
        await netns.create(netnsName);
      }
      steps.mark('netns');
      undos.push({ what: 'netns', run: () => netns.delete(netnsName) });

      const attachment: Omit<AttachmentRequest, 'netns'> = {
        containerId: params.sandboxId,
        ifName: POD_IFNAME,
        pod: { namespace: params.podNamespace, name: params.podName, uid: params.podUid, infraContainerId: params.sandboxId },
        capabilityArgs: capabilityArgs(params),
      };
      // DEL needs no record of its own: the CNI cache (written before ADD runs) drives it.
      const outcome = await chain.add(netConfig, { ...attachment, netns: record.netnsPath });
      steps.mark('cni-add');
      undos.push({ what: 'cni', run: () => chain.del(netConfig.name, { ...attachment, netns: record.netnsPath }, netConfig) });

      const view = toVmNetworkView(outcome.result, { ifName: POD_IFNAME });
      if (view.interfaces.length === 0) throw new FailedPreconditionError(`CNI network ${netConfig.name} gave the sandbox no interface`);
      record.cni = view;
      record.pod = { hostname: params.hostname, dns: params.dns };
      await records.put(record);
      steps.mark('record');
      logger.debug({ sandboxId: params.sandboxId, stepsMs: steps.totals() }, 'sandbox network set up');
      return record;
    } catch (err) {
      await runUndos(undos, logger, params.sandboxId, err);
      throw err;
    }
  }

  /**
   * CNI DEL of every attachment ADD left for the sandbox (from the CNI cache, so even without a
   * record), then its netns. Idempotent; returns what failed, the record stays to the caller.
   */
  async tearDown(sandboxId: string, record: SandboxNetworkRecord | undefined): Promise<string[]> {
    const { netns, chain, cache } = this.deps;
    const netnsName = record?.netnsName ?? netnsNameFor(sandboxId);
    const nsPath = record?.netnsPath ?? netnsPath(netnsName);
    const failures: string[] = [];
    for (const cached of await cache.list()) {
      if (cached.containerId !== sandboxId) continue;
      try {
        await chain.del(cached.networkName, { containerId: sandboxId, ifName: cached.ifName, netns: nsPath });
      } catch (err) {
        failures.push(`CNI DEL ${cached.networkName}: ${errorText(err)}`);
      }
    }
    try {
      await netns.delete(netnsName);
    } catch (err) {
      failures.push(`delete netns ${netnsName}: ${errorText(err)}`);
    }
    return failures;
  }
}
