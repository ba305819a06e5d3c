// Original file: proto/runtime/v1/api.proto

import type { Long } from '@grpc/proto-loader';

/**
 * Wrapper so that 0 can be told apart from unset.
 */
export interface UInt64Value {
  'value'?: (number | string | Long);
}

/**
 * Wrapper so that 0 can be told apart from unset.
 */
export interface UInt64Value__Output {
  'value'?: (string);
}
