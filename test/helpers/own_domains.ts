/** The libvirt domains of one test daemon: every vmlet on the shared libvirtd puts its owner id in its domains' metadata. */
import { execFileSync } from 'node:child_process';
import { ownerIdFor } from '../../src/store/owner.js';

const VIRSH = ['-q', '-c', 'qemu:///system'];

/** Domains (defined or running) whose XML names the owner id of `stateDir`; `prefix` narrows them by name (e.g. `vmlet-warm-`). */
export function ownDomains(stateDir: string, prefix = ''): string[] {
  const owner = ownerIdFor(stateDir);
  const names = execFileSync('virsh', [...VIRSH, 'list', '--all', '--name'], { encoding: 'utf8' }).split('\n').map((l) => l.trim());
  return names.filter((n) => n !== '' && n.startsWith(prefix)).filter((n) => {
    try {
      return execFileSync('virsh', [...VIRSH, 'dumpxml', n], { encoding: 'utf8' }).includes(owner);
    } catch {
      return false; // gone meanwhile
    }
  });
}
