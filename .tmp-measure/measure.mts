import { mkdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { loadConfig } from '../src/config/load.js';
import { NetworkManager } from '../src/netd/manager.js';
const dir = mkdtempSync(join(tmpdir(), 'vs-'));
const confDir = join(dir, 'cni'); mkdirSync(confDir);
const bridge = 'vtm' + randomBytes(2).toString('hex');
writeFileSync(join(confDir, '10.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'vs', plugins: [{ type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: join(dir, 'ipam'), ranges: [[{ subnet: '198.18.77.0/24' }]], routes: [{ dst: '198.18.0.0/15' }] } }] }));
const config = loadConfig({ flags: { 'state-dir': join(dir, 'state'), 'cni-conf-dir': confDir, 'log-level': 'silent' } });
const lines: any[] = [];
const logger = pino({ level: 'debug' }, { write: (s: string) => { const o = JSON.parse(s); if (/VM side of a sandbox prepared|wired|TAP/i.test(o.msg)) lines.push(o); } } as any);
const m = new NetworkManager(config, logger as any, () => {});
await m.load();
for (let i = 0; i < 6; i++) {
  const id = randomBytes(32).toString('hex');
  await m.setup({ sandboxId: id, podName: 'p', podNamespace: 'd', podUid: 'u', hostname: 'p', dns: { servers: [], searches: [], options: [] }, portMappings: [] });
  const t = performance.now();
  await m.vmNetwork({ sandboxId: id });
  console.log('vmNetwork', (performance.now() - t).toFixed(1));
  await m.teardown({ sandboxId: id });
}
for (const l of lines) console.log(l.msg, JSON.stringify(l.stepsMs ?? l.ms));
await m.close(); execFileSync('ip', ['link', 'del', bridge]); rmSync(dir, { recursive: true });
