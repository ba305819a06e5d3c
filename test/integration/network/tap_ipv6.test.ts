/**
 * The tap binding's IPv6 part against the real kernel: a pod netns with a dual-stack veth as CNI
 * leaves it (the CNI side in a "host" netns of its own), wired with IPv6 (the bridge's link-local
 * address, the VM's prefix and CNI's default route on the bridge, forwarding on), then unwired
 * back to exactly what it was, forwarding off again. Nothing is created in the host namespace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { ExecIpRunner } from '../../../src/network/iproute.js';
import { DhcpIsolation, ExecNftRunner } from '../../../src/network/isolation.js';
import { readInterfaceSnapshot } from '../../../src/network/bindings/snapshot.js';
import type { BindingContext } from '../../../src/network/bindings/types.js';
import { TapBinding } from '../../../src/network/bindings/tap.js';
import { ExecSysctlRunner } from '../../../src/network/sysctl.js';
import { linkLocalFromMac } from '../../../src/network/ipv6/address.js';
import { TestNamespaces, ip, ipJson, testIds } from './helpers.js';

const ipRunner = new ExecIpRunner();
const sysctl = new ExecSysctlRunner();
const tap = new TapBinding({ ip: ipRunner, isolation: new DhcpIsolation(new ExecNftRunner()), ipv6: { sysctl } });

test('tap binding with IPv6: the bridge becomes the router, and unwiring gives the veth back as CNI left it', async (t) => {
  const { tag, net } = testIds();
  // Groups without leading zeros, so they read back from the kernel as written.
  const group = () => randomInt(0x1000, 0x10000).toString(16);
  const ula = `fd${randomBytes(1).toString('hex')}:${group()}:${group()}:1`;
  const nss = new TestNamespaces(tag);
  t.after(async () => {
    await nss.cleanup();
    assert.deepEqual(await nss.leftovers(), [], 'test namespaces left behind');
  });
  const host = await nss.create('host');
  const pod = await nss.create('pod');
  await ip(host, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod);
  await ip(host, 'address', 'add', `${ula}::1/64`, 'dev', 'up0', 'nodad');
  await ip(host, 'link', 'set', 'dev', 'up0', 'up');
  await ip(pod, 'address', 'add', `${net}.5/24`, 'dev', 'eth0');
  await ip(pod, 'address', 'add', `${ula}::5/64`, 'dev', 'eth0', 'nodad');
  await ip(pod, 'link', 'set', 'dev', 'eth0', 'up');
  await ip(pod, 'route', 'add', '::/0', 'via', `${ula}::1`, 'dev', 'eth0');
  const ctx: BindingContext = {
    netnsName: pod,
    netnsPath: `/run/netns/${pod}`,
    sandboxId: `test${tag}`,
    index: 0,
    cniInterface: {
      name: 'eth0',
      ips: [{ family: 4, address: `${net}.5`, prefixLength: 24 }, { family: 6, address: `${ula}::5`, prefixLength: 64, gateway: `${ula}::1` }],
      routes: [{ destination: '::/0', gateway: `${ula}::1` }],
    },
  };
  const forwarding = async () => (await sysctl.read(pod, ['net.ipv6.conf.all.forwarding']))['net.ipv6.conf.all.forwarding'];
  assert.equal(await forwarding(), '0');
  const before = await readInterfaceSnapshot(ipRunner, pod, 'eth0');
  assert.ok(before.addresses.some((a) => a.local === `${ula}::5`) && before.routes.some((r) => r.dst === '::/0'), JSON.stringify(before));

  const state = await tap.wire(ctx, await tap.plan(ctx, before));
  assert.equal(state.ipv6?.bridgeLinkLocal, linkLocalFromMac(state.bridge.mac));
  assert.equal(await forwarding(), '1');
  const [bridge] = await ipJson(pod, 'address', 'show', 'dev', state.bridge.name);
  assert.ok(bridge!.addr_info.some((a: { local: string }) => a.local === state.ipv6!.bridgeLinkLocal), 'the bridge has its link-local address');
  const routes = await ip(pod, '-6', 'route', 'show', 'dev', state.bridge.name);
  assert.match(routes, new RegExp(`^${ula}::/64 `, 'm'));
  assert.match(routes, new RegExp(`^default via ${ula}::1 `, 'm'));
  assert.deepEqual((await readInterfaceSnapshot(ipRunner, pod, 'eth0')).addresses, [], 'the veth keeps no address of either family');

  await tap.unwire(ctx, state);
  const after = await readInterfaceSnapshot(ipRunner, pod, 'eth0');
  assert.deepEqual(after.addresses, before.addresses, 'addresses of both families back');
  assert.deepEqual(after.routes, before.routes, 'the IPv6 default route back');
  assert.deepEqual(after.link, before.link);
  assert.equal(await forwarding(), '0', 'forwarding set back');
});
