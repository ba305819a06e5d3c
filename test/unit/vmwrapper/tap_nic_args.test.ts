import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../../../src/errors.js';
import { MAX_TAP_NICS, tapNicQemuArgs, type TapNic } from '../../../src/vmwrapper/tap_nic_args.js';

const nic0: TapNic = { tap: 'vtapabcdefghi00', mac: '52:54:00:12:34:56', mtu: 1500 };
const nic1: TapNic = { tap: 'vtapabcdefghi01', mac: '0a:58:c6:12:00:05', mtu: 9000 };

test('one -netdev/-device pair per NIC, in order, at fixed slots from 0x10', () => {
  assert.deepEqual(tapNicQemuArgs([nic0, nic1]), [
    '-netdev',
    'tap,id=vmletnet0,ifname=vtapabcdefghi00,script=no,downscript=no,vhost=off',
    '-device',
    'virtio-net-pci,id=vmletnic0,netdev=vmletnet0,mac=52:54:00:12:34:56,host_mtu=1500,bus=pcie.0,addr=0x10,romfile=',
    '-netdev',
    'tap,id=vmletnet1,ifname=vtapabcdefghi01,script=no,downscript=no,vhost=off',
    '-device',
    'virtio-net-pci,id=vmletnic1,netdev=vmletnet1,mac=0a:58:c6:12:00:05,host_mtu=9000,bus=pcie.0,addr=0x11,romfile=',
  ]);
});

test('no NICs, no arguments; vhost and the i440fx root bus on request', () => {
  assert.deepEqual(tapNicQemuArgs([]), []);
  const args = tapNicQemuArgs([nic0], { vhost: true, rootBus: 'pci.0' });
  assert.match(args[1]!, /,vhost=on$/);
  assert.match(args[3]!, /,bus=pci\.0,/);
});

test('the last allowed NIC sits in slot 0x17; one more is refused', () => {
  const nics = Array.from({ length: MAX_TAP_NICS }, (_, i): TapNic => ({ tap: `vtap${i}`, mac: `52:54:00:00:00:0${i}`, mtu: 1500 }));
  const args = tapNicQemuArgs(nics);
  assert.match(args.at(-1)!, /,addr=0x17,/);
  assert.throws(() => tapNicQemuArgs([...nics, { tap: 'vtap9', mac: '52:54:00:00:00:09', mtu: 1500 }]), InvalidArgumentError);
});

test('values that could change QEMU option syntax or are invalid are refused', () => {
  const bad: Partial<TapNic>[] = [
    { tap: 'vtap0,script=/x' },
    { tap: 'a'.repeat(16) },
    { tap: '' },
    { tap: '..' },
    { tap: 'v tap' },
    { mac: '52:54:00:12:34:5G' },
    { mac: '52:54:00:12:34:56,x=y' },
    { mac: '53:54:00:12:34:56' }, // multicast
    { mac: '52:54:00:AB:34:56' }, // not lower-case
    { mtu: 67 },
    { mtu: 65536 },
    { mtu: 1500.5 },
  ];
  for (const patch of bad) {
    assert.throws(() => tapNicQemuArgs([{ ...nic0, ...patch }]), InvalidArgumentError, JSON.stringify(patch));
  }
  assert.throws(() => tapNicQemuArgs([nic0, { ...nic1, tap: nic0.tap }]), InvalidArgumentError);
  assert.throws(() => tapNicQemuArgs([nic0, { ...nic1, mac: nic0.mac }]), InvalidArgumentError);
  assert.throws(() => tapNicQemuArgs([nic0], { rootBus: 'pcie.1' as 'pcie.0' }), InvalidArgumentError);
});
