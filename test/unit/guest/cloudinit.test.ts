import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { assertGolden } from '../../helpers/golden.js';
import { InvalidArgumentError } from '../../../src/errors.js';
import { parseVmAnnotations } from '../../../src/guest/annotations.js';
import {
  buildCloudInit,
  buildConfigDrive,
  buildSeedDocuments,
  environmentFile,
  mergeValues,
  type CloudInitInput,
} from '../../../src/guest/cloudinit.js';
import { sriovNetwork, threeNicNetwork } from './fixtures.js';

const KEYS = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostileFreeKeyOne me@laptop\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 ops@bastion\n';

function input(annotations: Record<string, string> = {}): CloudInitInput {
  return {
    instanceId: 'web-0.default',
    hostname: 'web-0',
    annotations: parseVmAnnotations({ VirtletSSHKeys: KEYS, ...annotations }),
    env: [
      { name: 'PATH', value: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin' },
      { name: 'GREETING', value: `it's a "test" $HOME \`id\` \\n` },
      { name: 'MULTI', value: 'line1\nline2' },
      { name: 'EMPTY', value: '' },
      { name: 'my.var', value: 'left out' },
    ],
    network: threeNicNetwork(),
  };
}

/** Parses generated YAML the way cloud-init's PyYAML does (YAML 1.1). */
function yaml11(text: string): any {
  return parse(text, { version: '1.1' });
}

test('NoCloud documents with generated defaults', () => {
  const docs = buildCloudInit(input());
  assertGolden('guest/nocloud-default/meta-data', docs.metaData);
  assertGolden('guest/nocloud-default/user-data', docs.userData);
  assertGolden('guest/nocloud-default/network-config', docs.networkConfig);
  assert.deepEqual(docs.omittedEnv, ['my.var']);

  assert.deepEqual(JSON.parse(docs.metaData), {
    'instance-id': 'web-0.default',
    'local-hostname': 'web-0',
    'public-keys': KEYS.trim().split('\n'),
  });
  assert.ok(docs.userData.startsWith('#cloud-config\n'));
  const user = yaml11(docs.userData);
  assert.deepEqual(user.ssh_authorized_keys, KEYS.trim().split('\n'));
  assert.deepEqual(user.write_files, [
    { path: '/etc/cloud/environment', permissions: '0600', content: environmentFile(input().env).content },
  ]);
});

test('network-config v1: every NIC by MAC, static addresses, one default route per family, DNS', () => {
  const net = yaml11(buildCloudInit(input()).networkConfig);
  assert.equal(net.version, 1);
  assert.equal(net.network, undefined, 'NoCloud network-config has no top-level network key');
  const [eth0, net1, net2, dns] = net.config;
  // MACs survive YAML 1.1 as strings (an unquoted 52:54:00:12:34:56 would be a base-60 integer).
  assert.deepEqual(
    [eth0.mac_address, net1.mac_address, net2.mac_address],
    ['52:54:00:12:34:56', '0a:58:c6:12:01:07', '02:00:00:aa:bb:cc'],
  );
  assert.deepEqual(eth0, {
    type: 'physical',
    name: 'eth0',
    mac_address: '52:54:00:12:34:56',
    mtu: 1500,
    subnets: [
      {
        type: 'static',
        address: '198.18.0.5',
        netmask: '255.255.255.0',
        gateway: '198.18.0.1',
        routes: [{ destination: '198.19.0.0', netmask: '255.255.0.0', gateway: '198.18.0.254' }],
      },
      // ::/0 without a gateway takes the address's gateway (CNI's omitted gw).
      { type: 'static6', address: 'fd00:198:18::5/64', gateway: 'fd00:198:18::1' },
    ],
  });
  // net1: its default route is the second IPv4 one (dropped), its gateway-less route has no
  // gateway to fall back on (dropped); the other route is normalized to its network address.
  assert.deepEqual(net1.subnets, [
    {
      type: 'static',
      address: '198.18.1.7',
      netmask: '255.255.255.0',
      routes: [{ destination: '198.18.64.0', netmask: '255.255.192.0', gateway: '198.18.1.254' }],
    },
  ]);
  assert.equal(net1.mtu, 9000);
  assert.deepEqual(net2.subnets, [{ type: 'static', address: '198.18.2.9', netmask: '255.255.255.240' }]);
  assert.deepEqual(dns, {
    type: 'nameserver',
    address: ['198.18.0.10', 'fd00:198:18::10'],
    search: ['default.svc.cluster.local', 'svc.cluster.local'],
  });
});

test('VirtletForceDHCPNetworkConfig: DHCP subnets on TAP NICs, no static DNS without a VF', () => {
  const docs = buildCloudInit(input({ VirtletForceDHCPNetworkConfig: 'true' }));
  assertGolden('guest/nocloud-dhcp/network-config', docs.networkConfig);
  const net = yaml11(docs.networkConfig);
  assert.deepEqual(
    net.config.map((c: any) => [c.name, c.subnets?.map((s: any) => s.type)]),
    [
      ['eth0', ['dhcp', 'dhcp6']],
      ['net1', ['dhcp']],
      // net2 is a VF: no DHCP server serves it, so it stays static and the DNS entry stays for it.
      ['net2', ['static']],
      [undefined, undefined],
    ],
  );
  const tapsOnly = { ...input({ VirtletForceDHCPNetworkConfig: 'true' }), network: { ...threeNicNetwork(), interfaces: threeNicNetwork().interfaces.slice(0, 2) } };
  const tapNet = yaml11(buildCloudInit(tapsOnly).networkConfig);
  assert.ok(tapNet.config.every((c: any) => c.type === 'physical'));
});

test('VirtletCloudInitUserData merges over the defaults: maps recurse, lists append, scalars replace', () => {
  const docs = buildCloudInit(
    input({
      VirtletCloudInitUserData: [
        'ssh_authorized_keys: ["ssh-ed25519 AAAAthird third@key"]',
        'write_files:',
        '- path: /etc/motd',
        '  content: "hello from user-data"',
        'users:',
        '- name: cloudy',
        '  gecos: Magic Cloud App Daemon User',
        'runcmd: [["sh", "-c", "set -a; . /etc/cloud/environment; env"]]',
        'package_update: on',
      ].join('\n'),
      VirtletCloudInitMetaData: 'instance-id: foobar\npublic-keys: ["ssh-rsa AAAAmeta meta@key"]\n',
    }),
  );
  assertGolden('guest/nocloud-merge/meta-data', docs.metaData);
  assertGolden('guest/nocloud-merge/user-data', docs.userData);
  const user = yaml11(docs.userData);
  assert.deepEqual(user.ssh_authorized_keys, [...KEYS.trim().split('\n'), 'ssh-ed25519 AAAAthird third@key']);
  assert.deepEqual(
    user.write_files.map((f: any) => f.path),
    ['/etc/cloud/environment', '/etc/motd'],
  );
  assert.equal(user.package_update, true);
  const meta = JSON.parse(docs.metaData);
  assert.equal(meta['instance-id'], 'foobar');
  assert.equal(meta['public-keys'].length, 3);
});

test('VirtletCloudInitUserDataOverwrite: top-level keys of the annotation replace the generated ones', () => {
  const docs = buildCloudInit(
    input({
      VirtletCloudInitUserDataOverwrite: 'true',
      VirtletCloudInitUserData: 'write_files:\n- path: /etc/motd\n  content: only this\n',
    }),
  );
  assertGolden('guest/nocloud-overwrite/user-data', docs.userData);
  const user = yaml11(docs.userData);
  assert.deepEqual(user.write_files, [{ path: '/etc/motd', content: 'only this' }]);
  assert.deepEqual(user.ssh_authorized_keys, KEYS.trim().split('\n'), 'keys not named by the annotation stay');
});

test('VirtletCloudInitUserDataScript replaces user-data verbatim', () => {
  const script = '#!/bin/sh\necho "hi" > /tmp/x\n';
  const docs = buildCloudInit(input({ VirtletCloudInitUserDataScript: script, VirtletCloudInitUserData: 'runcmd: [ls]' }));
  assert.equal(docs.userData, script);
  // meta-data still carries the keys for images that only read meta-data.
  assert.equal(JSON.parse(docs.metaData)['public-keys'].length, 2);
});

test('config drive documents (OpenStack format)', () => {
  const docs = buildConfigDrive(input({ VirtletCloudInitMetaData: 'instance-id: foobar\n' }));
  assertGolden('guest/configdrive/meta_data.json', docs.metaData);
  assertGolden('guest/configdrive/user_data', docs.userData);
  assertGolden('guest/configdrive/network_data.json', docs.networkData);
  const meta = JSON.parse(docs.metaData);
  // cloud-init takes instance-id from uuid on a config drive: the override must land there too.
  assert.equal(meta.uuid, 'foobar');
  assert.equal(meta['instance-id'], 'foobar');
  assert.equal(meta.hostname, 'web-0');
  assert.deepEqual(Object.values(meta.public_keys), KEYS.trim().split('\n'));

  const net = JSON.parse(docs.networkData);
  assert.deepEqual(
    net.links.map((l: any) => [l.id, l.type, l.ethernet_mac_address, l.mtu]),
    [
      ['eth0', 'tap', '52:54:00:12:34:56', 1500],
      ['net1', 'tap', '0a:58:c6:12:01:07', 9000],
      ['net2', 'phy', '02:00:00:aa:bb:cc', 1500],
    ],
  );
  assert.deepEqual(net.networks[0], {
    id: 'network0',
    link: 'eth0',
    network_id: 'eth0-ipv4-0',
    type: 'ipv4',
    ip_address: '198.18.0.5',
    netmask: '255.255.255.0',
    routes: [
      { network: '0.0.0.0', netmask: '0.0.0.0', gateway: '198.18.0.1' },
      { network: '198.19.0.0', netmask: '255.255.0.0', gateway: '198.18.0.254' },
    ],
  });
  assert.deepEqual(net.networks[1].routes, [{ network: '::', netmask: '::', gateway: 'fd00:198:18::1' }]);
  assert.equal(net.networks[1].netmask, 'ffff:ffff:ffff:ffff::');
  assert.deepEqual(net.services, [
    { type: 'dns', address: '198.18.0.10' },
    { type: 'dns', address: 'fd00:198:18::10' },
  ]);

  const dhcp = JSON.parse(buildConfigDrive(input({ VirtletForceDHCPNetworkConfig: 'true' })).networkData);
  assert.deepEqual(
    dhcp.networks.map((n: any) => [n.link, n.type]),
    [
      ['eth0', 'ipv4_dhcp'],
      ['eth0', 'ipv6_dhcp'],
      ['net1', 'ipv4_dhcp'],
      ['net2', 'ipv4'],
    ],
  );
  // DNS for the VF, which gets no DHCP lease.
  assert.deepEqual(dhcp.services.map((x: any) => x.address), ['198.18.0.10', 'fd00:198:18::10']);
});

test('buildSeedDocuments picks the builder by kind', () => {
  assert.equal(buildSeedDocuments(input(), 'nocloud').kind, 'nocloud');
  assert.equal(buildSeedDocuments(input(), 'configdrive').kind, 'configdrive');
});

test('environment file: POSIX sh single quoting, unassignable names left out', () => {
  const env = environmentFile([
    { name: 'A', value: "it's" },
    { name: '_B2', value: '$(rm -rf /)`x`"' },
    { name: '9LIVES', value: 'x' },
    { name: 'with-dash', value: 'x' },
  ]);
  assert.equal(env.content, `A='it'\\''s'\n_B2='$(rm -rf /)\`x\`"'\n`);
  assert.deepEqual(env.omitted, ['9LIVES', 'with-dash']);
  assert.throws(() => environmentFile([{ name: 'A', value: 'x\u0000y' }]), InvalidArgumentError);
});

test('mergeValues: maps recurse, lists append, scalars and mismatched types replace', () => {
  assert.deepEqual(mergeValues({ a: { b: [1], c: 1 }, d: 'x' }, { a: { b: [2], c: 2, e: 3 }, d: { f: 1 } }), {
    a: { b: [1, 2], c: 2, e: 3 },
    d: { f: 1 },
  });
});

test('invalid identity or network values → InvalidArgumentError', () => {
  const cases: Array<[string, (i: CloudInitInput) => void, RegExp]> = [
    ['hostname with underscore', (i) => (i.hostname = 'web_0'), /hostname/],
    ['hostname with newline', (i) => (i.hostname = 'web\n0'), /hostname/],
    ['empty instance id', (i) => (i.instanceId = ''), /instance id/],
    ['instance id with control char', (i) => (i.instanceId = 'a\u0001'), /instance id/],
    ['bad MAC', (i) => (i.network.interfaces[0]!.mac = '52:54:00:12:34'), /MAC/],
    ['bad IPv4', (i) => (i.network.interfaces[0]!.ips[0]!.address = '198.18.0.256'), /address/],
    ['IPv6 given as v4', (i) => (i.network.interfaces[0]!.ips[0]!.address = 'fd00::1'), /address/],
    ['prefix out of range', (i) => (i.network.interfaces[0]!.ips[0]!.prefixLength = 33), /prefix/],
    ['bad route', (i) => (i.network.interfaces[0]!.routes[1]!.destination = '198.19.0.0'), /CIDR/],
    ['route gateway of the wrong family', (i) => (i.network.interfaces[0]!.routes[1]!.gateway = 'fd00::1'), /gateway/],
    ['interface name too long', (i) => (i.network.interfaces[0]!.name = 'a'.repeat(16)), /interface name/],
    ['duplicate interface name', (i) => (i.network.interfaces[1]!.name = 'eth0'), /duplicate/],
    ['bad MTU', (i) => (i.network.interfaces[0]!.mtu = 0), /MTU/],
    ['bad nameserver', (i) => (i.network.dns.nameservers = ['dns.example']), /nameserver/],
    ['bad search domain', (i) => (i.network.dns.search = ['a b']), /search/],
  ];
  for (const [label, mutate, message] of cases) {
    const i = input();
    mutate(i);
    assert.throws(
      () => buildCloudInit(i),
      (err: unknown) => err instanceof InvalidArgumentError && message.test(err.message),
      label,
    );
  }
});

test('network-config v1 with two VFs: a physical entry per VF by MAC with its addresses and routes; the TAP NIC unchanged', () => {
  const docs = buildCloudInit({ ...input(), network: sriovNetwork() });
  assertGolden('guest/nocloud-sriov/network-config', docs.networkConfig);
  const [eth0, net1, net2, dns] = yaml11(docs.networkConfig).config;
  assert.deepEqual(eth0.subnets, [{ type: 'static', address: '198.18.170.5', netmask: '255.255.255.0', gateway: '198.18.170.1' }]);
  assert.deepEqual(net1, {
    type: 'physical',
    name: 'net1',
    mac_address: '02:5d:2c:00:01:01',
    mtu: 9000,
    subnets: [
      {
        type: 'static',
        address: '198.18.171.20',
        netmask: '255.255.255.0',
        routes: [{ destination: '198.18.172.0', netmask: '255.255.255.0', gateway: '198.18.171.254' }],
      },
    ],
  });
  assert.deepEqual(net2.subnets, [
    { type: 'static', address: '198.18.173.9', netmask: '255.255.255.240' },
    { type: 'static6', address: 'fd00:198:18:173::9/64', gateway: 'fd00:198:18:173::1' },
  ]);
  assert.deepEqual(dns, { type: 'nameserver', address: ['198.18.170.10'], search: ['default.svc.cluster.local'] });
});

test('VirtletForceDHCPNetworkConfig leaves VFs static (no DHCP server serves them) and keeps DNS for them', () => {
  const input1 = { ...input({ VirtletForceDHCPNetworkConfig: 'true' }), network: sriovNetwork() };
  const net = yaml11(buildCloudInit(input1).networkConfig);
  assert.deepEqual(
    net.config.map((c: any) => [c.type, c.name, c.subnets?.map((s: any) => s.type)]),
    [
      ['physical', 'eth0', ['dhcp']],
      ['physical', 'net1', ['static']],
      ['physical', 'net2', ['static', 'static6']],
      ['nameserver', undefined, undefined],
    ],
  );
  const data = JSON.parse(buildConfigDrive(input1).networkData);
  assert.deepEqual(
    data.networks.map((n: any) => [n.link, n.type]),
    [
      ['eth0', 'ipv4_dhcp'],
      ['net1', 'ipv4'],
      ['net2', 'ipv4'],
      ['net2', 'ipv6'],
    ],
  );
  assert.deepEqual(data.services, [{ type: 'dns', address: '198.18.170.10' }]);
});
