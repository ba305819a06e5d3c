// Original file: proto/runtime/v1/api.proto

import type { Long } from '@grpc/proto-loader';

export interface HugepageLimit {
  /**
   * e.g. "2MB", "1GB".
   */
  'page_size'?: (string);
  'limit'?: (number | string | Long);
}

export interface HugepageLimit__Output {
  /**
   * e.g. "2MB", "1GB".
   */
  'page_size'?: (string);
  'limit'?: (string);
}
