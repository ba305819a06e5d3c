/**
 * A fake sysfs tree (a temp dir, for `--sysfs-root`) whose driver `bind`/`unbind` files are FIFOs
 * read by this process, which then does what the kernel would: moves the VF's `driver` link,
 * deletes the VF's netdev when its network driver lets go of it, and makes a new one in the host
 * namespace (under a kernel-style name) when that driver binds it again. It refuses (and records)
 * what the kernel would refuse: binding a VF that has a driver, binding against driver_override,
 * unbinding from a driver it is not bound to.
 *
 * Static parts made here: the drivers (`iavf`, `vfio-pci`) and the PF (`bus/pci/devices/PF/net/PFNAME`).
 * The VF's entries (device dir, physfn, virtfnN, driver, driver_override, iommu_group,
 * class/net/IF) are made by whoever plays the SR-IOV CNI plugin (test/fixtures/cni/plugins/sriov-vf,
 * or `addFakeVf` below), which also writes `vmlet-test/<VF>.json` ({ netns, ifname }): the pod netns
 * and the name the pod knows the VF's netdev by. A TAP stands in for the netdev (this kernel has
 * no dummy driver); TAPs have no rtnetlink parentdev, so the fake tree keeps the VF's
 * `class/net/<pod name>` entry (device link + ifindex) up to date instead.
 */
