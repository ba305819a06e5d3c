/**
 * The floor against real namespaces and Debian's CNI plugins (root only): one setup gives the
 * namespace an address from the bench range, one teardown leaves nothing behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CniFloor } from '../../sandbox/floor.js';
import { benchConflist, deleteLink, linkExists, listNetns } from '../../lib/network.js';
import { parseConfigList } from '../../../src/network/cni/config.js';
import { ExecPluginRunner } from '../../../src/network/cni/exec.js';

const isRoot = process.getuid?.() === 0;
const pluginsDir = '/usr/lib/cni';

test('floor setup and teardown: netns + bridge/host-local ADD, then DEL + netns delete', { skip: !isRoot || !existsSync(join(pluginsDir, 'bridge')) }, async (t) => {
  const tag = randomBytes(3).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-bench-floor-'));
  const bridge = `vbench${tag}`;
  const netns = `vbfloor-${tag}-t0`;
  const ipam = join(dir, 'ipam');
  const floor = new CniFloor(
    (() => {
      const p = parseConfigList(benchConflist({ networkName: `vmlet-bench-${tag}`, bridge, subnet: '198.19.250.0/24', ipamDataDir: ipam }));
      assert.ok(p.ok);
      return p.config;
    })(),
    new ExecPluginRunner({ binDirs: [pluginsDir] }),
  );
  t.after(async () => {
    for (const ns of floor.live) execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
    await deleteLink(bridge);
    rmSync(dir, { recursive: true, force: true });
  });
  const pod = { namespace: 'vmlet-bench', name: 'floor-test', uid: 'uid-1', infraContainerId: `vbfloor${tag}t0` };
  const { attachment, timing } = await floor.setup(pod.infraContainerId, netns, pod);
  assert.ok((await listNetns()).includes(netns));
  const addrs = JSON.parse(execFileSync('ip', ['-n', netns, '-j', '-4', 'addr', 'show', 'dev', 'eth0'], { encoding: 'utf8' })) as { addr_info: { local: string }[] }[];
  assert.match(addrs[0]!.addr_info[0]!.local, /^198\.19\.250\.\d+$/);
  assert.equal(timing.pluginMs.length, 1);
  assert.ok(timing.totalMs >= timing.netnsAddMs + timing.pluginMs[0]!);
  const leases = () => readdirSync(join(ipam, `vmlet-bench-${tag}`)).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
  assert.equal(leases().length, 1);

  const down = await floor.teardown(attachment);
  assert.ok(down.totalMs >= down.netnsDeleteMs);
  assert.equal((await listNetns()).includes(netns), false);
  assert.equal(floor.live.size, 0);
  assert.equal(leases().length, 0, 'DEL released the host-local lease');
  assert.ok(await linkExists(bridge), 'the bridge plugin leaves its bridge; the bench deletes it');
});
