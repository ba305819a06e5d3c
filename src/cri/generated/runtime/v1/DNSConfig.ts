// Original file: proto/runtime/v1/api.proto


export interface DNSConfig {
  'servers'?: (string)[];
  'searches'?: (string)[];
  /**
   * resolv.conf options.
   */
  'options'?: (string)[];
}

export interface DNSConfig__Output {
  'servers': (string)[];
  'searches': (string)[];
  /**
   * resolv.conf options.
   */
  'options': (string)[];
}
