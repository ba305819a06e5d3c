/**
 * `vmlet netd`: the process that does all netns and CNI work, forked by `vmlet serve`.
 * It never serves the CRI and keeps its state on disk, so a new netd picks up where the old one was.
 */
import type { Config } from '../config/table.js';
import { createLogger } from '../log.js';
import { installProcessGuards } from '../process_guard.js';
import { NetworkManager } from './manager.js';
import { serveIpc } from './serve_ipc.js';
import type { NetdReady } from './protocol.js';

export async function runNetd(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel, 'vmlet-netd');
  // As in serve: one request's unobserved failure must not end every sandbox's network service.
  // Past the limit netd exits and serve restarts it (client.ts), which reloads its records.
  installProcessGuards(process, logger, { exit: (code) => process.exit(code) });
  const manager = new NetworkManager(config, logger, (event) => {
    if (process.connected) process.send!(event);
  });
  await manager.load();
  serveIpc(manager, logger);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    manager.close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const ready: NetdReady = { ready: true, pid: process.pid };
  process.send!(ready);
}
