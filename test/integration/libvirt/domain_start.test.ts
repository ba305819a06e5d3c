/**
 * The generated domain XML started for real: libvirt's embedded QEMU driver (virt-qemu-run, its
 * own state under a private root, no shared libvirtd) defines and starts it under TCG with a real
 * TAP, a qcow2 root disk on virtio-scsi, a config-drive seed ISO on SATA, a file console and
 * emulator env. Then we check the QEMU process libvirt launched and stop it.
 * Skipped when virt-qemu-run is not installed. The first start waits for libvirt's QEMU
 * capability probe (seen 80 s on a busy 2-core machine).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildDomainXml } from '../../../src/libvirt/domain_xml.js';
import { parseVmAnnotations } from '../../../src/guest/annotations.js';
import { buildConfigDrive } from '../../../src/guest/cloudinit.js';
import { writeSeedIso } from '../../../src/guest/seed_iso.js';

const run = promisify(execFile);

async function installed(binary: string): Promise<boolean> {
  try {
    await run('sh', ['-c', 'command -v "$1"', 'sh', binary]);
    return true;
  } catch {
    return false;
  }
}

function exited(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Pids of processes whose command line contains `needle` (to find the QEMU libvirt started). */
async function pidsWith(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').some((arg) => arg.includes(needle))) pids.push(Number(entry));
  }
  return pids;
}

test('libvirt starts the generated domain under TCG', { timeout: 300_000 }, async (t) => {
  if (!(await installed('virt-qemu-run'))) return t.skip('virt-qemu-run not installed');

  const id = randomBytes(4).toString('hex');
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-domstart-'));
  const tap = `vmlt${id}`;
  const name = `vmlet-test-${id}`;
  let runner: ChildProcess | undefined;
  t.after(async () => {
    if (runner && !(await exited(runner, 0))) {
      runner.kill('SIGINT'); // virt-qemu-run destroys the guest on SIGINT
      if (!(await exited(runner, 20_000))) runner.kill('SIGKILL');
    }
    // Should virt-qemu-run have died without destroying its guest, stop that QEMU ourselves.
    for (const pid of await pidsWith(`guest=${name}`)) process.kill(pid, 'SIGKILL');
    await run('ip', ['link', 'del', tap]).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });

  // QEMU runs as libvirt's unprivileged qemu user: it must be able to reach the files.
  await chmod(dir, 0o755);
  await run('ip', ['tuntap', 'add', tap, 'mode', 'tap']);
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'root.qcow2'), '64M']);
  const mac = '0a:58:c6:12:00:05';
  await writeSeedIso(
    join(dir, 'config-2.iso'),
    buildConfigDrive({
      instanceId: name,
      hostname: 'start-test',
      annotations: parseVmAnnotations({}),
      env: [{ name: 'A', value: 'b' }],
      network: {
        interfaces: [
          {
            name: 'eth0',
            mac,
            mtu: 1400,
            ips: [{ family: 4, address: '198.18.0.5', prefixLength: 24 }],
            routes: [],
            binding: { kind: 'tap', tap, bridge: 'unused' },
          },
        ],
        dns: { nameservers: [], search: [], options: [] },
      },
    }),
  );
  const xml = buildDomainXml({
    name,
    uuid: `11111111-2222-4333-8444-${randomBytes(6).toString('hex')}`,
    domainType: 'qemu',
    emulator: '/usr/bin/qemu-system-x86_64',
    memoryBytes: 128 * 1024 * 1024,
    vcpus: 1,
    cputune: { shares: 1024, period: 100000, quota: 50000 },
    rootDisk: { path: join(dir, 'root.qcow2'), format: 'qcow2', driver: 'scsi' },
    seed: { path: join(dir, 'config-2.iso'), kind: 'configdrive' },
    console: { kind: 'file', path: join(dir, 'console.log') },
    nics: [{ kind: 'tap', ifName: 'eth0', mac, mtu: 1400, tap }],
    emulatorEnv: [{ name: 'VMLET_TEST_ENV', value: `a&b<"c'>` }],
    metadata: { sandboxId: 'sb', containerId: id },
  });
  const xmlFile = join(dir, 'domain.xml');
  await writeFile(xmlFile, xml);

  let output = '';
  runner = spawn('virt-qemu-run', ['-v', '-r', join(dir, 'root'), xmlFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  runner.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  runner.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const started = await new Promise<boolean>((resolve) => {
    const poll = setInterval(() => {
      if (/guest running/.test(output)) done(true);
    }, 250);
    const done = (ok: boolean): void => {
      clearInterval(poll);
      resolve(ok);
    };
    runner!.once('exit', () => done(/guest running/.test(output)));
  });
  assert.ok(started, `virt-qemu-run did not start the guest:\n${output}`);

  const [qemuPid] = await pidsWith(`guest=${name}`);
  assert.ok(qemuPid, 'no QEMU process for the domain');
  const argv = (await readFile(`/proc/${qemuPid}/cmdline`, 'utf8')).split('\0');
  const cmd = argv.join(' ');
  assert.match(cmd, /pc-q35-/, 'q35 machine');
  assert.match(cmd, /"driver":"virtio-scsi-pci"/);
  assert.match(cmd, /"driver":"scsi-hd"/);
  // The seed is a SCSI CD-ROM beside the root disk (LUN 1): readable by kernels without AHCI.
  assert.match(cmd, /"driver":"scsi-cd","bus":"scsi0\.0","channel":0,"scsi-id":0,"lun":1/, 'seed CD-ROM on the virtio-scsi bus, LUN 1');
  assert.match(cmd, new RegExp(`"driver":"virtio-net-pci","host_mtu":1400,[^}]*"mac":"${mac}"`));
  assert.match(cmd, /-chardev file,id=charserial0,[^ ]*append=on/);
  assert.match(cmd, /"driver":"virtio-rng-pci"/);
  const environ = (await readFile(`/proc/${qemuPid}/environ`, 'utf8')).split('\0');
  assert.ok(environ.includes(`VMLET_TEST_ENV=a&b<"c'>`), 'emulator env passed literally');
  // The TAP is now held open by QEMU.
  const { stdout: link } = await run('ip', ['-j', 'link', 'show', tap]);
  assert.equal(JSON.parse(link)[0].ifname, tap);

  runner.kill('SIGINT');
  assert.ok(await exited(runner, 30_000), 'virt-qemu-run did not stop');
  assert.deepEqual(await pidsWith(`guest=${name}`), [], 'QEMU left running');
});
