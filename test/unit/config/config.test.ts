import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, configMarkdownTable } from '../../../src/config/load.js';
import { ConfigError, CONFIG_TABLE } from '../../../src/config/table.js';
import { REPO_ROOT } from '../../helpers/daemon.js';

test('the README carries the table generated from the config rows', () => {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  assert.ok(readme.includes(configMarkdownTable()), 'README config table is out of date: paste configMarkdownTable() output');
});

test('defaults follow the state dir and the documented values', () => {
  const c = loadConfig({ env: {} });
  assert.equal(c.socket, '/run/vmlet/vmlet.sock');
  assert.equal(c.stateDir, '/var/lib/vmlet');
  assert.equal(c.imageDir, '/var/lib/vmlet/images');
  assert.equal(c.libvirtUri, 'qemu:///system');
  assert.equal(c.kvm, 'auto');
  assert.equal(c.cniConfDir, '/etc/cni/net.d');
  assert.equal(c.cniBinDir[0], '/opt/cni/bin');
  const moved = loadConfig({ flags: { 'state-dir': '/srv/v' } });
  assert.equal(moved.imageDir, '/srv/v/images');
  assert.equal(moved.cniCacheDir, '/srv/v/cni-cache');
});

test('precedence: default < file < env < flag', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-config-'));
  try {
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'log-level: warn\nkvm: off\ncni-bin-dir: [/a, /b]\n');
    const fromFile = loadConfig({ file });
    assert.equal(fromFile.logLevel, 'warn');
    assert.deepEqual(fromFile.cniBinDir, ['/a', '/b']);
    const fromEnv = loadConfig({ file, env: { VMLET_LOG_LEVEL: 'error' } });
    assert.equal(fromEnv.logLevel, 'error');
    assert.equal(fromEnv.kvm, 'off');
    const fromFlag = loadConfig({ file, env: { VMLET_LOG_LEVEL: 'error' }, flags: { 'log-level': 'debug' } });
    assert.equal(fromFlag.logLevel, 'debug');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad values fail naming the key', () => {
  const cases: [Record<string, string>, string][] = [
    [{ kvm: 'maybe' }, 'kvm'],
    [{ socket: 'relative.sock' }, 'socket'],
    [{ 'log-level': 'loud' }, 'log-level'],
    [{ 'vm-memory': '1Mi' }, 'vm-memory'],
    [{ 'cni-timeout-ms': '-5' }, 'cni-timeout-ms'],
    [{ 'dhcp-lease-time': '19' }, 'dhcp-lease-time'],
    [{ 'dhcp-lease-time': '4294967295' }, 'dhcp-lease-time'],
    [{ 'dhcp-lease-time': '1h' }, 'dhcp-lease-time'],
  ];
  for (const [flags, key] of cases) {
    assert.throws(() => loadConfig({ flags }), (err: unknown) => err instanceof ConfigError && err.key === key && err.message.includes(key));
  }
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-config-'));
  try {
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'no-such-option: 1\n');
    assert.throws(() => loadConfig({ file }), (err: unknown) => err instanceof ConfigError && err.key === 'no-such-option');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the DHCP lease time: a day unless set, in whole seconds', () => {
  assert.equal(loadConfig({ env: {} }).dhcpLeaseSeconds, 86_400);
  assert.equal(loadConfig({ flags: { 'dhcp-lease-time': '40' } }).dhcpLeaseSeconds, 40);
  assert.equal(loadConfig({ env: { VMLET_DHCP_LEASE_TIME: '3600' } }).dhcpLeaseSeconds, 3600);
});

test('every row has a unique flag and env name', () => {
  assert.equal(new Set(CONFIG_TABLE.map((r) => r.flag)).size, CONFIG_TABLE.length);
  assert.equal(new Set(CONFIG_TABLE.map((r) => r.env)).size, CONFIG_TABLE.length);
  for (const r of CONFIG_TABLE) assert.match(r.env, /^VMLET_[A-Z][A-Z0-9_]*$/);
});

