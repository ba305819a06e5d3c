import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, existsSync } from 'node:fs';
import { NetnsManager, netnsPath } from '../../../src/network/netns.js';
import { AlreadyExistsError, InvalidArgumentError } from '../../../src/errors.js';
import { bindDhcpSocketInNetns } from '../../../src/network/dhcp/bind_in_netns.js';
import { TEST_NETNS_PREFIX, ipJson, testIds } from './helpers.js';

test('netns: create with lo up, list, refuse a second create, delete idempotently', async (t) => {
  const manager = new NetnsManager();
  const name = `${TEST_NETNS_PREFIX}${testIds().tag}`;
  t.after(async () => {
    await manager.delete(name);
    assert.equal(existsSync(netnsPath(name)), false);
  });

  assert.equal(await manager.exists(name), false);
  const started = performance.now();
  const path = await manager.create(name);
  const createMs = performance.now() - started;
  assert.equal(path, `/run/netns/${name}`);
  assert.equal(await manager.exists(name), true);
  assert.ok((await manager.list()).includes(name));

  const links = await ipJson(name, 'link', 'show');
  assert.deepEqual(links.map((l) => l.ifname), ['lo'], 'a fresh namespace, not the host one');
  assert.ok(links[0]!.flags.includes('UP'), 'lo is up');

  await assert.rejects(manager.create(name), AlreadyExistsError);
  assert.equal(await manager.exists(name), true, 'a refused create leaves the namespace alone');

  const deleteStarted = performance.now();
  await manager.delete(name);
  const deleteMs = performance.now() - deleteStarted;
  assert.equal(await manager.exists(name), false);
  assert.ok(!(await manager.list()).includes(name));
  await manager.delete(name);
  t.diagnostic(`create ${createMs.toFixed(1)} ms, delete ${deleteMs.toFixed(1)} ms`);
});

test('netns: a leftover empty file from a crashed create is replaced', async (t) => {
  const manager = new NetnsManager();
  const name = `${TEST_NETNS_PREFIX}${testIds().tag}`;
  t.after(() => manager.delete(name));
  writeFileSync(netnsPath(name), '');
  assert.equal(await manager.exists(name), false, 'an empty file is not a namespace');
  await manager.create(name);
  assert.equal(await manager.exists(name), true);
  assert.ok((await ipJson(name, 'link', 'show', 'dev', 'lo'))[0]!.flags.includes('UP'));
});

test('netns: names outside the vmlet scheme are refused before touching anything', async () => {
  const manager = new NetnsManager();
  for (const bad of ['cni-1234', 'vmlet-../../etc', 'vmlet-a b', 'vmlet-']) {
    await assert.rejects(manager.create(bad), InvalidArgumentError, bad);
    await assert.rejects(manager.delete(bad), InvalidArgumentError, bad);
  }
});

test('netns: delete while a socket still lives in the namespace detaches it; the name is free again at once', async (t) => {
  const manager = new NetnsManager();
  const name = `${TEST_NETNS_PREFIX}${testIds().tag}`;
  t.after(() => manager.delete(name));
  const path = await manager.create(name);
  // A DHCP server socket made inside the namespace holds it, as a running QEMU would.
  const socket = await bindDhcpSocketInNetns(path, { port: 6767 });
  try {
    await manager.delete(name);
    assert.equal(existsSync(path), false);
    assert.equal(await manager.exists(name), false);
    // The detached namespace still works: a datagram to itself over that namespace's loopback arrives.
    const received = new Promise<string>((resolve) => socket.once('message', (msg) => resolve(msg.toString())));
    socket.send('still here', 6767, '127.0.0.1');
    assert.equal(await received, 'still here');
    await manager.create(name);
    assert.deepEqual((await ipJson(name, 'link', 'show')).map((l) => l.ifname), ['lo'], 'a new, empty namespace under the same name');
  } finally {
    socket.close();
  }
});
