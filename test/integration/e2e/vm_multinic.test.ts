/**
 * End to end with two networks: a CNI result with two sandbox interfaces becomes two VM NICs, and
 * the guest gets both addresses by DHCP (one responder answering each NIC's MAC).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startTestDaemon, REPO_ROOT, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { serveTestGuest, waitFor, criLines, qemuPids, removeAllAndStop } from '../../helpers/e2e.js';

const tag = randomBytes(3).toString('hex');
let d: TestDaemon;
let imageServer: Server;
let imageUrl: string;

before(async () => {
  await ensureLibvirtd();
  ({ url: imageUrl, server: imageServer } = await serveTestGuest());
  d = await startTestDaemon({ args: ['--kvm', 'off', '--vm-memory', '256Mi', '--cni-bin-dir', `/usr/lib/cni:${join(REPO_ROOT, 'test', 'fixtures', 'cni', 'plugins')}`] });
  writeFileSync(join(d.cniConfDir, '10-multi.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-multi-${tag}`,
    plugins: [{
      type: 'multinic',
      addresses: [{ address: '198.19.250.2/24', gateway: '198.19.250.1' }, { address: '198.19.251.2/24' }],
    }],
  }));
});

after(async () => {
  await removeAllAndStop(d);
  imageServer?.close();
});

test('a pod with two interfaces boots a VM with two NICs that gets both addresses', { timeout: 600_000 }, async () => {
  const logDir = join(d.dir, 'pod-logs');
  mkdirSync(logDir, { recursive: true });
  await d.image.PullImage!({ image: { image: imageUrl } });
  const podConfig = { metadata: { name: 'multi', namespace: 'default', uid: `uid-multi-${tag}` }, hostname: 'multi', log_directory: logDir };
  const { pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config: podConfig });
  const st = await d.runtime.PodSandboxStatus!({ pod_sandbox_id: sandboxId });
  assert.equal(st.status.network.ip, '198.19.250.2');
  assert.deepEqual(st.status.network.additional_ips.map((i: { ip: string }) => i.ip), ['198.19.251.2']);

  const { container_id: id } = await d.runtime.CreateContainer!({
    pod_sandbox_id: sandboxId,
    config: { metadata: { name: 'vm' }, image: { image: imageUrl }, log_path: 'vm.log' },
    sandbox_config: podConfig,
  });
  await d.runtime.StartContainer!({ container_id: id }, { deadlineMs: 180_000 });
  const log = join(logDir, 'vm.log');
  await waitFor('both DHCP addresses in the guest', 240_000, () => {
    const texts = criLines(log).map((l) => l.text);
    return texts.includes('VMLET-GUEST ip eth0 198.19.250.2/24') && texts.includes('VMLET-GUEST ip eth1 198.19.251.2/24') ? true : undefined;
  }).catch((err: Error) => {
    throw new Error(`${err.message}; guest console:\n${criLines(log).filter((l) => l.text.startsWith('VMLET-GUEST')).map((l) => l.text).join('\n')}`);
  });
  // A VM that dies outside vmlet (here: destroyed behind its back) shows EXITED within a second,
  // learned from libvirt's lifecycle events.
  const domain = JSON.parse((await d.runtime.ContainerStatus!({ container_id: id, verbose: true })).info.info).domain as string;
  execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'destroy', domain], { stdio: 'ignore' });
  const gone = Date.now();
  const exited = await waitFor('EXITED after the VM died', 5_000, async () => {
    const st = (await d.runtime.ContainerStatus!({ container_id: id })).status;
    return st.state === 'CONTAINER_EXITED' ? st : undefined;
  });
  assert.ok(Date.now() - gone < 1_500, `EXITED after ${Date.now() - gone} ms`);
  assert.notEqual(exited.exit_code, 0);
  assert.equal(exited.reason, 'Error');

  await d.runtime.RemoveContainer!({ container_id: id });
  await d.runtime.RemovePodSandbox!({ pod_sandbox_id: sandboxId });
  assert.deepEqual(qemuPids(d.stateDir), []);
});
