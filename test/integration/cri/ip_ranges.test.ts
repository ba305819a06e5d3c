/**
 * The node's pod CIDR that kubelet sets with UpdateRuntimeConfig reaches CNI plugins declaring
 * the `ipRanges` capability: host-local with no ranges of its own gives the pod an address of it.
 * Pod network: 198.19.44.0/24 (given only through UpdateRuntimeConfig).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { clearStaleTestSubnet } from '../../helpers/e2e.js';

const tag = randomBytes(3).toString('hex');
const bridge = `vir${tag}`;
let d: TestDaemon | undefined;

after(async () => {
  if (d && d.child.exitCode === null) {
    for (const s of (await d.runtime.ListPodSandbox!({}).catch(() => ({ items: [] }))).items) {
      await d.runtime.RemovePodSandbox!({ pod_sandbox_id: s.id }).catch(() => {});
    }
  }
  await d?.cleanup();
  try {
    execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
  } catch {
    /* not there */
  }
});

test('UpdateRuntimeConfig pod_cidr becomes the ipRanges of a plugin that declares it; the address is released at Stop', async () => {
  await ensureLibvirtd();
  clearStaleTestSubnet('198.19.44');
  d = await startTestDaemon();
  const ipamDir = join(d.dir, 'ipam');
  writeFileSync(join(d.cniConfDir, '10-ipranges.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-ipranges-${tag}`,
    plugins: [{ type: 'bridge', bridge, isGateway: true, ipMasq: false, capabilities: { ipRanges: true }, ipam: { type: 'host-local', dataDir: ipamDir } }],
  }));
  await d.runtime.UpdateRuntimeConfig!({ runtime_config: { network_config: { pod_cidr: '198.19.44.0/24' } } });
  const config = { metadata: { name: 'ipr', namespace: 'default', uid: `uid-ipr-${tag}`, attempt: 0 }, linux: {} };
  const id = (await d.runtime.RunPodSandbox!({ config })).pod_sandbox_id;
  const status = await d.runtime.PodSandboxStatus!({ pod_sandbox_id: id });
  assert.match(status.status.network.ip, /^198\.19\.44\.\d+$/, `pod IP ${status.status.network.ip} is from the pod CIDR`);
  await d.runtime.StopPodSandbox!({ pod_sandbox_id: id });
  await d.runtime.RemovePodSandbox!({ pod_sandbox_id: id });
  const leases = existsSync(join(ipamDir, `vmlet-ipranges-${tag}`)) ? readdirSync(join(ipamDir, `vmlet-ipranges-${tag}`)).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
  assert.deepEqual(leases, []);
});
