/** A command QEMU's monitor refused (through libvirt's qemu-monitor-command or vmlet's own QMP socket). */
export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly qmpClass: string,
    readonly description: string,
  ) {
    super(`QEMU refused ${command}: ${description} (${qmpClass})`);
    this.name = 'QmpError';
  }
}
