import { Code, VmletError, type CodeValue } from '../../errors.js';

/**
 * A CNI result (from a plugin or the cache) that does not hold up: bad CIDR, an interface index
 * pointing nowhere, a malformed MAC. `field` is the JSON path of the offending value.
 */
export class CniResultError extends VmletError {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(Code.INTERNAL, `invalid CNI result: ${field}: ${message}`);
  }
}

/** How a plugin invocation failed; decides the gRPC code and lets callers react (retry, log). */
export type CniFailureKind =
  /** The plugin exited non-zero; `cniCode`/`pluginMessage` hold its error JSON when it printed one. */
  | 'plugin-error'
  /** The plugin ran past the per-call timeout and was killed. */
  | 'timeout'
  /** No executable of that type in any bin dir. */
  | 'not-found'
  /** The plugin exited 0 but its stdout was not the JSON the command requires. */
  | 'bad-output'
  /** The plugin could not be started at all. */
  | 'spawn-failed';

export interface CniPluginErrorInfo {
  kind: CniFailureKind;
  plugin: string;
  command: string;
  /** The error code from the plugin's error JSON (spec "Error" type), when it printed one. */
  cniCode?: number;
  /** The plugin's own `msg` text, kept verbatim. */
  pluginMessage?: string;
  /** The plugin's `details` text, kept verbatim. */
  details?: string;
  /** Tail of the plugin's stderr. */
  stderr?: string;
  exitCode?: number | null;
  signal?: string | null;
}

/** CNI well-known error codes that mean "try again later" (11) or "plugin not available" (50). */
const RETRYABLE_CNI_CODES = new Set([11, 50]);

function codeFor(info: CniPluginErrorInfo): CodeValue {
  switch (info.kind) {
    case 'timeout':
      return Code.DEADLINE_EXCEEDED;
    case 'not-found':
      return Code.FAILED_PRECONDITION;
    case 'plugin-error':
      return info.cniCode !== undefined && RETRYABLE_CNI_CODES.has(info.cniCode) ? Code.UNAVAILABLE : Code.UNKNOWN;
    default:
      return Code.INTERNAL;
  }
}

function messageFor(info: CniPluginErrorInfo, summary: string): string {
  const head = `CNI plugin ${info.plugin} ${info.command}`;
  if (info.kind === 'plugin-error' && info.pluginMessage !== undefined) {
    const details = info.details ? `: ${info.details}` : '';
    const code = info.cniCode !== undefined ? ` (CNI error code ${info.cniCode})` : '';
    return `${head} failed: ${info.pluginMessage}${details}${code}`;
  }
  return `${head} ${summary}`;
}

/** A plugin invocation that failed; the message carries the plugin's own error text verbatim. */
export class CniPluginError extends VmletError {
  readonly kind: CniFailureKind;
  readonly plugin: string;
  readonly command: string;
  readonly cniCode?: number;
  readonly pluginMessage?: string;
  readonly details?: string;
  readonly stderr?: string;
  readonly exitCode?: number | null;
  readonly signal?: string | null;

  constructor(info: CniPluginErrorInfo, summary: string, options?: { cause?: unknown }) {
    super(codeFor(info), messageFor(info, summary), options);
    this.kind = info.kind;
    this.plugin = info.plugin;
    this.command = info.command;
    this.cniCode = info.cniCode;
    this.pluginMessage = info.pluginMessage;
    this.details = info.details;
    this.stderr = info.stderr;
    this.exitCode = info.exitCode;
    this.signal = info.signal;
  }
}
