/**
 * `vmlet serve`: the composition root. Builds every long-lived part from the config, starts netd,
 * serves the CRI, and on SIGTERM/SIGINT drains in-flight calls and exits 0. VMs and sandbox
 * networks are left running: they belong to libvirt and netd's state, not to this process.
 */
import { join } from 'node:path';
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
import { NetdClient } from '../netd/client.js';
import { SandboxService } from '../sandbox/service.js';
import { ImageStore } from '../image/store.js';
import { errorText } from '../errors.js';

/** netd calls run CNI chains: allow each plugin its time limit plus margin. */
function netdTimeoutMs(config: Config): number {
  return config.cniTimeoutMs * 3 + 10_000;
}

export async function runServe(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel);
  logger.info({ config }, 'vmlet serve starting');
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
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  const settings = new RuntimeSettings(config.stateDir);
  await settings.load();

  const libvirt = new LibvirtConnection({ socketPath: config.libvirtSocket, uri: config.libvirtUri, logger: logger.child({ component: 'libvirt' }) });
  const netd = new NetdClient({ args: ['--config-json', JSON.stringify(config)], logger: logger.child({ component: 'netd-client' }) });
  const images = new ImageStore({ imageDir: config.imageDir, translationsDir: config.imageTranslationsDir, logger: logger.child({ component: 'images' }) });
  const sandboxes = new SandboxService(join(config.stateDir, 'sandboxes'), netd, logger.child({ component: 'sandboxes' }), netdTimeoutMs(config));

  const cleanups: (() => Promise<void>)[] = [];
  try {
    await images.init();
    cleanups.push(async () => images.close());
    await sandboxes.load();
    await netd.start();
    cleanups.push(() => netd.stop());

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

    const server = new CriServer({
      socketPath: config.socket,
      logger,
      runtimeHandlers: {
        ...runtimeInfoHandlers({ config, health, settings }),
        ...sandboxRunHandlers(sandboxes),
        ...sandboxLifecycleHandlers(sandboxes),
        ...sandboxQueryHandlers(sandboxes),
      },
      imageHandlers: imageHandlers(images),
    });
    await server.start();
    cleanups.push(() => server.stop());
  } catch (err) {
    for (const undo of cleanups.reverse()) await undo().catch(() => {});
    libvirt.close();
    throw err;
  }

  return {
    async stop() {
      // Reverse order: stop taking calls first, then the parts they used.
      for (const undo of cleanups.reverse()) {
        await undo().catch((err: unknown) => logger.error({ err }, 'error while stopping'));
      }
      libvirt.close();
    },
  };
}
