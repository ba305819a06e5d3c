// Original file: proto/runtime/v1/api.proto


export interface PullImageResponse {
  /**
   * Same value as Image.id / Container.image_id / ContainerStatus.image_id.
   */
  'image_ref'?: (string);
}

export interface PullImageResponse__Output {
  /**
   * Same value as Image.id / Container.image_id / ContainerStatus.image_id.
   */
  'image_ref'?: (string);
}
