import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FailedPreconditionError } from '../../../../src/errors.js';
import { HOST_NETNS, type IpCommand } from '../../../../src/network/iproute.js';
import { bindInterface } from '../../../../src/network/bindings/binding.js';
import { SriovBinding, parseVfSettings } from '../../../../src/network/bindings/sriov.js';
import { NodeSysfs, type Sysfs } from '../../../../src/network/bindings/sysfs.js';
import type { BindingContext, SriovWiredInterface } from '../../../../src/network/bindings/types.js';
import { FakeIpRunner } from '../fakes.js';

const VF = '0000:3b:02.1';
const PF = '0000:3b:00.0';
const NETNS = 'vmlet-5d2c0000';

/**
 * A fake sysfs tree (temp dir) shaped like the kernel's, and a "kernel" in front of it: writing
 * bind/unbind moves the driver link and the VF's netdev, as the real one does. Every write and
 * every ip call lands in one log, so the test sees the exact order of what the binding does.
 */
function world(t: { after: (fn: () => void) => void }, options: { sharedGroup?: boolean; noVfio?: boolean; unknownPf?: boolean } = {}) {
  const root = mkdtempSync(join(tmpdir(), 'vmlet-sriov-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const dev = (a: string, ...rest: string[]) => join(root, 'bus', 'pci', 'devices', a, ...rest);
  for (const d of ['iavf', 'ice', ...(options.noVfio ? [] : ['vfio-pci'])]) mkdirSync(join(root, 'bus', 'pci', 'drivers', d), { recursive: true });
  mkdirSync(dev(PF, 'net', 'ens1f0'), { recursive: true });
  mkdirSync(dev(VF), { recursive: true });
  mkdirSync(join(root, 'kernel', 'iommu_groups', '61', 'devices'), { recursive: true });
  symlinkSync(`../${PF}`, dev(VF, 'physfn'));
  symlinkSync(`../0000:3b:02.0`, dev(PF, 'virtfn0'));
  if (!options.unknownPf) symlinkSync(`../${VF}`, dev(PF, 'virtfn1'));
  symlinkSync('../../drivers/iavf', dev(VF, 'driver'));
  writeFileSync(dev(VF, 'driver_override'), '(null)\n');
  symlinkSync('../../../../kernel/iommu_groups/61', dev(VF, 'iommu_group'));
  symlinkSync(`../../../../bus/pci/devices/${VF}`, join(root, 'kernel', 'iommu_groups', '61', 'devices', VF));
  if (options.sharedGroup) symlinkSync(`../../../../bus/pci/devices/0000:3b:02.2`, join(root, 'kernel', 'iommu_groups', '61', 'devices', '0000:3b:02.2'));

  const log: string[] = [];
  /** The netdev's state: in the pod netns (as CNI left it), gone (no driver), or back in the host namespace. */
  const netdev = { where: 'pod' as 'pod' | 'gone' | 'host', name: 'net1', mac: '02:5d:2c:00:01:01', mtu: 9000, up: true };
  let vfinfo = { vf: 1, address: '02:5d:2c:00:01:01', vlan_list: [{ vlan: 171, qos: 0, protocol: '802.1Q' }], spoofchk: false, trust: false };

  const real = new NodeSysfs(root);
  const kernel: Sysfs = {
    root,
    linkTarget: (p) => real.linkTarget(p),
    list: (p) => real.list(p),
    exists: (p) => real.exists(p),
    read: (p) => real.read(p),
    async write(p, value, mode) {
      log.push(`write ${p} ${JSON.stringify(value)}`);
      const m = /^bus\/pci\/drivers\/([^/]+)\/(bind|unbind)$/.exec(p);
      if (!m) {
        writeFileSync(join(root, p), `${value}\n`);
        return;
      }
      assert.equal(mode, 'action');
      assert.equal(value, VF);
      const [, driver, op] = m;
      const current = await real.linkTarget(`bus/pci/devices/${VF}/driver`);
      if (op === 'unbind') {
        assert.equal(current, driver, `unbind from ${driver} while bound to ${current}`);
        unlinkSync(dev(VF, 'driver'));
        if (driver !== 'vfio-pci') netdev.where = 'gone';
      } else {
        assert.equal(current, undefined, `bind to ${driver} while bound to ${current}`);
        const override = readFileSync(dev(VF, 'driver_override'), 'utf8').trim();
        if (override !== '' && override !== '(null)' && override !== driver) throw new Error(`driver_override ${override} refuses ${driver}`);
        symlinkSync(`../../drivers/${driver}`, dev(VF, 'driver'));
        if (driver === 'iavf') {
          // The driver registers a netdev in the host namespace, named by the kernel, with the PF's admin MAC.
          netdev.where = 'host';
          netdev.name = 'eth7';
          netdev.mac = vfinfo.address;
          netdev.mtu = 1500;
          netdev.up = false;
          mkdirSync(dev(VF, 'net', 'eth7'), { recursive: true });
        }
      }
    },
  };

  const ip = new FakeIpRunner();
  ip.onShow = (cmds, netns) => {
    log.push(`show ${netns} ${cmds.map((c) => c.join(' ')).join('; ')}`);
    if (netns === HOST_NETNS) return [[{ ifname: 'ens1f0', vfinfo_list: [{ vf: 0, address: '00:00:00:00:00:00' }, vfinfo] }]];
    const links = netdev.where === 'pod' ? [{ ifname: netdev.name, ifindex: 5, mtu: netdev.mtu, flags: netdev.up ? ['UP'] : [], link_type: 'ether', address: netdev.mac, parentbus: 'pci', parentdev: VF }] : [];
    if (cmds[0]![0] === 'link') return [links];
    if (netdev.where !== 'pod') throw new Error('no such device');
    return [
      [{ ifname: 'net1', addr_info: [{ family: 'inet', local: '198.18.171.20', prefixlen: 24, scope: 'global' }] }],
      [{ dst: '198.18.172.0/24', gateway: '198.18.171.254', protocol: 'static', flags: [] }],
      [],
      links,
    ];
  };
  ip.onApply = (cmds, netns) => {
    for (const c of cmds) {
      log.push(`ip ${netns} ${c.join(' ')}`);
      if (c.includes('vf')) {
        const at = (k: string) => c[c.indexOf(k) + 1]!;
        vfinfo = { ...vfinfo, address: at('mac'), vlan_list: [{ vlan: Number(at('vlan')), qos: c.includes('qos') ? Number(at('qos')) : 0, protocol: '802.1Q' }], spoofchk: at('spoofchk') === 'on', trust: at('trust') === 'on' };
      } else if (c[3] === 'eth7' && c.includes('netns')) {
        assert.equal(netdev.where, 'host');
        netdev.where = 'pod';
        netdev.name = at(c, 'name');
      } else if (netns === NETNS && c[0] === 'link' && c[1] === 'set') {
        if (c.includes('address')) netdev.mac = at(c, 'address');
        if (c.includes('mtu')) netdev.mtu = Number(at(c, 'mtu'));
        if (c.includes('up')) netdev.up = true;
        if (c.includes('down')) netdev.up = false;
      }
    }
  };
  return { root, kernel, ip, log, netdev, vfinfo: () => vfinfo, dev };
}

function at(c: IpCommand, key: string): string {
  return c[c.indexOf(key) + 1]!;
}

function ctx(): BindingContext {
  return {
    netnsName: NETNS,
    netnsPath: `/run/netns/${NETNS}`,
    sandboxId: '5d2c0000',
    index: 1,
    cniInterface: { name: 'net1', mac: '02:5d:2c:00:01:01', ips: [{ family: 4, address: '198.18.171.20', prefixLength: 24 }], routes: [] },
  };
}

test('wire: PF settings, driver_override, unbind, bind to vfio-pci, in that order; unwire puts every file and link back', async (t) => {
  const w = world(t);
  const binding = new SriovBinding({ ip: w.ip, sysfs: w.kernel, netdevWaitMs: 2000 });
  const persisted: SriovWiredInterface[] = [];
  const state = await bindInterface(binding, ctx(), async (s) => void persisted.push(structuredClone(s)));
  assert.equal(persisted.length, 1, 'the plan is persisted before anything changes');
  assert.deepEqual(state.vm.binding, { kind: 'sriov', pciAddress: VF });
  assert.equal(state.vm.mac, '02:5d:2c:00:01:01');
  assert.deepEqual(state.vf, { pciAddress: VF, pfAddress: PF, pf: 'ens1f0', index: 1, driver: 'iavf', iommuGroup: '61' });
  assert.deepEqual(state.pfBefore, { mac: '02:5d:2c:00:01:01', vlan: 171, qos: 0, spoofchk: false, trust: false });
  assert.equal(w.netdev.where, 'gone', 'the netdev left the pod netns with its driver');
  assert.equal(await w.kernel.linkTarget(`bus/pci/devices/${VF}/driver`), 'vfio-pci');
  assert.deepEqual(w.log.filter((l) => !l.startsWith('show')), [
    `ip ${HOST_NETNS} link set dev ens1f0 vf 1 mac 02:5d:2c:00:01:01 vlan 171 qos 0 spoofchk on trust off`,
    `write bus/pci/devices/${VF}/driver_override "vfio-pci"`,
    `write bus/pci/drivers/iavf/unbind "${VF}"`,
    `write bus/pci/drivers/vfio-pci/bind "${VF}"`,
  ]);

  w.log.length = 0;
  await binding.unwire(ctx(), state);
  assert.deepEqual(w.log.filter((l) => !l.startsWith('show')), [
    `write bus/pci/drivers/vfio-pci/unbind "${VF}"`,
    `write bus/pci/devices/${VF}/driver_override ""`,
    `ip ${HOST_NETNS} link set dev ens1f0 vf 1 mac 02:5d:2c:00:01:01 vlan 171 qos 0 spoofchk off trust off`,
    `write bus/pci/drivers/iavf/bind "${VF}"`,
    `ip ${HOST_NETNS} link set dev eth7 netns ${NETNS} name net1`,
    `ip ${NETNS} link set dev net1 address 02:5d:2c:00:01:01 mtu 9000`,
    `ip ${NETNS} link set dev net1 up`,
    `ip ${NETNS} address replace 198.18.171.20/24 scope global dev net1`,
    `ip ${NETNS} route replace 198.18.172.0/24 via 198.18.171.254 dev net1 table main proto static`,
  ]);
  assert.equal(await w.kernel.linkTarget(`bus/pci/devices/${VF}/driver`), 'iavf');
  assert.equal(readFileSync(w.dev(VF, 'driver_override'), 'utf8'), '\n');
  assert.deepEqual({ ...w.netdev }, { where: 'pod', name: 'net1', mac: '02:5d:2c:00:01:01', mtu: 9000, up: true });
  assert.deepEqual(w.vfinfo(), { vf: 1, address: '02:5d:2c:00:01:01', vlan_list: [{ vlan: 171, qos: 0, protocol: '802.1Q' }], spoofchk: false, trust: false });

  // Idempotent: again changes no driver and moves no link, only re-asserts the same values.
  w.log.length = 0;
  await binding.unwire(ctx(), state);
  assert.ok(!w.log.some((l) => l.startsWith('write') || l.includes(' netns ')), w.log.join('\n'));
});

test('unwire after a crash between bind and record (only the plan on disk) takes the VF back', async (t) => {
  const w = world(t);
  const binding = new SriovBinding({ ip: w.ip, sysfs: w.kernel, netdevWaitMs: 2000 });
  const planned = await binding.plan(ctx());
  await binding.wire(ctx(), planned);
  // A new netd has nothing but the persisted plan.
  const fromDisk = JSON.parse(JSON.stringify(planned)) as SriovWiredInterface;
  await new SriovBinding({ ip: w.ip, sysfs: w.kernel, netdevWaitMs: 2000 }).unwire(ctx(), fromDisk);
  assert.equal(await w.kernel.linkTarget(`bus/pci/devices/${VF}/driver`), 'iavf');
  assert.equal(w.netdev.where, 'pod');
  assert.equal(w.netdev.name, 'net1');
});

test('a failing bind undoes its own work and answers FAILED_PRECONDITION naming the VF', async (t) => {
  const w = world(t);
  const binding = new SriovBinding({ ip: w.ip, sysfs: w.kernel, netdevWaitMs: 2000 });
  const planned = await binding.plan(ctx());
  const write = w.kernel.write.bind(w.kernel);
  w.kernel.write = async (p, v, m) => {
    if (p === 'bus/pci/drivers/vfio-pci/bind') throw Object.assign(new Error('No such device'), { code: 'ENODEV' });
    return write(p, v, m);
  };
  await assert.rejects(binding.wire(ctx(), planned), (err: unknown) => err instanceof FailedPreconditionError && err.message.includes(VF) && err.message.includes('No such device'));
  assert.equal(await w.kernel.linkTarget(`bus/pci/devices/${VF}/driver`), 'iavf');
  assert.equal(readFileSync(w.dev(VF, 'driver_override'), 'utf8'), '\n');
  assert.deepEqual({ ...w.netdev }, { where: 'pod', name: 'net1', mac: '02:5d:2c:00:01:01', mtu: 9000, up: true });
});

test('refused with FAILED_PRECONDITION naming the VF: shared IOMMU group, no vfio-pci, unknown PF', async (t) => {
  const cases: [Parameters<typeof world>[1], RegExp][] = [
    [{ sharedGroup: true }, /IOMMU group 61 is shared with other host devices \(0000:3b:02\.2\)/],
    [{ noVfio: true }, /vfio-pci driver is not loaded/],
    [{ unknownPf: true }, /PF 0000:3b:00\.0 is unknown/],
  ];
  for (const [options, reason] of cases) {
    const w = world(t, options);
    const binding = new SriovBinding({ ip: w.ip, sysfs: w.kernel });
    await assert.rejects(binding.plan(ctx()), (err: unknown) => err instanceof FailedPreconditionError && err.message.includes(`SR-IOV VF ${VF} (net1)`) && reason.test(err.message));
    assert.ok(!w.log.some((l) => l.startsWith('write') || l.startsWith('ip')), 'nothing changed');
  }
});

test('parseVfSettings reads both vfinfo layouts and refuses a VF the PF does not list', () => {
  assert.deepEqual(parseVfSettings([{ vfinfo_list: [{ vf: 2, mac: 'AA:BB:CC:00:00:01', vlan: 5, qos: 3 }] }], 'p', 2), { mac: 'aa:bb:cc:00:00:01', vlan: 5, qos: 3 });
  assert.throws(() => parseVfSettings([{ vfinfo_list: [] }], 'p', 2), /PF p reports no VF 2/);
});
