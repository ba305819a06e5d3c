// Original file: proto/runtime/v1/api.proto


export interface ExecRequest {
  'container_id'?: (string);
  'cmd'?: (string)[];
  'tty'?: (boolean);
  /**
   * At least one of stdin/stdout/stderr is set; stderr is false with tty.
   */
  'stdin'?: (boolean);
  'stdout'?: (boolean);
  'stderr'?: (boolean);
  'audit_request_id'?: (string);
}

export interface ExecRequest__Output {
  'container_id'?: (string);
  'cmd': (string)[];
  'tty'?: (boolean);
  /**
   * At least one of stdin/stdout/stderr is set; stderr is false with tty.
   */
  'stdin'?: (boolean);
  'stdout'?: (boolean);
  'stderr'?: (boolean);
  'audit_request_id'?: (string);
}
