/**
 * Brings records and libvirt in line after a start or a reconnect: running VMs stay RUNNING (their
 * console pumps resume), vanished or stopped ones become EXITED, and vmlet domains, VM
 * directories and warm QMP sockets that no record owns are removed.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDomainMetadata } from '../libvirt/domain_xml.js';
import { destroyIfActive, isActive, undefineFully } from '../libvirt/domain_ops.js';
import { domainOps, type ContainerContext } from './context.js';
import { DOMAIN_PREFIX, warmQmpPath } from './layout.js';
import { markExited } from './lifecycle_events.js';
import { deviceOwnersDir, returnUnheldDevices } from './block_devices/device_owner.js';

export async function reconcileContainers(ctx: ContainerContext): Promise<void> {
  const client = domainOps(ctx);
  const domains = await client.listAllDomains();
  const seen = new Set<string>();
  for (const dom of domains) {
    if (!dom.name.startsWith(DOMAIN_PREFIX)) continue;
    const id = ctx.byDomain.get(dom.name);
    if (id !== undefined && !ctx.store.get(id)) continue; // being created
    if (id === undefined) {
      // Only a domain whose metadata says this vmlet (this state dir) made it is ours to remove;
      // another vmlet on the same libvirtd keeps its VMs.
      const meta = parseDomainMetadata(await client.getXmlDesc(dom).catch(() => ''));
      if (meta && meta.owner === ctx.owner && !ctx.store.get(meta.containerId) && !ctx.creating.has(meta.containerId) && !ctx.pool?.owns(meta.containerId)) {
        ctx.logger.warn({ domain: dom.name }, 'removing a vmlet domain no record owns');
        await destroyIfActive(domainOps(ctx), dom).catch(() => {});
        await undefineFully(domainOps(ctx), dom).catch((err) => ctx.logger.error({ err, domain: dom.name }, 'could not undefine orphan domain'));
      }
      continue;
    }
    seen.add(id);
    const r = ctx.store.get(id)!;
    const active = await isActive(domainOps(ctx), dom);
    if (r.state === 'RUNNING') {
      if (active) await ctx.consoles.start(r);
      else await markExited(ctx, id, { exitCode: 0, reason: 'Completed', message: 'VM powered off while vmlet was away' });
    }
  }
  for (const r of ctx.store.values()) {
    if (seen.has(r.id) || r.state === 'EXITED') continue;
    await markExited(ctx, r.id, { exitCode: 255, reason: 'Error', message: 'libvirt domain vanished' });
  }
  await removeUnownedFiles(ctx);
}

/** VM directories no record, create in progress or warm VM owns, and QMP sockets a killed QEMU left. */
async function removeUnownedFiles(ctx: ContainerContext): Promise<void> {
  const vmDirs = await readdir(ctx.dataDir).catch(() => [] as string[]);
  const kept = (id: string) => ctx.store.get(id) !== undefined || ctx.creating.has(id) || ctx.pool?.owns(id) === true;
  for (const name of vmDirs) {
    if (/^[0-9a-f]{64}$/.test(name) && !kept(name)) {
      ctx.logger.warn({ dir: name }, 'removing a VM directory no record owns');
      await rm(join(ctx.dataDir, name), { recursive: true, force: true });
    }
  }
  for (const id of (await ctx.volumes?.list()) ?? []) {
    if (kept(id)) continue;
    ctx.logger.warn({ id }, 'releasing volumes no record owns');
    await ctx.volumes!.release(id).catch((err: unknown) => ctx.logger.error({ err, id }, 'could not release orphan volumes'));
  }
  for (const device of await returnUnheldDevices(deviceOwnersDir(ctx.dataDir), kept)) {
    ctx.logger.warn({ device }, 'gave a device node no record holds its owner back');
  }
  // A QMP socket a QEMU killed outright left behind (a live one is named after a kept VM's id).
  const liveQmp = new Set(vmDirs.filter(kept).map((id) => warmQmpPath(ctx.qmpDir, id)));
  for (const name of await readdir(ctx.qmpDir).catch(() => [] as string[])) {
    const path = join(ctx.qmpDir, name);
    if (/^[0-9a-f]{16}$/.test(name) && !liveQmp.has(path)) await rm(path, { force: true });
  }
}
