// Original file: proto/runtime/v1/api.proto

import type { Int64Value as _runtime_v1_Int64Value, Int64Value__Output as _runtime_v1_Int64Value__Output } from '../../runtime/v1/Int64Value.js';
import type { ImageSpec as _runtime_v1_ImageSpec, ImageSpec__Output as _runtime_v1_ImageSpec__Output } from '../../runtime/v1/ImageSpec.js';
import type { Long } from '@grpc/proto-loader';

export interface Image {
  /**
   * Same value as PullImageResponse.image_ref.
   */
  'id'?: (string);
  'repo_tags'?: (string)[];
  'repo_digests'?: (string)[];
  'size'?: (number | string | Long);
  /**
   * Either uid or username, not both.
   */
  'uid'?: (_runtime_v1_Int64Value | null);
  'username'?: (string);
  'spec'?: (_runtime_v1_ImageSpec | null);
  /**
   * Hint to skip garbage collection.
   */
  'pinned'?: (boolean);
}

export interface Image__Output {
  /**
   * Same value as PullImageResponse.image_ref.
   */
  'id'?: (string);
  'repo_tags': (string)[];
  'repo_digests': (string)[];
  'size'?: (string);
  /**
   * Either uid or username, not both.
   */
  'uid'?: (_runtime_v1_Int64Value__Output);
  'username'?: (string);
  'spec'?: (_runtime_v1_ImageSpec__Output);
  /**
   * Hint to skip garbage collection.
   */
  'pinned'?: (boolean);
}
