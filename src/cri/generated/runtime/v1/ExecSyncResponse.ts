// Original file: proto/runtime/v1/api.proto


export interface ExecSyncResponse {
  /**
   * Raw output; runtimes cap each stream at 16 MiB.
   */
  'stdout'?: (Buffer | Uint8Array | string);
  'stderr'?: (Buffer | Uint8Array | string);
  /**
   * A non-zero exit is still a successful call.
   */
  'exit_code'?: (number);
}

export interface ExecSyncResponse__Output {
  /**
   * Raw output; runtimes cap each stream at 16 MiB.
   */
  'stdout'?: (Buffer);
  'stderr'?: (Buffer);
  /**
   * A non-zero exit is still a successful call.
   */
  'exit_code'?: (number);
}
