// Original file: proto/runtime/v1/api.proto


export interface CDIDevice {
  /**
   * Fully qualified CDI name, e.g. vendor.com/gpu=gpu0.
   */
  'name'?: (string);
}

export interface CDIDevice__Output {
  /**
   * Fully qualified CDI name, e.g. vendor.com/gpu=gpu0.
   */
  'name'?: (string);
}
