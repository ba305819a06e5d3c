// Original file: proto/runtime/v1/api.proto

import type { Long } from '@grpc/proto-loader';

export interface CheckpointContainerRequest {
  'container_id'?: (string);
  /**
   * Path of the checkpoint archive to write.
   */
  'location'?: (string);
  /**
   * Seconds; 0 = runtime default.
   */
  'timeout'?: (number | string | Long);
}

export interface CheckpointContainerRequest__Output {
  'container_id'?: (string);
  /**
   * Path of the checkpoint archive to write.
   */
  'location'?: (string);
  /**
   * Seconds; 0 = runtime default.
   */
  'timeout'?: (string);
}
