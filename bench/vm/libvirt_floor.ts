/**
 * The libvirt floor of StartContainer: define, start, destroy and undefine of a minimal domain
 * (same QEMU binary, TCG, same memory, the test guest as a qcow2 overlay, serial console to a
 * file) through libvirt's RPC with the project's own LibvirtClient, nothing of vmlet's around it.
 * What vmlet's Start costs above this is vmlet's; what is below it is libvirt's and QEMU's.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LibvirtClient } from '../../src/libvirt/client.js';

const execFileP = promisify(execFile);

/** Floor domains carry this prefix (not vmlet's, so no vmlet daemon ever takes them for its own). */
export const FLOOR_DOMAIN_PREFIX = 'vmletbench-floor-';

export interface FloorSamples {
  defineMs: number[];
  startMs: number[];
  destroyMs: number[];
  undefineMs: number[];
}

const SAFE_PATH = /^\/[A-Za-z0-9._/-]+$/;

/** The domain XML of the floor. Paths must be plain absolute paths (they come from the bench's temp dir). Pure. */
export function floorDomainXml(name: string, overlayPath: string, consolePath: string, memoryMiB: number): string {
  if (!/^[A-Za-z0-9-]+$/.test(name)) throw new RangeError(`floor domain name ${JSON.stringify(name)}`);
  for (const p of [overlayPath, consolePath]) if (!SAFE_PATH.test(p) || p.includes('..')) throw new RangeError(`floor path ${JSON.stringify(p)}`);
  if (!Number.isInteger(memoryMiB) || memoryMiB < 16) throw new RangeError(`floor memory ${memoryMiB} MiB`);
  return [
    `<domain type='qemu'>`,
    `  <name>${name}</name>`,
    `  <memory unit='MiB'>${memoryMiB}</memory>`,
    `  <vcpu>1</vcpu>`,
    `  <os><type arch='x86_64' machine='q35'>hvm</type></os>`,
    `  <devices>`,
    `    <emulator>/usr/bin/qemu-system-x86_64</emulator>`,
    `    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${overlayPath}'/><target dev='vda' bus='virtio'/></disk>`,
    `    <serial type='file'><source path='${consolePath}'/><target port='0'/></serial>`,
    `  </devices>`,
    `</domain>`,
    '',
  ].join('\n');
}

/** One round each time it is asked, so the bench can interleave rounds with vmlet's pods (same conditions). */
export class LibvirtFloor {
  private constructor(
    private readonly client: LibvirtClient,
    private readonly opts: { dir: string; tag: string; memoryMiB: number; backingPath: string; onDomain(name: string): void },
  ) {}

  /** `onDomain` hears each domain name before it is defined, so a cleanup can find it whatever happens. */
  static async connect(opts: { dir: string; tag: string; memoryMiB: number; backingPath: string; socketPath?: string; onDomain(name: string): void }): Promise<LibvirtFloor> {
    const client = await LibvirtClient.connect({ socketPath: opts.socketPath ?? '/run/libvirt/libvirt-sock' });
    return new LibvirtFloor(client, opts);
  }

  /** Define, start, destroy, undefine of floor domain `index`; the overlay is made first, untimed. */
  async round(index: number): Promise<{ defineMs: number; startMs: number; destroyMs: number; undefineMs: number }> {
    const name = `${FLOOR_DOMAIN_PREFIX}${this.opts.tag}-${index}`;
    const overlay = join(this.opts.dir, `${name}.qcow2`);
    await execFileP('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', this.opts.backingPath, '-F', 'qcow2', overlay], { timeout: 60_000 });
    this.opts.onDomain(name);
    const timed = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
      const t = performance.now();
      const v = await fn();
      return [v, performance.now() - t];
    };
    const [dom, defineMs] = await timed(() => this.client.defineXml(floorDomainXml(name, overlay, join(this.opts.dir, `${name}.console`), this.opts.memoryMiB)));
    const [started, startMs] = await timed(() => this.client.create(dom));
    const [, destroyMs] = await timed(() => this.client.destroy(started));
    const [, undefineMs] = await timed(() => this.client.undefine(dom));
    return { defineMs, startMs, destroyMs, undefineMs };
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
