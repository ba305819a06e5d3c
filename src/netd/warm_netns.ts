/**
 * Warm netns: made before any sandbox exists, so a warm VM can have its NIC at once (see
 * src/container/warm/pool.ts); a sandbox's setup then adopts one. Each is created with interface
 * 0's bridge, TAP and DHCP isolation already in it (TapBinding.prewire). Those no sandbox adopted
 * when serve stopped are collected by the next netd.
 */
import { randomBytes } from 'node:crypto';
import { FailedPreconditionError, InvalidArgumentError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseLinks } from '../network/bindings/snapshot.js';
import type { TapBinding } from '../network/bindings/tap.js';
import type { IpRunner } from '../network/iproute.js';
import { POD_IFNAME, isOwnWarmNetns, isWarmNetnsName, prewiredNames, warmNetnsName } from '../network/names.js';
import type { NetnsOps } from '../network/netns.js';
import { netnsInUse, type SandboxNetworkRecords } from './records.js';

/** A fresh warm netns name of instance `ownerId`: random, so no two serve runs ever share one. */
export function randomWarmNetnsName(ownerId: string): string {
  return warmNetnsName(ownerId, randomBytes(4).toString('hex'));
}

export interface WarmNetnsDeps {
  netns: NetnsOps;
  tapBinding: TapBinding;
  ip: IpRunner;
  records: SandboxNetworkRecords;
  logger: Logger;
  newName: () => string;
  /** This instance's owner id (ownerIdFor its state dir): only its own warm netns are collected. */
  ownerId: string;
}

export class WarmNetns {
  constructor(private readonly deps: WarmNetnsDeps) {}

  async create(): Promise<{ netnsName: string; netnsPath: string }> {
    const { netns, logger } = this.deps;
    const netnsName = this.deps.newName();
    const netnsPath = await netns.create(netnsName);
    try {
      await this.deps.tapBinding.prewire(netnsName, prewiredNames(netnsName), POD_IFNAME);
    } catch (err) {
      await netns.delete(netnsName).catch((e: unknown) => logger.error({ err: e, netns: netnsName }, 'could not delete a warm netns that failed'));
      throw err;
    }
    return { netnsName, netnsPath };
  }

  /**
   * Makes the netns of a sandbox that adopted it (its VM side unwired and CNI DEL done) a warm
   * one again: prewired as create() leaves it. Only a netns with nothing left in it but `lo` and
   * its own prewired bridge and TAP (still there when the VM side was never wired; deleted and
   * made anew) qualifies: a link a CNI plugin left, or an unwiring that failed, would otherwise
   * reach the next pod. Returns false then, and the caller deletes the netns.
   */
  async rewarm(netnsName: string): Promise<boolean> {
    const { ip, logger } = this.deps;
    if (!isWarmNetnsName(netnsName)) return false;
    const names = prewiredNames(netnsName);
    const links = parseLinks((await ip.show(netnsName, [['link', 'show']]))[0]);
    const left = links.map((l) => l.name).filter((name) => name !== 'lo');
    const foreign = left.filter((name) => name !== names.bridge && name !== names.tap);
    if (foreign.length > 0) {
      logger.info({ netns: netnsName, left: foreign }, 'a returned warm netns still has links; deleting it instead');
      return false;
    }
    if (left.length > 0) await ip.apply(netnsName, left.map((name) => ['link', 'delete', 'dev', name]));
    await this.deps.tapBinding.prewire(netnsName, names, POD_IFNAME);
    return true;
  }

  /** Deletes a warm netns no sandbox adopted. */
  async delete(netnsName: string): Promise<void> {
    if (!isWarmNetnsName(netnsName)) throw new InvalidArgumentError(`netns ${JSON.stringify(netnsName)} is not a warm netns`);
    if (netnsInUse(this.deps.records, netnsName)) throw new FailedPreconditionError(`warm netns ${netnsName} belongs to a sandbox now`);
    await this.deps.netns.delete(netnsName);
  }

  /**
   * This instance's warm netns no sandbox adopted: what serve left when it stopped (its warm VMs
   * go with it). Another vmlet's (another owner id) are never touched.
   */
  async collectUnadopted(): Promise<void> {
    const { netns, records, logger, ownerId } = this.deps;
    const adopted = new Set([...records.values()].map((r) => r.netnsName));
    for (const name of await netns.list()) {
      if (!isOwnWarmNetns(name, ownerId) || adopted.has(name)) continue;
      logger.info({ netns: name }, 'deleting a warm netns no sandbox adopted');
      await netns.delete(name).catch((err) => logger.error({ err, netns: name }, 'could not delete a warm netns'));
    }
  }
}
