/**
 * Recovery on start: vmlet domains and VM directories that no container record owns are removed;
 * domains that are not vmlet's are left alone.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { startTestDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { LibvirtClient, isNoDomain } from '../../../src/libvirt/client.js';
import { buildDomainXml } from '../../../src/libvirt/domain_xml.js';
import type { VmSpec } from '../../../src/libvirt/domain_spec.js';
import { installVmwrapper } from '../../../src/vmwrapper/install.js';
import { ownerIdFor } from '../../../src/store/owner.js';

const tag = randomBytes(3).toString('hex');
let d: TestDaemon | undefined;
let client: LibvirtClient | undefined;
const names: string[] = [];

after(async () => {
  for (const name of names) {
    await client?.lookupByName(name).then((dom) => client!.undefine(dom), () => {});
  }
  await client?.close();
  await d?.cleanup();
});

function spec(name: string, containerId: string, dir: string, owner?: string): VmSpec {
  return {
    name,
    uuid: randomUUID(),
    domainType: 'qemu',
    emulator: '/usr/local/lib/vmlet/vmwrapper',
    memoryBytes: 64 * 1024 * 1024,
    vcpus: 1,
    rootDisk: { path: join(dir, 'root.qcow2'), format: 'qcow2', driver: 'virtio' },
    console: { kind: 'file', path: join(dir, 'console.raw') },
    nics: [],
    emulatorEnv: [],
    metadata: { sandboxId: 'a'.repeat(64), containerId, ...(owner ? { owner } : {}) },
  };
}

test('a restarted vmlet removes its domains and VM directories no record owns, and nothing else', { timeout: 300_000 }, async () => {
  await ensureLibvirtd();
  await installVmwrapper();
  d = await startTestDaemon({ args: ['--kvm', 'off'] });
  await d.stop();
  client = await LibvirtClient.connect({});

  // An orphan: vmlet's name prefix and metadata, but no record (a crash between define and record).
  const orphanId = randomBytes(32).toString('hex');
  const orphanDir = join(d.stateDir, 'vms', orphanId);
  mkdirSync(orphanDir, { recursive: true });
  writeFileSync(join(orphanDir, 'root.qcow2'), '');
  const orphan = `vmlet-${tag}-orphan`;
  names.push(orphan);
  await client.defineXml(buildDomainXml(spec(orphan, orphanId, orphanDir, ownerIdFor(d.stateDir))));
  // Another vmlet's domain (another state dir) on the same libvirtd: not this one's to remove.
  const neighbour = `vmlet-${tag}-neighbour`;
  names.push(neighbour);
  await client.defineXml(buildDomainXml(spec(neighbour, randomBytes(32).toString('hex'), orphanDir, ownerIdFor('/var/lib/another-vmlet'))));
  // Not vmlet's: same prefix, no vmlet metadata — a human's domain must survive.
  const foreign = `vmlet-${tag}-foreign`;
  names.push(foreign);
  const foreignXml = buildDomainXml(spec(foreign, randomBytes(32).toString('hex'), orphanDir)).replace(/<metadata>[\s\S]*<\/metadata>/, '');
  await client.defineXml(foreignXml);

  d = await startTestDaemon({ dir: d.dir, args: ['--kvm', 'off'] });
  await assert.rejects(client.lookupByName(orphan), (err: unknown) => isNoDomain(err));
  assert.equal(existsSync(orphanDir), false, 'the orphan VM directory was removed');
  assert.equal((await client.lookupByName(foreign)).name, foreign, 'a domain without vmlet metadata is left alone');
  assert.equal((await client.lookupByName(neighbour)).name, neighbour, "another vmlet's domain is left alone");
});
