/**
 * A warm VM becoming a container's VM: CreateContainer plugs the container's pieces into it
 * through its own QMP socket (plugWarm), StartContainer resumes it (resumeWarm).
 */
import { errorText } from '../../errors.js';
import { DomainAffect } from '../../libvirt/client.js';
import { schedulerParams } from '../../libvirt/scheduler_params.js';
import type { CpuTune, DataDisk } from '../../libvirt/domain_spec.js';
import type { VmAnnotations } from '../../guest/annotations.js';
import type { VmNetwork } from '../../network/types.js';
import type { QmpSession } from '../../qmp/socket.js';
import { domainOps, mustLookupDomain, type ContainerContext } from '../context.js';
import { warmQmpPath } from '../layout.js';
import type { ContainerRecord } from '../records.js';
import {
  addFdCommand,
  removeFdCommand,
  warmDataDiskCommands,
  warmNicCommands,
  warmPortsFor,
  warmRootDiskCommands,
  warmSeedCommand,
  type QmpCommand,
} from './hotplug_commands.js';
import { warmTapNics } from './fit.js';
import type { WarmVm } from './pool.js';

/** The container's pieces, each a promise that settles when that piece exists. */
export interface WarmPieces {
  cputune: CpuTune;
  diskDriver: VmAnnotations['diskDriver'];
  overlayPath: Promise<string>;
  network: Promise<VmNetwork>;
  seedPath: Promise<string>;
  /** Block devices, already given to QEMU's user (block_devices/grants.ts). */
  dataDisks: DataDisk[];
}

/**
 * Plugs the container's pieces into a warm VM as each becomes ready. Resolves false, plugging
 * no NIC, when the pod's interfaces cannot go to a warm VM (the caller then makes a cold one).
 */
export async function plugWarm(ctx: ContainerContext, vm: WarmVm, pieces: WarmPieces): Promise<boolean> {
  const qmp = ctx.qmp(vm.qmpPath);
  qmp.catch(() => {}); // observed by every run() and below
  const run = async (commands: QmpCommand[]): Promise<void> => {
    const socket = await qmp;
    for (const c of commands) await socket.execute(c.execute, c.arguments);
  };
  try {
    const root = pieces.overlayPath.then((path) => run(warmRootDiskCommands(path, pieces.diskDriver)));
    const nics = pieces.network.then(async (net) => {
      const taps = warmTapNics(net);
      if (!taps) return false;
      // Data disks take the root ports after the NICs'; a pod needing more gets a cold VM.
      if (warmPortsFor(taps.length) + pieces.dataDisks.length > vm.ports) return false;
      await run(warmNicCommands(taps, vm.ports));
      await plugDataDisks(ctx, await qmp, pieces.dataDisks, warmPortsFor(taps.length));
      return true;
    });
    const seed = pieces.seedPath.then((path) => run([warmSeedCommand(path)]));
    const tuned = Object.keys(pieces.cputune).length > 0 ? domainOps(ctx).setSchedulerParametersFlags(vm.dom, schedulerParams(pieces.cputune), DomainAffect.LIVE | DomainAffect.CONFIG) : undefined;
    // allSettled first: nothing may still be talking to QEMU once this returns.
    const results = await Promise.allSettled([root, nics, seed, tuned]);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    return (results[1] as PromiseFulfilledResult<boolean>).value;
  } finally {
    await qmp.then((socket) => socket.close(), () => undefined);
  }
}

/**
 * Each data disk through vmlet's QMP socket, disk i on free root port `firstPort + i`. QEMU could
 * not open a block device node by path: it sees only the private /dev libvirt made for it (qemu.conf
 * namespaces), and libvirt adds nodes there only for disks it attaches itself. So vmlet opens the
 * node and hands QEMU the fd (`add-fd`), and the disk reads /dev/fdset/N. QEMU never needs the
 * node, its /dev or a devices cgroup rule for it. Why not libvirt's attach-device: docs/warm-vms.md.
 * On failure QEMU may hold the disks plugged so far; the caller discards the whole warm VM.
 */
async function plugDataDisks(ctx: ContainerContext, qmp: QmpSession, disks: readonly DataDisk[], firstPort: number): Promise<void> {
  for (const [i, disk] of disks.entries()) {
    if (disk.imageFormat !== undefined) {
      for (const c of warmDataDiskCommands(disk, i, firstPort + i, undefined)) await qmp.execute(c.execute, c.arguments);
      continue;
    }
    if (!ctx.blockDevices) throw new Error(`block device ${disk.path} on a vmlet without block devices`); // planBlockDevices refused it already
    const device = await ctx.blockDevices.openDevice(disk.path, disk.readOnly);
    try {
      const add = addFdCommand(i);
      const fdset = fdsetOf(await qmp.executeWithFd(add.execute, add.arguments, device.fd));
      let plugged = false;
      try {
        for (const c of warmDataDiskCommands(disk, i, firstPort + i, fdset)) await qmp.execute(c.execute, c.arguments);
        plugged = true;
      } finally {
        // The disk's node holds its own duplicate; without remove-fd QEMU's set copy would stay
        // open until QEMU exits (with it, QEMU closes that copy once the VM runs, see
        // docs/warm-vms.md). After a failed plug the VM goes anyway: the plug's error counts.
        const remove = removeFdCommand(fdset);
        await qmp.execute(remove.execute, remove.arguments).catch((err: unknown) => {
          if (plugged) ctx.logger.warn({ err: errorText(err), disk: disk.path }, 'QEMU keeps a second fd of a data disk until it exits: remove-fd failed');
        });
      }
    } finally {
      await device.close();
    }
  }
}

function fdsetOf(reply: unknown): number {
  const id = (reply as { 'fdset-id'?: unknown } | undefined)?.['fdset-id'];
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw new Error(`QEMU's add-fd answered no fd set: ${JSON.stringify(reply)}`);
  return id;
}

/**
 * `cont` on the warm domain's own QMP socket (~2 ms; libvirt's resume costs ~12 ms here).
 * libvirt learns of it from QEMU's RESUME event and shows the domain running (unpaused). Without
 * the socket (gone with a QEMU that vmlet did not see exit) libvirt resumes it.
 */
export async function resumeWarm(ctx: ContainerContext, r: ContainerRecord): Promise<void> {
  let qmp: QmpSession;
  try {
    qmp = await ctx.qmp(warmQmpPath(ctx.qmpDir, r.id));
  } catch (err) {
    ctx.logger.warn({ err: errorText(err), containerId: r.id }, 'warm VM QMP socket unusable; resuming through libvirt');
    await domainOps(ctx).resume(await mustLookupDomain(ctx, r));
    return;
  }
  try {
    await qmp.execute('cont');
  } finally {
    qmp.close();
  }
}
