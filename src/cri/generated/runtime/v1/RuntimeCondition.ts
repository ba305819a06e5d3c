// Original file: proto/runtime/v1/api.proto


/**
 * The kubelet requires types "RuntimeReady" and "NetworkReady" to be true.
 */
export interface RuntimeCondition {
  'type'?: (string);
  'status'?: (boolean);
  'reason'?: (string);
  'message'?: (string);
}

/**
 * The kubelet requires types "RuntimeReady" and "NetworkReady" to be true.
 */
export interface RuntimeCondition__Output {
  'type'?: (string);
  'status'?: (boolean);
  'reason'?: (string);
  'message'?: (string);
}
