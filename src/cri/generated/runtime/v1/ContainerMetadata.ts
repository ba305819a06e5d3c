// Original file: proto/runtime/v1/api.proto


/**
 * (name, attempt) is unique within a sandbox.
 */
export interface ContainerMetadata {
  'name'?: (string);
  'attempt'?: (number);
}

/**
 * (name, attempt) is unique within a sandbox.
 */
export interface ContainerMetadata__Output {
  'name'?: (string);
  'attempt'?: (number);
}
