// Original file: proto/runtime/v1/api.proto


export interface VersionRequest {
  /**
   * CRI API version the client speaks.
   */
  'version'?: (string);
}

export interface VersionRequest__Output {
  /**
   * CRI API version the client speaks.
   */
  'version'?: (string);
}
