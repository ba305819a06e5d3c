/**
 * What the netd integration tests share: a CNI network of Debian's bridge plugin (host-local IPAM,
 * no masquerade) on a bridge of its own, a state dir, and the product's NetworkManager over them.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.js';
import type { Config } from '../../../src/config/table.js';
import { silentLogger } from '../../../src/log.js';
import { NetworkManager } from '../../../src/netd/manager.js';
import type { NetdEvent, SetupParams } from '../../../src/netd/protocol.js';

export interface BridgeNetwork {
  config: Config;
  /** The host bridge the CNI bridge plugin attaches the pods' veths to. */
  bridge: string;
  /** A NetworkManager on this network, loaded (again: a restarted netd on the same state). */
  startManager(notify?: (event: NetdEvent) => void): Promise<NetworkManager>;
  /** Addresses host-local still has leased. */
  leases(): string[];
  /** Sandbox records netd has on disk. */
  records(): string[];
  /** Deletes the bridge and the temp dir. */
  remove(): void;
}

/** `kind` names the network (and gives the bridge "vt" + its first letter + a random tag); `subnet` is a /24 in 198.18.0.0/15. */
export function bridgeNetwork(kind: string, subnet: string): BridgeNetwork {
  const tag = randomBytes(3).toString('hex');
  const bridge = `vt${kind.slice(0, 1)}${tag}`;
  const name = `vmlet-${kind}-${tag}`;
  const dir = mkdtempSync(join(tmpdir(), `vmlet-netd-${kind}-`));
  const ipamDir = join(dir, 'ipam');
  const confDir = join(dir, 'cni');
  mkdirSync(confDir);
  writeFileSync(join(confDir, '10-test.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name,
    plugins: [{ type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet }]], routes: [{ dst: '198.18.0.0/15' }] } }],
  }));
  const config = loadConfig({ flags: { 'state-dir': join(dir, 'state'), 'cni-conf-dir': confDir, 'log-level': 'silent' } });
  return {
    config,
    bridge,
    async startManager(notify = () => {}) {
      const manager = new NetworkManager(config, silentLogger, notify);
      await manager.load();
      return manager;
    },
    leases: () => (existsSync(join(ipamDir, name)) ? readdirSync(join(ipamDir, name)).filter((f) => /^\d+\./.test(f)) : []),
    records: () => readdirSync(join(config.stateDir, 'netd')).filter((f) => f.endsWith('.json')),
    remove() {
      try {
        execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
      } catch {
        /* never created */
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Setup params of a new sandbox with a random id, on `netnsName` (a warm netns) when given. */
export function sandboxParams(netnsName?: string): SetupParams {
  const sandboxId = randomBytes(32).toString('hex');
  return {
    sandboxId, podName: 'p', podNamespace: 'default', podUid: sandboxId.slice(0, 8), hostname: 'p',
    dns: { servers: [], searches: [], options: [] }, portMappings: [],
    ...(netnsName ? { netnsName } : {}),
  };
}
