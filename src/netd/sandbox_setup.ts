/**
 * The part of a sandbox's network the pod IP depends on (RunPodSandbox): its netns (made, or a
 * warm one adopted) and CNI ADD in it; and the same backwards (StopPodSandbox, RemovePodSandbox).
 * The record is written before anything is made, so a crash at any point leaves what a teardown needs.
 */
import { FailedPreconditionError, InvalidArgumentError, errorText } from '../errors.js';
import type { Logger } from '../log.js';
import type { AttachmentCache, CachedAttachment } from '../network/cni/cache.js';
import { capabilityArgs } from '../network/cni/capabilities.js';
import { masqueradeRequestFor, masqueradeRequestOf } from '../network/bindings/masquerade_plan.js';
import type { AttachmentRequest, CniChain } from '../network/cni/chain.js';
import { joinAttachmentViews, type AttachmentRecord } from '../network/cni/attachments.js';
import { configNamed, loadNetworkConfig, loadNetworkConfigs, type NetworkConfigList } from '../network/cni/config.js';
import type { CapabilityArgs } from '../network/cni/invocation.js';
import { podNetworkPlan, type NetworkAttachmentPlan } from '../network/cni/pod_networks.js';
import { toVmNetworkView, type VmNetworkView } from '../network/cni/result.js';
import { POD_IFNAME, isWarmNetnsName, netnsNameFor, prewiredNames } from '../network/names.js';
import { netnsPath, type NetnsOps } from '../network/netns.js';
import type { CniCheckReport, Readiness, SetupParams } from './protocol.js';
import { supportsCheck } from '../network/cni/version.js';
import type { SandboxNetworkRecord, SandboxNetworkRecords } from './records.js';
import { StepTimer } from './step_timer.js';
import { runUndos, type Undo } from './undo.js';
import { faultPoint } from '../fault_points.js';

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

  /**
   * netns and CNI ADD of every network the pod asks for (pod_networks.ts; the default network
   * alone when it names none), in order, into the same netns; returns its record, CNI's answers
   * joined in it. Rolls back on failure, networks already added included.
   */
  async setUp(params: SetupParams): Promise<SandboxNetworkRecord> {
    const { records, netns, chain, logger } = this.deps;
    const steps = new StepTimer();
    const plan = podNetworkPlan(params.annotations ?? {}, params.podNamespace);
    const loaded = await loadNetworkConfigs(this.deps.cniConfDir);
    if (!loaded.ok) throw new FailedPreconditionError(`network is not ready: ${loaded.reason}`);
    const baseCapabilities = capabilityArgs(params);
    const masquerade = masqueradeRequestOf(params.annotations ?? {}, params.portMappings);
    const networks = plan.map((p) => resolveAttachment(p, loaded.configs, baseCapabilities));
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
      attachments: networks.map(({ plan: p, config }) => ({
        network: config.name,
        ...(p.namespace !== undefined ? { namespace: p.namespace } : {}),
        ifName: p.ifName,
        isDefault: p.isDefault,
        // Per interface (a Multus JSON element); the pod annotation's is record.pod.masquerade.
        ...(p.binding === 'masquerade' ? { masquerade: masqueradeRequestFor(params.portMappings, { secondary: !p.isDefault }) } : {}),
      })),
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
      faultPoint('netd.setup.after-netns');
      undos.push({ what: 'netns', run: () => netns.delete(netnsName) });

      const pod = { namespace: params.podNamespace, name: params.podName, uid: params.podUid, infraContainerId: params.sandboxId };
      const views: { view: VmNetworkView; isDefault: boolean }[] = [];
      for (const [i, { plan: p, config, capabilities }] of networks.entries()) {
        const attachment: AttachmentRequest = { containerId: params.sandboxId, ifName: p.ifName, pod, capabilityArgs: capabilities, netns: record.netnsPath };
        // DEL needs no record of its own: the CNI cache (written before ADD runs) drives it.
        const outcome = await chain.add(config, attachment);
        undos.push({ what: `cni ${config.name}`, run: () => chain.del(config.name, attachment, config) });
        faultPoint('netd.setup.after-cni-add');
        const view = toVmNetworkView(outcome.result, { ifName: p.ifName });
        if (view.interfaces.length === 0) throw new FailedPreconditionError(`CNI network ${config.name} gave the sandbox no interface`);
        const recorded = record.attachments![i]!;
        recorded.interfaces = view.interfaces.map((v) => v.name);
        recorded.dns = view.dns;
        views.push({ view, isDefault: p.isDefault });
      }
      steps.mark('cni-add');
      record.cni = joinAttachmentViews(views);
      record.pod = { hostname: params.hostname, dns: params.dns, ...(masquerade ? { masquerade } : {}) };
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
   * CNI CHECK of every network the sandbox is attached to, with the config and result its ADD
   * cached (the spec's CHECK input). A network whose cniVersion predates CHECK (0.4.0) or which
   * sets disableCheck is reported as skipped, not as passed.
   */
  async check(record: SandboxNetworkRecord): Promise<CniCheckReport> {
    const { chain, cache } = this.deps;
    const cached = (await cache.list(record.id)).filter((c) => c.state === 'added');
    const order = (record.attachments ?? []).map((a) => `${a.network}\0${a.ifName}`);
    cached.sort((a, b) => order.indexOf(`${a.networkName}\0${a.ifName}`) - order.indexOf(`${b.networkName}\0${b.ifName}`));
    const networks: CniCheckReport['networks'] = [];
    for (const c of cached) {
      const entry = { network: c.networkName, ifName: c.ifName };
      if (!supportsCheck(c.config.cniVersion) || c.config.disableCheck) {
        networks.push({ ...entry, result: 'skipped', reason: c.config.disableCheck ? 'disableCheck' : `cniVersion ${c.config.cniVersion} has no CHECK` });
        continue;
      }
      const handedOver = handedToVm(record, c.ifName);
      if (handedOver) {
        networks.push({ ...entry, result: 'skipped', reason: handedOver });
        continue;
      }
      try {
        await chain.check(c.config, { containerId: record.id, ifName: c.ifName, netns: record.netnsPath, ...(c.pod ? { pod: c.pod } : {}) });
        networks.push({ ...entry, result: 'ok' });
      } catch (err) {
        networks.push({ ...entry, result: 'failed', error: errorText(err) });
      }
    }
    return { at: new Date().toISOString(), ok: networks.every((n) => n.result !== 'failed'), networks };
  }

  /**
   * CNI DEL of every attachment ADD left for the sandbox (from the CNI cache, so even without a
   * record), then its netns (unless `keepNetns`: a warm one made warm again). Idempotent; returns
   * what failed, the record stays to the caller.
   */
  async tearDown(
    sandboxId: string,
    record: SandboxNetworkRecord | undefined,
    options: { keepNetns?: boolean; steps?: StepTimer; cached?: Promise<CachedAttachment[]> } = {},
  ): Promise<string[]> {
    const { chain } = this.deps;
    const netnsName = record?.netnsName ?? netnsNameFor(sandboxId);
    const nsPath = record?.netnsPath ?? netnsPath(netnsName);
    const failures: string[] = [];
    // The networks the record lists, in reverse ADD order; then whatever else the cache holds.
    const order = [...(record?.attachments ?? [])].reverse().map((a) => `${a.network}\0${a.ifName}`);
    const rank = (c: { networkName: string; ifName: string }) => {
      const at = order.indexOf(`${c.networkName}\0${c.ifName}`);
      return at === -1 ? order.length : at;
    };
    const cachedOfSandbox = [...(await (options.cached ?? this.cachedAttachments(sandboxId)))].sort((a, b) => rank(a) - rank(b));
    options.steps?.mark('cacheList');
    for (const cached of cachedOfSandbox) {
      try {
        await chain.del(cached.networkName, { containerId: sandboxId, ifName: cached.ifName, netns: nsPath });
      } catch (err) {
        failures.push(`CNI DEL ${cached.networkName}: ${errorText(err)}`);
      }
    }
    options.steps?.mark('cniDel');
    faultPoint('netd.teardown.after-cni-del');
    if (!options.keepNetns) failures.push(...(await this.deleteNetns(netnsName)));
    options.steps?.mark('netnsDelete');
    return failures;
  }

  /**
   * What CNI ADD left for the sandbox (the CNI cache), which tearDown DELs. A read only: a
   * teardown starts it while the VM side is unwired (nothing else changes the sandbox's cache
   * entries then: serve holds the sandbox's lock, netd its teardown mark).
   */
  cachedAttachments(sandboxId: string): Promise<CachedAttachment[]> {
    return this.deps.cache.list(sandboxId);
  }

  /**
   * Starts the first DEL plugin of each cached attachment ahead, stdin held (CniChain.prestartDel),
   * while the VM side is released: tearDown's DELs of the same attachments take them. Returns
   * the discard (kills whichever no DEL took), to call once tearDown is over.
   */
  prestartDels(sandboxId: string, record: SandboxNetworkRecord | undefined, cached: Promise<CachedAttachment[]>): () => void {
    const nsPath = record?.netnsPath ?? netnsPath(record?.netnsName ?? netnsNameFor(sandboxId));
    const discards: (() => void)[] = [];
    let discarded = false;
    void cached.then(
      (list) => {
        if (discarded) return;
        for (const c of list) discards.push(this.deps.chain.prestartDel(c, { containerId: sandboxId, ifName: c.ifName, netns: nsPath }));
      },
      () => {},
    );
    return () => {
      discarded = true;
      for (const discard of discards) discard();
    };
  }

  /** Deletes a sandbox's netns; returns what failed. */
  async deleteNetns(netnsName: string): Promise<string[]> {
    try {
      await this.deps.netns.delete(netnsName);
      return [];
    } catch (err) {
      return [`delete netns ${netnsName}: ${errorText(err)}`];
    }
  }
}

/**
 * The conflist and capability args of one planned attachment. A network the conf dir does not
 * have, or a `mac`/`ips` the network's plugins cannot take, fails before anything is made.
 */
function resolveAttachment(
  p: NetworkAttachmentPlan,
  configs: readonly { config: NetworkConfigList }[],
  base: CapabilityArgs,
): { plan: NetworkAttachmentPlan; config: NetworkConfigList; capabilities: CapabilityArgs } {
  const config = p.network === undefined ? configs[0]!.config : configNamed(configs, p.network);
  if (!config) throw new FailedPreconditionError(`network ${p.network} (pod annotation) has no conflist of that name in the CNI conf dir`);
  const capabilities: Record<string, unknown> = { ...base };
  for (const [cap, value] of [['mac', p.mac], ['ips', p.ips]] as const) {
    if (value === undefined) continue;
    if (!config.plugins.some((plugin) => plugin.capabilities?.[cap] === true)) {
      throw new FailedPreconditionError(`network ${config.name} asked for with a "${cap}": none of its plugins declares the ${cap} capability`);
    }
    capabilities[cap] = value;
  }
  return { plan: p, config, capabilities };
}

/**
 * Why CNI CHECK cannot judge an interface the VM side took over: the tap binding moves the pod
 * interface's addresses and routes to the VM and gives the veth another MAC; an SR-IOV VF leaves
 * the netns for the VM. A plugin's CHECK compares the netns with ADD's result, so it would report
 * those as missing on every healthy sandbox. Masquerade leaves the pod interface as CNI made it.
 */
function handedToVm(record: SandboxNetworkRecord, ifName: string): string | undefined {
  const wired = record.interfaces.find((i) => i.context.cniInterface.name === ifName)?.state;
  if (wired?.kind === 'tap') return `the VM holds ${ifName}'s addresses and MAC (tap binding): CHECK would report them missing`;
  if (wired?.kind === 'sriov') return `${ifName} is a VF passed to the VM: it is not in the netns for CHECK to see`;
  return undefined;
}
