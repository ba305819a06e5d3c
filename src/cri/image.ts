/** The CRI ImageService: PullImage, ListImages, ImageStatus, RemoveImage, ImageFsInfo. */
import type { PullImageRequest__Output } from './generated/runtime/v1/PullImageRequest.js';
import type { PullImageResponse } from './generated/runtime/v1/PullImageResponse.js';
import type { ListImagesRequest__Output } from './generated/runtime/v1/ListImagesRequest.js';
import type { ListImagesResponse } from './generated/runtime/v1/ListImagesResponse.js';
import type { ImageStatusRequest__Output } from './generated/runtime/v1/ImageStatusRequest.js';
import type { ImageStatusResponse } from './generated/runtime/v1/ImageStatusResponse.js';
import type { RemoveImageRequest__Output } from './generated/runtime/v1/RemoveImageRequest.js';
import type { ImageFsInfoResponse } from './generated/runtime/v1/ImageFsInfoResponse.js';
import type { Image } from './generated/runtime/v1/Image.js';
import type { ImageStore } from '../image/store.js';
import type { ImageRecord } from '../image/types.js';
import type { HandlerMap, CallContext } from './rpc.js';
import { requireString } from './validate.js';
import { FailedPreconditionError } from '../errors.js';
import { MAX_IMAGE_NAME_LENGTH } from '../image/reference.js';
import { credentialsFromAuthConfig } from '../image/registry/auth.js';

function imageName(spec: { image?: string } | undefined | null, field: string): string {
  return requireString(spec?.image, field, MAX_IMAGE_NAME_LENGTH);
}

export function toCriImage(r: ImageRecord): Image {
  return {
    id: r.id,
    repo_tags: r.repoTags,
    repo_digests: r.repoDigests,
    size: r.size.toString(),
    spec: { image: r.id },
  };
}

/** Answers whether a container's root disk is backed by the image (its blob must stay). */
export type ImageInUse = (imageId: string) => string | undefined;

export function imageHandlers(images: ImageStore, inUse: ImageInUse = () => undefined): HandlerMap {
  return {
    async PullImage(req: PullImageRequest__Output, ctx: CallContext): Promise<PullImageResponse> {
      const name = imageName(req.image, 'image.image');
      const credentials = credentialsFromAuthConfig(req.auth);
      const record = await images.pull(name, credentials ? { signal: ctx.signal, credentials } : { signal: ctx.signal });
      return { image_ref: record.id };
    },

    async ListImages(req: ListImagesRequest__Output): Promise<ListImagesResponse> {
      const filter = req.filter?.image?.image;
      return { images: images.list(filter ? { image: filter } : undefined).map(toCriImage) };
    },

    async ImageStatus(req: ImageStatusRequest__Output): Promise<ImageStatusResponse> {
      const record = images.status(imageName(req.image, 'image.image'));
      // An absent image is a normal answer with no `image`, as kubelet expects.
      if (!record) return {};
      const response: ImageStatusResponse = { image: toCriImage(record) };
      if (req.verbose) {
        response.info = {
          info: JSON.stringify({
            format: record.format,
            virtualSize: record.virtualSize.toString(),
            sourceUrl: record.sourceUrl,
            pulledAt: record.pulledAtNs.toString(),
          }),
        };
      }
      return response;
    },

    async RemoveImage(req: RemoveImageRequest__Output): Promise<object> {
      const ref = imageName(req.image, 'image.image');
      const record = images.status(ref);
      const user = record ? inUse(record.id) : undefined;
      if (user) throw new FailedPreconditionError(`image ${ref} is in use by container ${user}`);
      await images.remove(ref);
      return {};
    },

    async ImageFsInfo(): Promise<ImageFsInfoResponse> {
      const fs = await images.fsInfo();
      return {
        image_filesystems: [
          {
            timestamp: fs.timestampNs.toString(),
            fs_id: { mountpoint: fs.mountpoint },
            used_bytes: { value: fs.usedBytes.toString() },
            inodes_used: { value: fs.inodesUsed.toString() },
          },
        ],
      };
    },
  };
}
