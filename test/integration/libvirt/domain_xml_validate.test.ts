/**
 * The domain XML against libvirt's own tools: virt-xml-validate (libvirt's RelaxNG schema) on
 * every golden file, and xmllint (libxml2, the parser libvirt uses) reading hostile values back.
 * Needs libvirt-clients and libxml2-utils; skipped with a note when they are missing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildDomainXml } from '../../../src/libvirt/domain_xml.js';
import type { VmSpec } from '../../../src/libvirt/domain_spec.js';

const run = promisify(execFile);
const goldenDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'golden', 'libvirt');

async function have(binary: string, args: string[]): Promise<boolean> {
  try {
    await run(binary, args);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

const tools = Promise.all([have('virt-xml-validate', ['--version']), have('xmllint', ['--version'])]);

test('virt-xml-validate accepts every golden domain XML', async (t) => {
  const [validate, xmllint] = await tools;
  if (!validate || !xmllint) return t.skip('virt-xml-validate or xmllint not installed (libvirt-clients, libxml2-utils)');
  const files = (await readdir(goldenDir)).filter((f) => f.endsWith('.xml'));
  assert.ok(files.length >= 3, `expected golden domain XML files in ${goldenDir}`);
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-domxml-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const f of files) {
    let path = join(goldenDir, f);
    const text = await readFile(path, 'utf8');
    if (/^<disk[ >]/.test(text)) {
      // A device for attach-device: validated inside a minimal domain.
      path = join(dir, f);
      await writeFile(path, `<domain type="qemu"><name>x</name><memory>65536</memory><os><type>hvm</type></os><devices>${text}</devices></domain>\n`);
    }
    const { stdout, stderr } = await run('virt-xml-validate', [path, 'domain']);
    assert.match(stdout + stderr, /validates/, f);
  }
});

test('libxml2 reads hostile values back exactly as given', async (t) => {
  const [, xmllint] = await tools;
  if (!xmllint) return t.skip('xmllint not installed (libxml2-utils)');
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-domxml-'));
  t.after(() => rm(dir, { recursive: true, force: true }));

  const spec: VmSpec = {
    name: 'vmlet-hostile',
    uuid: '0c8d5a3e-1b2f-4c6d-8e9f-0a1b2c3d4e5f',
    domainType: 'qemu',
    emulator: '/usr/bin/qemu-system-x86_64',
    memoryBytes: 256 * 1024 * 1024,
    vcpus: 1,
    rootDisk: { path: `/var/lib/vmlet/<x>&"'/&#46;&#46;/&lt;root.qcow2`, format: 'qcow2', driver: 'virtio' },
    console: { kind: 'file', path: '/var/lib/vmlet/a&amp;b/console.log' },
    nics: [],
    emulatorEnv: [{ name: 'EVIL', value: `"/><qemu:arg value="-S"/>&#10;'` }],
    metadata: { sandboxId: 'sb', containerId: 'ct' },
  };
  const file = join(dir, 'domain.xml');
  await writeFile(file, buildDomainXml(spec));
  // xmllint ends its --xpath output with one newline of its own.
  const xpath = async (expr: string): Promise<string> => (await run('xmllint', ['--xpath', expr, file])).stdout.replace(/\n$/, '');

  assert.equal(await xpath("string(/domain/devices/disk/source/@file)"), spec.rootDisk!.path);
  assert.equal(await xpath("string(/domain/devices/serial/source/@path)"), '/var/lib/vmlet/a&amp;b/console.log');
  assert.equal(await xpath("string(//*[local-name()='env']/@value)"), spec.emulatorEnv[0]!.value);
  assert.equal(await xpath("count(//*[local-name()='arg'])"), '0');
  const validation = await run('virt-xml-validate', [file, 'domain']);
  assert.match(validation.stdout + validation.stderr, /validates/);
});
