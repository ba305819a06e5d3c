/**
 * vmlet's DHCP server against real clients over a real bridge: the server socket is bound inside
 * a sandbox netns by bindDhcpSocketInNetns, the client lives in its own netns behind a veth.
 * Needs root (namespaces) and /bin/busybox (busybox-static) for udhcpc.
 */
import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import type dgram from 'node:dgram';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { bindDhcpSocketInNetns } from '../../../../src/network/dhcp/bind_in_netns.js';
import type { DhcpLease } from '../../../../src/network/dhcp/lease_policy.js';
import {
  decodeMessage,
  encodeMessage,
  MessageType,
  OptionCode,
  readMessageType,
  type DhcpMessage,
} from '../../../../src/network/dhcp/packet.js';
import { DhcpServer, type DhcpServerStats } from '../../../../src/network/dhcp/server.js';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../../../../src/errors.js';
import { pino, type Logger } from 'pino';
import { createTopology, leftovers, run, strayChildren, type Topology } from './topology.js';

const VM_MAC = '02:00:c6:12:03:07';
const OTHER_MAC = '02:00:c6:12:03:99';
const skip = process.getuid?.() !== 0 ? 'needs root for network namespaces' : !existsSync('/bin/busybox') ? 'needs /bin/busybox' : false;

function podLease(): DhcpLease {
  return {
    mac: VM_MAC,
    ip: '198.18.3.7',
    prefixLength: 24,
    gateway: '198.18.3.1',
    routes: [
      { destination: '0.0.0.0/0', gateway: '198.18.3.1' },
      { destination: '198.19.0.0/16', gateway: '198.18.3.254' },
    ],
    dns: {
      nameservers: ['198.18.0.10', '198.18.0.11'],
      search: ['default.svc.cluster.local', 'svc.cluster.local', 'cluster.local'],
      options: ['ndots:5'],
      domain: 'cluster.local',
    },
    hostname: 'pod-a',
    mtu: 1450,
    leaseSeconds: 3600,
    serverId: '198.18.3.1',
  };
}

interface Harness {
  topology: Topology;
  server: DhcpServer;
  children: Set<ChildProcess>;
  workDir: string;
}

/** Namespaces, a server bound in the sandbox, and cleanup registered before anything can fail. */
async function setUp(t: TestContext, clientMac: string, logger?: Logger): Promise<Harness> {
  const children = new Set<ChildProcess>();
  const workDir = mkdtempSync(join(tmpdir(), 'vt-dhcp-'));
  t.after(() => {
    for (const child of children) child.kill('SIGKILL');
    rmSync(workDir, { recursive: true, force: true });
  });
  const topology = await createTopology(clientMac);
  t.after(() => topology.destroy());
  const server = new DhcpServer(await bindDhcpSocketInNetns(topology.sandboxNetnsPath), { logger });
  t.after(() => server.close());
  return { topology, server, children, workDir };
}

/** Destroys the namespaces now and checks nothing of this test is left on the host. */
async function tearDownAndCheck(harness: Harness): Promise<void> {
  await harness.server.close();
  await harness.topology.destroy();
  assert.deepEqual(await leftovers(harness.topology.tag), []);
  assert.deepEqual(strayChildren(), []);
}

/**
 * Runs busybox udhcpc once in the client netns with a script that dumps the environment udhcpc
 * gives it per event; returns the exit code and the variables of the "bound" event, if any.
 */
async function runUdhcpc(harness: Harness, tries: number): Promise<{ code: number | null; bound?: Map<string, string>; stderr: string }> {
  const script = join(harness.workDir, 'dump-env.sh');
  const eventDir = mkdtempSync(join(harness.workDir, 'events-'));
  writeFileSync(script, `#!/bin/busybox sh\n/bin/busybox env > "${eventDir}/$1.env"\n`);
  chmodSync(script, 0o755);
  const result = await run(
    'ip',
    ['netns', 'exec', harness.topology.clientNs, '/bin/busybox', 'udhcpc', '-f', '-q', '-n', '-t', String(tries), '-T', '1',
      '-i', harness.topology.clientIf, '-s', script],
    // A bare environment, so the dump holds udhcpc's variables and little else.
    { timeoutMs: 20_000, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }, track: harness.children },
  );
  const boundFile = join(eventDir, 'bound.env');
  if (!existsSync(boundFile)) return { code: result.code, stderr: result.stderr };
  const bound = new Map<string, string>();
  for (const line of readFileSync(boundFile, 'utf8').split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) bound.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return { code: result.code, bound, stderr: result.stderr };
}

/** udhcpc's variables with the shell's own bookkeeping (PATH, PWD, SHLVL) taken out. */
function leaseVariables(env: Map<string, string>): Record<string, string> {
  const shell = new Set(['PATH', 'PWD', 'SHLVL', '_', 'OLDPWD', 'HOME']);
  return Object.fromEntries([...env].filter(([key]) => !shell.has(key)).sort(([a], [b]) => a.localeCompare(b)));
}

