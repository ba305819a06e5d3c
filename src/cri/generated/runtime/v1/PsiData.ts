// Original file: proto/runtime/v1/api.proto

import type { Long } from '@grpc/proto-loader';

export interface PsiData {
  /**
   * Nanoseconds.
   */
  'Total'?: (number | string | Long);
  /**
   * Percentages over 10 s, 60 s and 300 s windows.
   */
  'Avg10'?: (number | string);
  'Avg60'?: (number | string);
  'Avg300'?: (number | string);
}

export interface PsiData__Output {
  /**
   * Nanoseconds.
   */
  'Total'?: (string);
  /**
   * Percentages over 10 s, 60 s and 300 s windows.
   */
  'Avg10'?: (number);
  'Avg60'?: (number);
  'Avg300'?: (number);
}