import { execFile, execFileSync } from 'node:child_process';
import { constants, existsSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const NET_DRIVER = 'iavf';
const DRIVERS = [NET_DRIVER, 'vfio-pci'];

export interface FakeSriovKernel {
  root: string;
  /** Every write to a bind/unbind file as `driver/file ADDR`, and `refused: …` for the ones the kernel would refuse. */
  events: string[];
  /** Host-namespace netdevs it made (to clean up after a failed test). */
  hostNetdevs: string[];
  close(): void;
}

interface VfWhere {
  /** Path of the pod netns CNI put the VF's netdev in; '' for none. */
  netns: string;
  ifname: string;
}

function ipIn(netns: string, args: string[]): Promise<{ stdout: string }> {
  return netns ? run('nsenter', [`--net=${netns}`, '--', 'ip', ...args]) : run('ip', args);
}

export function startFakeSriovKernel(root: string, pf: { address: string; name: string }, tag: string): FakeSriovKernel {
  const dev = (a: string, ...rest: string[]) => join(root, 'bus', 'pci', 'devices', a, ...rest);
  mkdirSync(dev(pf.address, 'net', pf.name), { recursive: true });
  mkdirSync(join(root, 'vmlet-test'), { recursive: true });
  const events: string[] = [];
  const hostNetdevs: string[] = [];
  const sockets: Socket[] = [];
  let queue = Promise.resolve();
  let made = 0;

  const driverOf = (a: string): string | undefined => {
    try {
      return basename(readlinkSync(dev(a, 'driver')));
    } catch {
      return undefined;
    }
  };
  const whereFile = (a: string) => join(root, 'vmlet-test', `${a}.json`);

  async function act(driver: string, op: string, address: string): Promise<void> {
    events.push(`${driver}/${op} ${address}`);
    const refuse = (why: string) => void events.push(`refused: ${driver}/${op} ${address}: ${why}`);
    if (!existsSync(dev(address))) return refuse('no such device');
    const where = JSON.parse(readFileSync(whereFile(address), 'utf8')) as VfWhere;
    if (op === 'unbind') {
      if (driverOf(address) !== driver) return refuse(`bound to ${driverOf(address) ?? 'none'}`);
      if (driver === NET_DRIVER) {
        // The driver takes its netdev with it: in the host namespace under its kernel name, or in
        // the pod netns under the pod's name (where CNI or netd put it).
        for (const name of readdirSync(dev(address, 'net'))) {
          // Only a host netdev this fake kernel made: the host may have its own of that name.
          if (hostNetdevs.includes(name)) await ipIn('', ['link', 'delete', 'dev', name]).catch(() => undefined);
          rmSync(dev(address, 'net', name), { recursive: true, force: true });
        }
        if (where.netns && existsSync(where.netns)) await ipIn(where.netns, ['link', 'delete', 'dev', where.ifname]).catch(() => undefined);
        rmSync(join(root, 'class', 'net', where.ifname), { recursive: true, force: true });
      }
      unlinkSync(dev(address, 'driver'));
      return;
    }
    if (driverOf(address) !== undefined) return refuse(`bound to ${driverOf(address)}`);
    const override = readFileSync(dev(address, 'driver_override'), 'utf8').trim();
    if (override !== '' && override !== '(null)' && override !== driver) return refuse(`driver_override is ${override}`);
    if (driver === NET_DRIVER) {
      // A new netdev in the host namespace, under a name of the kernel's choosing.
      const name = `vfk${tag}${made++}`;
      await run('ip', ['tuntap', 'add', 'dev', name, 'mode', 'tap']);
      hostNetdevs.push(name);
      const ifindex = JSON.parse((await run('ip', ['-j', 'link', 'show', 'dev', name])).stdout)[0].ifindex;
      mkdirSync(join(root, 'class', 'net', where.ifname), { recursive: true });
      rmSync(join(root, 'class', 'net', where.ifname, 'device'), { force: true });
      symlinkSync(`../../../bus/pci/devices/${address}`, join(root, 'class', 'net', where.ifname, 'device'));
      // Moving a link to another netns keeps its ifindex when it is free there (a pod netns has few).
      writeFileSync(join(root, 'class', 'net', where.ifname, 'ifindex'), `${ifindex}\n`);
      mkdirSync(dev(address, 'net', name), { recursive: true });
    }
    symlinkSync(`../../../bus/pci/drivers/${driver}`, dev(address, 'driver'));
  }

  for (const driver of DRIVERS) {
    mkdirSync(join(root, 'bus', 'pci', 'drivers', driver), { recursive: true });
    for (const op of ['bind', 'unbind']) {
      const path = join(root, 'bus', 'pci', 'drivers', driver, op);
      rmSync(path, { force: true });
      execFileSync('mkfifo', [path]); // node has no mkfifo
      // O_RDWR: the FIFO always has a writer, so it never reads EOF and never blocks a writer's open.
      const socket = new Socket({ fd: openSync(path, constants.O_RDWR | constants.O_NONBLOCK), readable: true, writable: false });
      let buffered = '';
      socket.on('data', (chunk) => {
        buffered += chunk.toString();
        const lines = buffered.split('\n');
        buffered = lines.pop()!;
        for (const line of lines) {
          if (!line) continue;
          queue = queue.then(() => act(driver, op, line.trim())).catch((err: Error) => void events.push(`error: ${driver}/${op} ${line}: ${err.message}`));
        }
      });
      sockets.push(socket);
    }
  }
  return {
    root,
    events,
    hostNetdevs,
    close() {
      for (const s of sockets) s.destroy();
    },
  };
}


/**
 * The VF's sysfs entries as the SR-IOV CNI plugin's VF looks (the same the sriov-vf test plugin
 * makes): a VF of `pf` as virtfn`index`, on the network driver, with its own IOMMU group.
 */
export function addFakeVf(root: string, vf: { address: string; pf: string; index: number; group: number; netns: string; ifname: string; ifindex: number }): void {
  const dev = (a: string, ...rest: string[]) => join(root, 'bus', 'pci', 'devices', a, ...rest);
  mkdirSync(dev(vf.address, 'net', vf.ifname), { recursive: true });
  symlinkSync(`../${vf.pf}`, dev(vf.address, 'physfn'));
  symlinkSync(`../${vf.address}`, dev(vf.pf, `virtfn${vf.index}`));
  symlinkSync(`../../../bus/pci/drivers/${NET_DRIVER}`, dev(vf.address, 'driver'));
  writeFileSync(dev(vf.address, 'driver_override'), '(null)\n');
  mkdirSync(join(root, 'kernel', 'iommu_groups', String(vf.group), 'devices'), { recursive: true });
  symlinkSync(`../../../../kernel/iommu_groups/${vf.group}`, dev(vf.address, 'iommu_group'));
  symlinkSync(`../../../../bus/pci/devices/${vf.address}`, join(root, 'kernel', 'iommu_groups', String(vf.group), 'devices', vf.address));
  mkdirSync(join(root, 'class', 'net', vf.ifname), { recursive: true });
  symlinkSync(`../../../bus/pci/devices/${vf.address}`, join(root, 'class', 'net', vf.ifname, 'device'));
  writeFileSync(join(root, 'class', 'net', vf.ifname, 'ifindex'), `${vf.ifindex}\n`);
  mkdirSync(join(root, 'vmlet-test'), { recursive: true });
  writeFileSync(join(root, 'vmlet-test', `${vf.address}.json`), JSON.stringify({ netns: vf.netns, ifname: vf.ifname }));
}