test('udhcpc on the VM MAC gets the pod address, mask, routes, DNS, search, hostname and MTU', { skip, timeout: 60_000 }, async (t) => {
  const harness = await setUp(t, VM_MAC);
  harness.server.setLease(podLease());

  const result = await runUdhcpc(harness, 3);
  assert.equal(result.code, 0, result.stderr);
  assert.ok(result.bound, `no bound event; udhcpc said: ${result.stderr}`);
  assert.deepEqual(leaseVariables(result.bound), {
    broadcast: '198.18.3.255',
    dns: '198.18.0.10 198.18.0.11',
    domain: 'cluster.local',
    hostname: 'pod-a',
    interface: harness.topology.clientIf,
    ip: '198.18.3.7',
    lease: '3600',
    mask: '24',
    mtu: '1450',
    opt53: '05', // ACK
    opt58: '00000708', // T1 1800 s
    opt59: '00000c4e', // T2 3150 s
    opt61: `01${VM_MAC.replaceAll(':', '')}`, // client id echoed (RFC 6842)
    router: '198.18.3.1',
    search: 'default.svc.cluster.local svc.cluster.local cluster.local',
    serverid: '198.18.3.1',
    staticroutes: '0.0.0.0/0 198.18.3.1 198.19.0.0/16 198.18.3.254',
    subnet: '255.255.255.0',
  });
  assert.deepEqual(harness.server.stats(), {
    offers: 1, acks: 1, naks: 0, ignored: 0, malformed: 0, releases: 0, declines: 0, sendErrors: 0,
  });
  await tearDownAndCheck(harness);
});

test('a second MAC gets no answer, and leases added or removed at runtime take effect', { skip, timeout: 60_000 }, async (t) => {
  const harness = await setUp(t, OTHER_MAC);
  harness.server.setLease(podLease());

  const stranger = await runUdhcpc(harness, 2);
  assert.equal(stranger.code, 1, `udhcpc should give up; it said: ${stranger.stderr}`);
  assert.equal(stranger.bound, undefined);
  const afterStranger = harness.server.stats();
  assert.equal(afterStranger.offers, 0);
  assert.ok(afterStranger.ignored >= 2, `ignored ${afterStranger.ignored} discovers`);

  harness.server.setLease({ ...podLease(), mac: OTHER_MAC, ip: '198.18.3.8', hostname: 'pod-b' });
  const added = await runUdhcpc(harness, 3);
  assert.equal(added.code, 0, added.stderr);
  assert.equal(added.bound?.get('ip'), '198.18.3.8');
  assert.equal(added.bound?.get('hostname'), 'pod-b');

  assert.equal(harness.server.removeLease(OTHER_MAC), true);
  const removed = await runUdhcpc(harness, 2);
  assert.equal(removed.code, 1, removed.stderr);
  assert.equal(removed.bound, undefined);
  await tearDownAndCheck(harness);
});

/** A client socket bound to :68 in the client netns, speaking DHCP by hand. */
async function rawClient(t: TestContext, harness: Harness): Promise<{ socket: dgram.Socket; replies: DhcpMessage[] }> {
  await harness.topology.addClientBroadcastRoute();
  const socket = await bindDhcpSocketInNetns(harness.topology.clientNetnsPath, { port: 68 });
  t.after(() => closeSocket(socket));
  const replies: DhcpMessage[] = [];
  socket.on('message', (datagram) => replies.push(decodeMessage(datagram)));
  return { socket, replies };
}

/** Closes a socket that may already be closed (the test closes early, the after hook again). */
function closeSocket(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve();
    }
  });
}

function clientMessage(type: number, xid: number, fields: { ciaddr?: string; requestedIp?: string; mac?: string } = {}): Buffer {
  const options = new Map<number, Buffer>([[OptionCode.MESSAGE_TYPE, Buffer.from([type])]]);
  if (fields.requestedIp) options.set(OptionCode.REQUESTED_IP, Buffer.from(fields.requestedIp.split('.').map(Number)));
  return encodeMessage({
    op: 1, htype: 1, hlen: 6, hops: 0, xid, secs: 0, flags: 0,
    ciaddr: fields.ciaddr ?? '0.0.0.0', yiaddr: '0.0.0.0', siaddr: '0.0.0.0', giaddr: '0.0.0.0',
    chaddr: Buffer.from((fields.mac ?? VM_MAC).replaceAll(':', ''), 'hex'), sname: '', file: '',
    options,
  });
}

function send(socket: dgram.Socket, datagram: Buffer): Promise<void> {
  return new Promise((resolve, reject) => socket.send(datagram, 67, '255.255.255.255', (err) => (err ? reject(err) : resolve())));
}

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await delay(20);
  }
}

function statsReach(server: DhcpServer, key: keyof DhcpServerStats, count: number): () => true | undefined {
  return () => (server.stats()[key] >= count ? true : undefined);
}

