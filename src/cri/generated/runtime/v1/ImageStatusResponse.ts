// Original file: proto/runtime/v1/api.proto

import type { Image as _runtime_v1_Image, Image__Output as _runtime_v1_Image__Output } from '../../runtime/v1/Image.js';

export interface ImageStatusResponse {
  /**
   * Unset when the image is not present.
   */
  'image'?: (_runtime_v1_Image | null);
  /**
   * Verbose only; values are JSON documents.
   */
  'info'?: ({[key: string]: string});
}

export interface ImageStatusResponse__Output {
  /**
   * Unset when the image is not present.
   */
  'image'?: (_runtime_v1_Image__Output);
  /**
   * Verbose only; values are JSON documents.
   */
  'info'?: ({[key: string]: string});
}
