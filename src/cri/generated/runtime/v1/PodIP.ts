// Original file: proto/runtime/v1/api.proto


export interface PodIP {
  /**
   * IPv4 or IPv6 address as text.
   */
  'ip'?: (string);
}

export interface PodIP__Output {
  /**
   * IPv4 or IPv6 address as text.
   */
  'ip'?: (string);
}