test('over the real link: NAK for a wrong INIT-REBOOT, ACK to a rebinding client, silence for junk', { skip, timeout: 60_000 }, async (t) => {
  const logLines: Array<{ msg: string; address?: string; code?: string }> = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(JSON.parse(line)) });
  const harness = await setUp(t, VM_MAC, logger);
  harness.server.setLease(podLease());
  const { socket, replies } = await rawClient(t, harness);

  await send(socket, clientMessage(MessageType.REQUEST, 0x1001, { requestedIp: '198.18.3.99' }));
  const nak = await until('the NAK', () => replies.find((reply) => reply.xid === 0x1001));
  assert.equal(readMessageType(nak), MessageType.NAK);
  assert.equal(nak.yiaddr, '0.0.0.0');
  await until('the NAK count', statsReach(harness.server, 'naks', 1));

  // ciaddr set: RFC 2131 wants unicast to ciaddr, which the sandbox netns has no route to; the
  // server falls back to broadcast and the client still gets its ACK.
  await send(socket, clientMessage(MessageType.REQUEST, 0x1002, { ciaddr: '198.18.3.7' }));
  const ack = await until('the ACK', () => replies.find((reply) => reply.xid === 0x1002));
  assert.equal(readMessageType(ack), MessageType.ACK);
  assert.equal(ack.yiaddr, '198.18.3.7');
  assert.equal(ack.ciaddr, '198.18.3.7');
  await until('the ACK count', statsReach(harness.server, 'acks', 1));
  assert.deepEqual(
    logLines.filter((line) => line.msg === 'unicast reply unroutable; broadcasting it').map(({ address, code }) => ({ address, code })),
    [{ address: '198.18.3.7', code: 'ENETUNREACH' }],
  );

  await send(socket, Buffer.from('definitely not DHCP'));
  await send(socket, clientMessage(MessageType.DISCOVER, 0x1003, { mac: OTHER_MAC }));
  await send(socket, clientMessage(MessageType.RELEASE, 0x1004, { ciaddr: '198.18.3.7' }));
  await until('the malformed count', statsReach(harness.server, 'malformed', 1));
  await until('the ignored count', statsReach(harness.server, 'ignored', 1));
  await until('the release count', statsReach(harness.server, 'releases', 1));
  await delay(200); // room for a wrong reply to arrive
  assert.deepEqual(replies.map((reply) => reply.xid), [0x1001, 0x1002]);
  assert.deepEqual(harness.server.stats(), {
    offers: 0, acks: 1, naks: 1, ignored: 1, malformed: 1, releases: 1, declines: 0, sendErrors: 0,
  });
  await closeSocket(socket);
  await tearDownAndCheck(harness);
});

test('bindDhcpSocketInNetns: the port is exclusive, a missing netns is NotFound, no process is left', { skip, timeout: 60_000 }, async (t) => {
  const harness = await setUp(t, VM_MAC); // the server already holds :67 in the sandbox netns
  await assert.rejects(bindDhcpSocketInNetns(harness.topology.sandboxNetnsPath), (err: unknown) => {
    assert.ok(err instanceof FailedPreconditionError, String(err));
    assert.match(err.message, /EADDRINUSE/);
    return true;
  });
  await assert.rejects(bindDhcpSocketInNetns(`/run/netns/vt-${harness.topology.tag}-absent`), NotFoundError);
  assert.deepEqual(strayChildren(), []);

  // After the server closes, the port is free again in that namespace.
  await harness.server.close();
  const again = await bindDhcpSocketInNetns(harness.topology.sandboxNetnsPath);
  assert.equal(again.address().port, 67);
  await closeSocket(again);
  await tearDownAndCheck(harness);
});

test('DhcpServer: needs a bound socket, validates and normalises leases, closes idempotently', async () => {
  const { createSocket } = await import('node:dgram');
  const unbound = createSocket('udp4');
  assert.throws(() => new DhcpServer(unbound), FailedPreconditionError);
  unbound.close();

  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  const server = new DhcpServer(socket);
  try {
    server.setLease({ ...podLease(), mac: '02-00-C6-12-03-07' });
    assert.equal(server.leaseFor(VM_MAC)?.ip, '198.18.3.7');
    assert.equal(server.leaseFor('02:00:C6:12:03:07')?.mac, VM_MAC);
    assert.throws(() => server.setLease({ ...podLease(), mac: OTHER_MAC, mtu: 10 }), InvalidArgumentError);
    assert.equal(server.leaseFor(OTHER_MAC), undefined, 'a rejected lease is not registered');
    assert.equal(server.removeLease(OTHER_MAC), false);
    assert.equal(server.removeLease('02:00:C6:12:03:07'), true);
    assert.equal(server.leaseFor(VM_MAC), undefined);
  } finally {
    await server.close();
  }
  await server.close();
  assert.throws(() => socket.address(), /Not running/, 'close() closed the socket it was given');
});