test('vm-image-prefixes: none by default, a comma-separated list of hosts or repositories, bad entries refused', () => {
  assert.deepEqual(loadConfig({ env: {} }).vmImagePrefixes, []);
  assert.deepEqual(
    loadConfig({ flags: { 'vm-image-prefixes': 'quay.io/containerdisks, 127.0.0.1:5000,registry.test/vm/' } }).vmImagePrefixes,
    ['quay.io/containerdisks', '127.0.0.1:5000', 'registry.test/vm/'],
  );
  assert.deepEqual(loadConfig({ env: { VMLET_VM_IMAGE_PREFIXES: 'none' } }).vmImagePrefixes, []);
  for (const bad of ['https://quay.io', 'quay.io/x:tag', 'Quay.io', 'a,,b', 'quay.io/x@sha256:1']) {
    assert.throws(() => loadConfig({ flags: { 'vm-image-prefixes': bad } }), /vm-image-prefixes/, bad);
  }
});

test('masquerade-ipv6-cidr: fd10:0:2::/120 by default, an IPv6 network /64../126 without host bits', () => {
  assert.equal(loadConfig({ env: {} }).masqueradeIpv6Cidr, 'fd10:0:2::/120');
  assert.equal(loadConfig({ flags: { 'masquerade-ipv6-cidr': 'fd00:ab::/64' } }).masqueradeIpv6Cidr, 'fd00:ab::/64');
  assert.equal(loadConfig({ env: { VMLET_MASQUERADE_IPV6_CIDR: 'FD10:0:3::100/120' } }).masqueradeIpv6Cidr, 'fd10:0:3::100/120');
  for (const bad of ['fd10:0:2::1/120', 'fd10::/63', 'fd10::/127', '10.0.2.0/24', 'fd10::', '::ffff:1.2.3.0/120', 'x/120']) {
    assert.throws(() => loadConfig({ flags: { 'masquerade-ipv6-cidr': bad } }), /masquerade-ipv6-cidr/, bad);
  }
});

test('the warm pool: a floor of 1, a ceiling equal to the floor unless set and never below it, one VM made at a time', () => {
  const d = loadConfig({ env: {} });
  assert.deepEqual([d.vmWarmPool, d.vmWarmPoolMax, d.vmWarmFillParallel], [1, 1, 1]);
  assert.equal(loadConfig({ flags: { 'vm-warm-pool': '3' } }).vmWarmPoolMax, 3, 'the default ceiling follows the floor');
  const burst = loadConfig({ flags: { 'vm-warm-pool': '1', 'vm-warm-pool-max': '4', 'vm-warm-fill-parallel': '2' } });
  assert.deepEqual([burst.vmWarmPool, burst.vmWarmPoolMax, burst.vmWarmFillParallel], [1, 4, 2]);
  assert.equal(loadConfig({ env: { VMLET_VM_WARM_POOL_MAX: 'floor', VMLET_VM_WARM_POOL: '2' } }).vmWarmPoolMax, 2);
  for (const flags of [
    { 'vm-warm-pool': '3', 'vm-warm-pool-max': '2' },
    { 'vm-warm-pool': '0', 'vm-warm-pool-max': '2' },
    { 'vm-warm-pool-max': '0' },
    { 'vm-warm-pool-max': '-1' },
    { 'vm-warm-pool-max': '17' },
    { 'vm-warm-pool-max': 'lots' },
  ]) {
    assert.throws(() => loadConfig({ flags }), (err: unknown) => err instanceof ConfigError && err.key === 'vm-warm-pool-max', JSON.stringify(flags));
  }
  // serve hands netd its effective config as values (src/main.ts): each must read back as itself.
  for (const flags of [{}, { 'vm-warm-pool': '0' }, { 'vm-warm-pool': '2', 'vm-warm-pool-max': '5', 'vm-warm-fill-parallel': '3' }]) {
    const c = loadConfig({ flags });
    const again = loadConfig({ flags: { 'vm-warm-pool': String(c.vmWarmPool), 'vm-warm-pool-max': String(c.vmWarmPoolMax), 'vm-warm-fill-parallel': String(c.vmWarmFillParallel) } });
    assert.deepEqual([again.vmWarmPool, again.vmWarmPoolMax, again.vmWarmFillParallel], [c.vmWarmPool, c.vmWarmPoolMax, c.vmWarmFillParallel], JSON.stringify(flags));
  }
  assert.equal(loadConfig({ flags: { 'vm-warm-pool': '0', 'vm-warm-pool-max': '0' } }).vmWarmPoolMax, 0);
  for (const bad of ['0', '9', 'x']) {
    assert.throws(() => loadConfig({ flags: { 'vm-warm-fill-parallel': bad } }), (err: unknown) => err instanceof ConfigError && err.key === 'vm-warm-fill-parallel');
  }
});
