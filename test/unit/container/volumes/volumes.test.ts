import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { assertGolden } from '../../../helpers/golden.js';
import { InvalidArgumentError } from '../../../../src/errors.js';
import { resolveHostPath } from '../../../../src/container/volumes/host_path.js';
import { planVolumes, vmShares, type CheckedMount } from '../../../../src/container/volumes/plan.js';
import { buildDomainXml } from '../../../../src/libvirt/domain_xml.js';
import type { VmSpec } from '../../../../src/libvirt/domain_spec.js';
import { buildCloudInit } from '../../../../src/guest/cloudinit.js';
import { mounts as criMounts } from '../../../../src/cri/container_create.js';
import { threeNicNetwork } from '../../guest/fixtures.js';
import { parseVmAnnotations } from '../../../../src/guest/annotations.js';

function tree(t: { after: (fn: () => void) => void }): string {
  const root = mkdtempSync(join(tmpdir(), 'vmlet-vol-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'pod', 'cm', '..2024_01_01'), { recursive: true });
  writeFileSync(join(root, 'pod', 'cm', '..2024_01_01', 'key'), 'v1');
  symlinkSync('..2024_01_01', join(root, 'pod', 'cm', '..data'));
  symlinkSync('..data/key', join(root, 'pod', 'cm', 'key'));
  writeFileSync(join(root, 'pod', 'hosts'), '127.0.0.1 localhost\n');
  writeFileSync(join(root, 'secret'), 'no');
  symlinkSync('/etc', join(root, 'pod', 'abs-escape'));
  symlinkSync('../secret', join(root, 'pod', 'rel-escape'));
  symlinkSync('cm', join(root, 'pod', 'cm-link'));
  return root;
}

test('host paths: dirs, files and in-directory symlinks (the ..data layout) resolve to real paths', async (t) => {
  const root = tree(t);
  assert.deepEqual(await resolveHostPath(join(root, 'pod', 'cm'), 'm'), { path: join(root, 'pod', 'cm'), kind: 'dir' });
  assert.deepEqual(await resolveHostPath(join(root, 'pod', 'cm', 'key'), 'm'), { path: join(root, 'pod', 'cm', '..2024_01_01', 'key'), kind: 'file' });
  assert.deepEqual(await resolveHostPath(join(root, 'pod', 'cm-link', '..data'), 'm'), { path: join(root, 'pod', 'cm', '..2024_01_01'), kind: 'dir' });
  assert.deepEqual(await resolveHostPath(join(root, 'pod', 'hosts'), 'm'), { path: join(root, 'pod', 'hosts'), kind: 'file' });
});

test('host paths: hostile ones are refused naming the mount, and nothing is created', async (t) => {
  const root = tree(t);
  const before = readdirSync(join(root, 'pod')).sort();
  const cases: [string, RegExp][] = [
    [join(root, 'pod', 'abs-escape'), /symlink .*abs-escape -> "\/etc" leads outside/],
    [join(root, 'pod', 'abs-escape', 'passwd'), /leads outside/],
    [join(root, 'pod', 'rel-escape'), /symlink .*rel-escape -> "\.\.\/secret" leads outside/],
    [join(root, 'pod', 'missing'), /does not exist/],
    [join(root, 'pod', 'hosts', 'x'), /not a directory|file where a directory/],
    [`${root}/pod/../secret`, /not an absolute normalized path/],
    ['relative/path', /not an absolute normalized path/],
    ['/dev/null', /neither a directory nor a regular file/],
  ];
  for (const [path, message] of cases) {
    await assert.rejects(resolveHostPath(path, 'config.mounts[3] (/etc/x)'), (err: Error) => {
      assert.ok(err instanceof InvalidArgumentError, `${path}: ${err.message}`);
      assert.match(err.message, /^config\.mounts\[3\] \(\/etc\/x\): /);
      assert.match(err.message, message);
      return true;
    });
  }
  assert.deepEqual(readdirSync(join(root, 'pod')).sort(), before);
});

function kubeletMounts(): CheckedMount[] {
  return [
    { name: 'config.mounts[0] (/etc/hosts)', containerPath: '/etc/hosts', hostPath: '/var/lib/kubelet/pods/u/etc-hosts', kind: 'file', readonly: false },
    { name: 'config.mounts[1] (/dev/termination-log)', containerPath: '/dev/termination-log', hostPath: '/var/lib/kubelet/pods/u/containers/c/0a1b', kind: 'file', readonly: false },
    { name: 'config.mounts[2] (/var/run/secrets/kubernetes.io/serviceaccount)', containerPath: '/var/run/secrets/kubernetes.io/serviceaccount', hostPath: '/var/lib/kubelet/pods/u/volumes/kubernetes.io~projected/kube-api-access-x', kind: 'dir', readonly: true },
    { name: "config.mounts[3] (/srv/it's here)", containerPath: "/srv/it's here", hostPath: '/data/x', kind: 'dir', readonly: false },
  ];
}

test('plan: entries per share, guest commands parents first; golden', () => {
  const plan = planVolumes(kubeletMounts());
  assertGolden('container/volumes-plan.yaml', stringify(plan, { lineWidth: 0 }));
  assert.deepEqual(plan.entries.map((e) => [e.share, e.entry]), [['rw', '0'], ['rw', '1'], ['rw', '3'], ['ro', '2']]);
  assert.deepEqual(planVolumes([]), { entries: [], bootcmd: [] });
});

test('plan: a mount under a file mount is refused', () => {
  const mounts = kubeletMounts();
  mounts.push({ name: 'config.mounts[4] (/etc/hosts/x)', containerPath: '/etc/hosts/x', hostPath: '/d', kind: 'dir', readonly: false });
  assert.throws(() => planVolumes(mounts), /config\.mounts\[4\] \(\/etc\/hosts\/x\): container_path lies under config\.mounts\[0\]/);
});

test('domain XML: the two virtiofs shares on fixed root-bus slots, shared memfd memory; golden', () => {
  const spec = (): VmSpec => ({
    name: 'vmlet-0f3a9c2e71b4',
    uuid: '53008994-44c0-4017-ad44-9c49758083da',
    domainType: 'qemu',
    emulator: '/usr/local/lib/vmlet/vmwrapper',
    memoryBytes: 512 * 1024 * 1024,
    vcpus: 1,
    rootDisk: { path: '/var/lib/vmlet/vms/0f3a/root.qcow2', format: 'qcow2', driver: 'scsi' },
    seed: { path: '/var/lib/vmlet/vms/0f3a/seed.iso', kind: 'nocloud' },
    console: { kind: 'file', path: '/var/lib/vmlet/vms/0f3a/console.raw' },
    nics: [],
    shares: vmShares('/var/lib/vmlet/volumes/0f3a'),
    emulatorEnv: [],
    metadata: { sandboxId: 'sb', containerId: 'ct' },
  });
  const xml = buildDomainXml(spec());
  assertGolden('libvirt/domain-shares.xml', xml);
  assert.match(xml, /<memory unit="KiB">524288<\/memory>\s*<memoryBacking>\s*<source type="memfd"\/>\s*<access mode="shared"\/>\s*<\/memoryBacking>/);
  assert.match(xml, /<filesystem type="mount" accessmode="passthrough">\s*<driver type="virtiofs" queue="1024"\/>\s*<binary path="\/usr\/lib\/qemu\/virtiofsd"\/>\s*<source dir="\/var\/lib\/vmlet\/volumes\/0f3a\/ro"\/>\s*<target dir="vmlet-ro"\/>\s*<address type="pci" domain="0x0000" bus="0x00" slot="0x18" function="0x0"\/>/);
  assert.match(xml, /<source dir="\/var\/lib\/vmlet\/volumes\/0f3a\/rw"\/>\s*<target dir="vmlet-rw"\/>\s*<address[^>]*slot="0x19"/);
  // libvirt 9.0 refuses <readonly/> for virtiofs: read-only is the source mount's (exports.ts).
  assert.doesNotMatch(xml, /<readonly\/>\s*<address[^>]*slot="0x1[89]"/);
  // No share, no shared memory: a VM without a volumes host keeps private anonymous memory.
  const plain = buildDomainXml({ ...spec(), shares: [] });
  assert.doesNotMatch(plain, /memoryBacking|<filesystem/);
  const bad = (share: { tag: string; source: string }) =>
    assert.throws(() => buildDomainXml({ name: 'vmlet-x', uuid: '53008994-44c0-4017-ad44-9c49758083da', domainType: 'qemu', emulator: '/e', memoryBytes: 1 << 29, vcpus: 1, rootDisk: { path: '/r', format: 'qcow2', driver: 'virtio' }, console: { kind: 'pty' }, nics: [], shares: [share], emulatorEnv: [], metadata: { sandboxId: 's', containerId: 'c' } }), InvalidArgumentError);
  bad({ tag: 'a'.repeat(32), source: '/v' });
  bad({ tag: 'vmlet rw', source: '/v' });
  bad({ tag: 'ok', source: '/v/../etc' });
  bad({ tag: 'ok', source: 'rel' });
});

test('seed: the mounts are the first bootcmd entries, ahead of the annotations\' own; golden', () => {
  const plan = planVolumes(kubeletMounts());
  const docs = buildCloudInit({
    instanceId: 'i-1',
    hostname: 'pod-a',
    annotations: parseVmAnnotations({ VirtletCloudInitUserData: 'bootcmd:\n  - [echo, theirs]\n' }),
    env: [],
    network: threeNicNetwork(),
    bootcmd: plan.bootcmd,
  });
  assertGolden('guest/volumes-user-data.yaml', docs.userData);
  assert.match(docs.userData, /bootcmd:\n {2}- - modprobe\n {4}- virtiofs\n {2}- - mkdir\n {4}- -p\n {4}- \/run\/vmlet\/volumes\/ro/);
  assert.match(docs.userData, /- - echo\n {4}- theirs\n/);
  const overwrite = buildCloudInit({ instanceId: 'i-1', hostname: 'pod-a', annotations: parseVmAnnotations({ VirtletCloudInitUserData: 'bootcmd: [x]\n', VirtletCloudInitUserDataOverwrite: 'true' }), env: [], network: threeNicNetwork(), bootcmd: plan.bootcmd });
  assert.ok(overwrite.userData.indexOf('vmlet-ro') < overwrite.userData.indexOf('- x'));
});

test('CRI mounts: what a VM cannot honour is refused by name, selinux_relabel warned about', () => {
  const ok = { container_path: '/data', host_path: '/var/lib/x', uidMappings: [], gidMappings: [] };
  const refused: [Record<string, unknown>, RegExp][] = [
    [{ propagation: 'PROPAGATION_BIDIRECTIONAL' }, /config\.mounts\[0\] \(\/data\): propagation PROPAGATION_BIDIRECTIONAL/],
    [{ propagation: 'PROPAGATION_HOST_TO_CONTAINER' }, /propagation PROPAGATION_HOST_TO_CONTAINER/],
    [{ container_path: '/dev/sda' }, /\/dev paths other than \/dev\/termination-log/],
    [{ container_path: '/dev' }, /\/dev paths/],
    [{ container_path: 'data' }, /must be an absolute path/],
    [{ container_path: '/' }, /other than \//],
    [{ container_path: '/a/../etc' }, /'\.\.'/],
    [{ host_path: '/var/lib/../../etc' }, /'\.\.'/],
    [{ host_path: '/var//lib' }, /not a normalized path/],
    [{ host_path: '' }, /host_path is required/],
    [{ uidMappings: [{ container_id: 0, host_id: 1000, length: 1 }] }, /id-mapped/],
    [{ recursive_read_only: true }, /recursive_read_only needs readonly/],
  ];
  for (const [change, message] of refused) {
    assert.throws(() => criMounts([{ ...ok, ...change } as never]), (err: Error) => err instanceof InvalidArgumentError && message.test(err.message), JSON.stringify(change));
  }
  assert.throws(() => criMounts([ok as never, { ...ok, host_path: '/y' } as never]), /config\.mounts\[1\] \(\/data\): container_path is mounted twice/);
  const warnings: string[] = [];
  const out = criMounts([{ ...ok, selinux_relabel: true, readonly: true, propagation: 'PROPAGATION_PRIVATE' } as never, { ...ok, container_path: '/dev/termination-log', host_path: '/t' } as never], (m, msg) => warnings.push(`${m}: ${msg}`));
  assert.deepEqual(out, [{ container_path: '/data', host_path: '/var/lib/x', readonly: true }, { container_path: '/dev/termination-log', host_path: '/t', readonly: false }]);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /^config\.mounts\[0\] \(\/data\): selinux_relabel ignored/);
});
