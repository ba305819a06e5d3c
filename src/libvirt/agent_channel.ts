/**
 * The guest agent of one domain, reached through libvirt (virDomainQemuAgentCommand): libvirtd
 * holds the only connection QEMU's agent chardev serves (see src/qmp/guest_agent.ts), syncs with
 * the agent before each command and reports an agent that is not connected at once.
 *
 * libvirt's answers become the errors GuestAgent expects:
 * - VIR_ERR_AGENT_UNRESPONSIVE (not connected, or no answer to guest-sync within libvirt's 5 s):
 *   AgentUnavailableError (FAILED_PRECONDITION) "no guest agent answers", which callers may retry;
 * - VIR_ERR_INTERNAL_ERROR from this call: the agent answered an error, which libvirt reports as
 *   "unable to execute QEMU agent command 'NAME': DESC" (only DESC is kept, for the user);
 * - no domain, or a domain that is not running: FAILED_PRECONDITION.
 */
import { FailedPreconditionError, errorText } from '../errors.js';
import { AgentUnavailableError, GuestAgentError, type AgentChannel } from '../qmp/guest_agent.js';
import { isLibvirtError, isNoDomain, isOperationInvalid, type DomainRef } from './client.js';
import { VIR_ERR_AGENT_UNRESPONSIVE, VIR_ERR_INTERNAL_ERROR } from './rpc/constants.js';

/** What the channel needs of a libvirt client. */
export interface AgentCommandOps {
  qemuAgentCommand(dom: DomainRef, command: string, timeoutSeconds: number, flags?: number): Promise<string | undefined>;
}

export class LibvirtAgentChannel implements AgentChannel {
  constructor(
    private readonly ops: () => AgentCommandOps,
    /** The domain, or undefined when libvirt has none (the VM is gone). */
    private readonly domain: () => Promise<DomainRef | undefined>,
    private readonly describe: string,
  ) {}

  async command(execute: string, args: object | undefined, timeoutMs: number): Promise<unknown> {
    const dom = await this.domain();
    if (!dom) throw new FailedPreconditionError(`${this.describe}: the VM is not running, no guest agent to ask`);
    const request = JSON.stringify(args ? { execute, arguments: args } : { execute });
    const timeoutSeconds = Math.max(1, Math.ceil(timeoutMs / 1000));
    let reply: string | undefined;
    try {
      reply = await this.ops().qemuAgentCommand(dom, request, timeoutSeconds);
    } catch (err) {
      throw this.translate(err, execute);
    }
    let doc: { return?: unknown };
    try {
      doc = JSON.parse(reply ?? '') as { return?: unknown };
    } catch {
      throw new GuestAgentError('GenericError', `unreadable reply to ${execute}: ${JSON.stringify((reply ?? '').slice(0, 200))}`);
    }
    return doc.return;
  }

  private translate(err: unknown, execute: string): Error {
    if (isLibvirtError(err, VIR_ERR_AGENT_UNRESPONSIVE)) {
      return new AgentUnavailableError(`no guest agent answers in ${this.describe} (${errorText(err)}): is qemu-guest-agent running in the guest?`);
    }
    if (isLibvirtError(err, VIR_ERR_INTERNAL_ERROR)) {
      const message = errorText(err);
      const marker = `'${execute}': `;
      const at = message.indexOf(marker);
      return new GuestAgentError('GenericError', at >= 0 ? message.slice(at + marker.length) : message);
    }
    if (isNoDomain(err) || isOperationInvalid(err)) {
      return new FailedPreconditionError(`${this.describe}: the VM is not running (${errorText(err)})`);
    }
    return err instanceof Error ? err : new Error(String(err));
  }
}
