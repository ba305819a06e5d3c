// Original file: proto/runtime/v1/api.proto


export interface ImageSpec {
  /**
   * Image reference or ID.
   */
  'image'?: (string);
  'annotations'?: ({[key: string]: string});
  /**
   * The reference as the user wrote it, when known.
   */
  'user_specified_image'?: (string);
  /**
   * Handler to pull for; empty selects the default.
   */
  'runtime_handler'?: (string);
  /**
   * Digest of an image used as a volume.
   */
  'image_ref'?: (string);
}

export interface ImageSpec__Output {
  /**
   * Image reference or ID.
   */
  'image'?: (string);
  'annotations'?: ({[key: string]: string});
  /**
   * The reference as the user wrote it, when known.
   */
  'user_specified_image'?: (string);
  /**
   * Handler to pull for; empty selects the default.
   */
  'runtime_handler'?: (string);
  /**
   * Digest of an image used as a volume.
   */
  'image_ref'?: (string);
}
