/**
 * One readable line per call a flow makes into the outside systems (libvirt, QMP, console pumps,
 * netd through the sandbox service), with the virtual time it was made at: what the golden call
 * logs under test/golden/container/ hold. Temporary paths are written as <state>.
 */
import type { Clock } from '../../src/clock.js';

export class CallLog {
  readonly lines: string[] = [];
  private readonly scrubs: [string, string][] = [];

  constructor(private readonly clock?: Clock) {}

  /** Writes `text` as `name` wherever it appears in a line (a temp dir, say). */
  scrub(text: string, name: string): void {
    this.scrubs.push([text, name]);
  }

  add(line: string): void {
    for (const [text, name] of this.scrubs) line = line.split(text).join(name);
    const ms = this.clock ? this.clock.monotonicMs() : 0;
    this.lines.push(`${String(ms).padStart(6)} ms  ${line}`);
  }

  /** A comment line between steps of a flow. */
  step(title: string): void {
    this.lines.push(`# ${title}`);
  }

  text(): string {
    return this.lines.join('\n') + '\n';
  }

  includes(fragment: string): boolean {
    return this.lines.some((l) => l.includes(fragment));
  }
}
