/**
 * `vmlet serve`: the composition root. Builds every long-lived part from the config, starts netd,
 * serves the CRI, and on SIGTERM/SIGINT drains in-flight calls and exits 0. VMs and sandbox
 * networks are left running: they belong to libvirt and netd's state, not to this process.
 */
import { dirname, join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import type { Config } from '../config/table.js';
import { createLogger, type Logger } from '../log.js';
import { CriServer } from '../cri/server.js';
import { runtimeInfoHandlers, type RuntimeHealth } from '../cri/runtime_info.js';
import { sandboxRunHandlers } from '../cri/sandbox_run.js';
import { sandboxLifecycleHandlers } from '../cri/sandbox_lifecycle.js';
import { sandboxQueryHandlers } from '../cri/sandbox_query.js';
import { imageHandlers } from '../cri/image.js';
import { RuntimeSettings } from '../store/runtime_settings.js';
import { LibvirtConnection } from '../libvirt/connection.js';
import { LibvirtAgentChannel } from '../libvirt/agent_channel.js';
import { NetdClient } from '../netd/client.js';
import { SandboxService } from '../sandbox/service.js';
import { ImageStore } from '../image/store.js';
import { errorText } from '../errors.js';
import { ContainerService } from '../container/service.js';
import { BLOCK_GRANTS_DIR, QMP_DIR, VM_DIR, VOLUMES_DIR } from '../container/layout.js';
import { DeviceGrants } from '../container/block_devices/grants.js';
import { hostRootDeviceIo } from '../container/block_devices/persistent_root.js';
import { hostDeviceOpener } from '../container/block_devices/device_fd.js';
import { hostDeviceInspector } from '../container/block_devices/host_inspector.js';
import { MountVolumeHost } from '../container/volumes/exports.js';
import { ownerIdFor } from '../store/owner.js';
import { StatsCollector } from '../container/stats.js';
import { WarmPool } from '../container/warm/pool.js';
import { ConsolePumps } from '../container/console_pumps.js';
import { containerCreateHandlers } from '../cri/container_create.js';
import { containerLifecycleHandlers } from '../cri/container_lifecycle.js';
import { containerQueryHandlers } from '../cri/container_query.js';
import { containerUpdateHandlers } from '../cri/container_update.js';
import { statsHandlers } from '../cri/container_stats.js';
import { probeKvm } from '../libvirt/kvm_probe.js';
import { ProcQemuProcesses } from '../libvirt/qemu_process.js';
import { installVmwrapper } from '../vmwrapper/install.js';
import { assertQemuCanReach, giveTraverse } from '../vmwrapper/qemu_access.js';
import { resolveQemuUser } from '../vmwrapper/qemu_user.js';
import type { HostFacts } from '../container/domain_spec_builder.js';
import { installProcessGuards } from '../process_guard.js';
import { StreamingServer } from '../streaming/server.js';
import { VmStreams } from '../container/vm_streams.js';
import { streamingHandlers } from '../cri/streaming.js';
import { setUpDelegate } from '../delegate/setup.js';
import { VmletMetrics, serveMetrics, parseMetricsAddress } from '../metrics/metrics.js';
import { armedFaultPoints, FAULT_DIR_ENV } from '../fault_points.js';

/** First libvirt contact after libvirtd starts waits for its QEMU capability probe (HOST-NOTES). */
const LIBVIRT_FIRST_CONNECT_MS = 60_000;
/** netd creates or deletes a warm netns in a few ms; this only bounds a stuck netd. */
const NETD_WARM_TIMEOUT_MS = 30_000;

/** netd calls run CNI chains: allow each plugin its time limit plus margin. */
function netdTimeoutMs(config: Config): number {
  return config.cniTimeoutMs * 3 + 10_000;
}

export async function runServe(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel);
  logger.info({ config }, 'vmlet serve starting');
  // Test-only (src/fault_points.ts); an unknown name ends start-up here rather than never faulting.
  const faults = armedFaultPoints();
  if (faults !== undefined) logger.warn({ [FAULT_DIR_ENV]: faults.dir, armed: faults.armed }, 'TEST FAULT POINTS ENABLED: serve or netd SIGKILLs itself at a point armed in this directory');
  // From here on an error nobody handled is logged, not the end of every pod's runtime.
  installProcessGuards(process, logger, { exit: (code) => process.exit(code) });
  const daemon = await startDaemon(config, logger);
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining in-flight calls and stopping');
    daemon.stop().then(
      () => process.exit(0),
      (err) => {
        logger.error({ err }, 'unclean stop');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

export interface Daemon {
  stop(): Promise<void>;
}

export async function startDaemon(config: Config, logger: Logger): Promise<Daemon> {
  // Before anything else: a missing QEMU user fails the start, not the first pod.
  const qemuUser = resolveQemuUser(config.qemuUser);
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  // QEMU (as its user) reaches the VM files under <state>/vms/<id>/ by path.
  const vmsDir = join(config.stateDir, VM_DIR);
  await mkdir(vmsDir, { recursive: true, mode: 0o700 });
  await giveTraverse(config.stateDir, qemuUser);
  await giveTraverse(vmsDir, qemuUser);
  await assertQemuCanReach(vmsDir, qemuUser, 'state dir');
  const settings = new RuntimeSettings(config.stateDir);
  await settings.load();

  const libvirt = new LibvirtConnection({ socketPath: config.libvirtSocket, uri: config.libvirtUri, logger: logger.child({ component: 'libvirt' }) });
  const netd = new NetdClient({ args: ['--config-json', JSON.stringify(config)], logger: logger.child({ component: 'netd-client' }) });
  const images = new ImageStore({
    imageDir: config.imageDir,
    translationsDir: config.imageTranslationsDir,
    maxImageBytes: config.maxImageSize,
    registryConfigDir: config.registryConfigDir,
    logger: logger.child({ component: 'images' }),
  });
  const sandboxes = new SandboxService(join(config.stateDir, 'sandboxes'), netd, logger.child({ component: 'sandboxes' }), netdTimeoutMs(config));
  sandboxes.podCidrs = () => settings.current().podCidr.split(',').map((c) => c.trim()).filter((c) => c !== '');
  netd.onEvent = (event) => {
    if (event.event === 'vmSideFailed') sandboxes.onVmSideFailed(event.sandboxId, event.message);
  };
  const consoles = new ConsolePumps(logger.child({ component: 'console' }));

  const cleanups: (() => Promise<void>)[] = [];
  try {
    await images.init();
    cleanups.push(async () => images.close());
    // Overlays name their image blob as backing file; QEMU opens it read-only.
    await assertQemuCanReach(images.blobDir(), qemuUser, 'image dir');
    await sandboxes.load();
    cleanups.push(() => sandboxes.flush());
    await netd.start();
    cleanups.push(() => netd.stop());

    const kvm = await probeKvm(config.kvm, { logger });
    logger.info({ domainType: kvm.domainType, reason: kvm.reason }, 'VM accelerator chosen');
    const emulator = await installVmwrapper(undefined, qemuUser !== undefined ? { qemuUser } : {});
    logger.info({ emulator, qemuUser: qemuUser ?? 'root (no uid drop)' }, 'QEMU launcher installed');
    const host: HostFacts = {
      domainType: kvm.domainType,
      emulator,
      defaultMemoryBytes: config.vmMemory,
      defaultVcpus: config.vmVcpus,
      ...(qemuUser !== undefined ? { qemuUser } : {}),
    };
    const volumes = new MountVolumeHost(join(config.stateDir, VOLUMES_DIR), logger.child({ component: 'volumes' }));
    // Runs after the warm pool's close (cleanups run in reverse): its VMs' exports are gone by then.
    cleanups.push(() => volumes.close());
    const warmPool = new WarmPool({
      size: config.vmWarmPool,
      max: config.vmWarmPoolMax,
      fillParallel: config.vmWarmFillParallel,
      volumes,
      client: () => libvirt.current(),
      netns: {
        create: () => netd.call('createWarmNetns', {}, NETD_WARM_TIMEOUT_MS),
        delete: async (netnsName) => void (await netd.call('deleteWarmNetns', { netnsName }, NETD_WARM_TIMEOUT_MS)),
      },
      host,
      owner: ownerIdFor(config.stateDir),
      dataDir: join(config.stateDir, VM_DIR),
      qmpDir: join(config.stateDir, QMP_DIR),
      logger: logger.child({ component: 'warm-pool' }),
    });
    // libvirt's QEMU driver keeps its pid files next to its socket's directory (/run/libvirt/qemu).
    const qemuProcesses = new ProcQemuProcesses(join(dirname(config.libvirtSocket), 'qemu'));
    const containers = new ContainerService(config.stateDir, { libvirt, images, sandboxes, consoles, host, logger: logger.child({ component: 'containers' }), pool: warmPool, qemuProcesses, volumes,
      blockDevices: { inspector: hostDeviceInspector, grants: new DeviceGrants(join(config.stateDir, BLOCK_GRANTS_DIR), logger.child({ component: 'block-devices' })), rootIo: hostRootDeviceIo, openDevice: hostDeviceOpener },
    });
    await containers.load();
    cleanups.push(() => containers.flush());
    cleanups.push(() => containers.settle());
    cleanups.push(() => consoles.shutdown());
    // A sandbox stops and removes its VM before its network goes.
    sandboxes.containerHooks = {
      stopContainersOf: (id) => containers.stopAllOf(id),
      removeContainersOf: (id) => containers.removeAllOf(id),
      claimWarmNetns: (id) => containers.claimWarmNetns(id),
      releaseWarm: (id) => containers.releaseWarm(id),
      holdWarmForReturn: (id) => containers.holdWarmForReturn(id),
      finishWarmReturn: (id, rewarmed) => containers.finishWarmReturn(id, rewarmed),
    };
    try {
      await libvirt.whenConnected(LIBVIRT_FIRST_CONNECT_MS);
      await containers.reconcile();
      // Filled only after reconcile has collected what an earlier run left.
      await warmPool.start();
    } catch (err) {
      // Serving without libvirt is still useful (Status says RuntimeReady=false); reconcile runs on connect.
      logger.error({ err }, 'libvirt not reachable at start; containers reconcile when it is; no warm VMs');
    }
    cleanups.push(() => warmPool.close());
    // Runs before the pool's close: unused warm VMs still going back after their Stop replied.
    cleanups.push(() => sandboxes.settle());
    const stats = new StatsCollector({ domainOf: (r) => containers.domainRef(r), libvirt, logger });

    const health: RuntimeHealth = {
      async runtime() {
        return (await libvirt.isAlive())
          ? { ready: true }
          : { ready: false, reason: 'LibvirtNotReady', message: `libvirtd does not answer on ${config.libvirtSocket}` };
      },
      async network() {
        try {
          return await netd.call('networkReady', {}, 5000);
        } catch (err) {
          return { ready: false, reason: 'NetworkPluginNotReady', message: `netd: ${errorText(err)}` };
        }
      },
    };

    const vmStreams = new VmStreams({
      qmpDir: join(config.stateDir, QMP_DIR),
      container: (id) => containers.mustGet(id),
      sandbox: (id) => {
        const sb = sandboxes.mustGet(id);
        return { id: sb.id, ready: sb.state === 'READY', ...(sb.netnsPath ? { netnsPath: sb.netnsPath } : {}), ...(sb.podIps ? { podIps: sb.podIps } : {}) };
      },
      tcpSocketInNetns: (netnsPath) => netd.tcpSocketInNetns(netnsPath, NETD_WARM_TIMEOUT_MS),
      agentChannel: (r) => new LibvirtAgentChannel(() => libvirt.current(), () => containers.domainRef(r), `container ${r.id}`),
      agentWaitMs: config.agentWaitS * 1000,
      logger: logger.child({ component: 'streams' }),
    });
    const streamServer = new StreamingServer({ address: config.streamAddress, runtime: vmStreams, logger: logger.child({ component: 'streaming' }) });
    await streamServer.start();
    cleanups.push(() => streamServer.stop());

    const vmletHandlers = {
      runtime: {
        ...runtimeInfoHandlers({ config, health, settings }),
        ...sandboxRunHandlers(sandboxes, logger.child({ component: 'cri' })),
        ...sandboxLifecycleHandlers(sandboxes),
        ...sandboxQueryHandlers(sandboxes),
        ...containerCreateHandlers(containers, logger.child({ component: 'cri' })),
        ...containerLifecycleHandlers(containers),
        ...containerQueryHandlers(containers),
        ...containerUpdateHandlers(containers),
        ...statsHandlers(stats, containers, sandboxes, config.stateDir),
        ...streamingHandlers(vmStreams, streamServer, (id) => sandboxes.mustGet(id).id),
      },
      image: imageHandlers(images, (imageId) => containers.list().find((c) => c.imageRef === imageId || c.imageMounts?.some((m) => m.imageRef === imageId))?.id),
    };
    // With a container runtime configured, pods that are not VM pods go to it (src/delegate/).
    const served = config.containerRuntimeEndpoint
      ? setUpDelegate(config.containerRuntimeEndpoint, vmletHandlers, { sandboxes, containers, images, translationsDir: config.imageTranslationsDir, logger, vmImagePrefixes: config.vmImagePrefixes })
      : undefined;
    if (served) cleanups.push(async () => served.close());
    const metrics = config.metricsAddress
      ? new VmletMetrics({
        sandboxStates: () => countBy(sandboxes.list().map((s) => s.state)),
        containerStates: () => countBy(containers.list().map((c) => c.state)),
        warmPool: () => ({ configured: warmPool.size, max: warmPool.max, target: warmPool.target, idle: warmPool.idleCount, claimsTotal: warmPool.claimsTotal }),
        netdRestartsTotal: () => netd.restartsTotal,
        imageBytesPulledTotal: () => images.pulledBytesTotal,
      })
      : undefined;
    if (metrics) {
      const metricsServer = await serveMetrics(parseMetricsAddress(config.metricsAddress), metrics, logger);
      cleanups.push(() => new Promise<void>((r) => metricsServer.close(() => r())));
    }
    const server = new CriServer({
      socketPath: config.socket,
      logger,
      onRpc: metrics?.observeRpc,
      runtimeHandlers: served?.runtime ?? vmletHandlers.runtime,
      imageHandlers: served?.image ?? vmletHandlers.image,
    });
    await server.start();
    cleanups.push(() => server.stop());
  } catch (err) {
    for (const undo of cleanups.reverse()) await undo().catch(() => {});
    await libvirt.close();
    throw err;
  }

  return {
    async stop() {
      // Reverse order: stop taking calls first, then the parts they used.
      for (const undo of cleanups.reverse()) {
        await undo().catch((err: unknown) => logger.error({ err }, 'error while stopping'));
      }
      await libvirt.close();
    },
  };
}

function countBy(values: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}
