// Original file: proto/runtime/v1/api.proto


/**
 * Features of the CRI implementation itself, independent of handlers.
 */
export interface RuntimeFeatures {
  'supplemental_groups_policy'?: (boolean);
  'user_namespaces_host_network'?: (boolean);
}

/**
 * Features of the CRI implementation itself, independent of handlers.
 */
export interface RuntimeFeatures__Output {
  'supplemental_groups_policy'?: (boolean);
  'user_namespaces_host_network'?: (boolean);
}
