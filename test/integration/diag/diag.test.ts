/** `vmlet diag`: one JSON with the sandbox record, its netns links/addresses/routes/rules; unknown ids fail clearly. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startTestDaemon, REPO_ROOT } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { removeAllAndStop, deleteLink } from '../../helpers/e2e.js';

const tag = randomBytes(3).toString('hex');

function diag(stateDir: string, id: string) {
  return spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'main.ts'), 'diag', id, '--state-dir', stateDir], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000 });
}

test('vmlet diag SANDBOX prints the record and the pod network as JSON', { timeout: 120_000 }, async () => {
  await ensureLibvirtd();
  const bridge = `vdg${tag}`;
  const d = await startTestDaemon({ args: ['--kvm', 'off'] });
  try {
    writeFileSync(join(d.cniConfDir, '10-diag.conflist'), JSON.stringify({
      cniVersion: '1.0.0', name: `diag-${tag}`,
      plugins: [{ type: 'bridge', bridge, isGateway: true, ipam: { type: 'host-local', dataDir: join(d.dir, 'ipam'), ranges: [[{ subnet: '198.18.190.128/25' }]] } }],
    }));
    const { pod_sandbox_id: id } = await d.runtime.RunPodSandbox!({ config: { metadata: { name: 'diag', namespace: 'default', uid: `uid-diag-${tag}` }, linux: {} } });
    const ip = (await d.runtime.PodSandboxStatus!({ pod_sandbox_id: id })).status.network.ip as string;
    const r = diag(d.stateDir, id.slice(0, 12));
    assert.equal(r.status, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.kind, 'sandbox');
    assert.equal(doc.sandbox.id, id);
    // The pod IP is handed to the VM by DHCP: the netns holds the CNI veth enslaved to the VM's bridge.
    assert.match(ip, /^198\.18\.190\.\d+$/);
    const links = doc.network.links as { ifname: string; master?: string }[];
    const eth0 = links.find((l) => l.ifname === 'eth0');
    assert.ok(eth0?.master && links.some((l) => l.ifname === eth0.master), 'eth0 on a bridge inside the netns');
    assert.ok(doc.network.addresses.some((l: { ifname: string; addr_info: { local: string }[] }) => l.ifname === 'lo' && l.addr_info.some((a) => a.local === '127.0.0.1')));
    assert.ok(Array.isArray(doc.network.routes) && doc.network.routes.length > 0);
    assert.ok(Array.isArray(doc.network.rules));
    assert.deepEqual(doc.vms, []);
    const missing = diag(d.stateDir, 'f'.repeat(64));
    assert.notEqual(missing.status, 0);
    assert.match(missing.stderr, /no sandbox or container/);
    assert.match(diag(d.stateDir, 'not-hex').stderr, /is not a sandbox or container id/);
  } finally {
    await removeAllAndStop(d);
    deleteLink(bridge);
  }
});
