/**
 * Where the CRI runtime.v1 definition lives and how vmlet loads it for the gRPC server.
 * The .proto is read at run time (not compiled in), so the same path must resolve from
 * src/cri/proto.ts under tsx and from dist/cri/proto.js after tsc: both sit two levels
 * below the repository root.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { InternalError } from '../errors.js';
import type { ProtoGrpcType } from './generated/api.js';
import type { RuntimeServiceDefinition } from './generated/runtime/v1/RuntimeService.js';
import type { ImageServiceDefinition } from './generated/runtime/v1/ImageService.js';

export const CRI_PROTO_PATH: string = fileURLToPath(
  new URL('../../proto/runtime/v1/api.proto', import.meta.url),
);

/**
 * Loader options for the server. keepCase keeps the snake_case names of the .proto (the
 * generated types in ./generated assume it); 64-bit integers become decimal strings because
 * CRI timestamps are Unix nanoseconds beyond 2^53; enums travel by name; defaults:false keeps
 * "absent" distinguishable from "zero"; arrays:true gives repeated fields as [] when empty.
 * `npm run gen:proto` must be kept in step with these.
 */
export const CRI_LOADER_OPTIONS: Readonly<protoLoader.Options> = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  arrays: true,
  oneofs: true,
});

export interface CriServices {
  runtimeService: RuntimeServiceDefinition;
  imageService: ImageServiceDefinition;
}

let cached: CriServices | undefined;

/** The RuntimeService and ImageService definitions, loaded once per process. */
export function loadCriServices(): CriServices {
  if (cached === undefined) {
    const packageDefinition = protoLoader.loadSync(CRI_PROTO_PATH, { ...CRI_LOADER_OPTIONS });
    const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as ProtoGrpcType;
    const runtimeService = loaded.runtime?.v1?.RuntimeService?.service;
    const imageService = loaded.runtime?.v1?.ImageService?.service;
    if (runtimeService === undefined || imageService === undefined) {
      throw new InternalError(`${CRI_PROTO_PATH} does not define runtime.v1.RuntimeService and ImageService`);
    }
    cached = { runtimeService, imageService };
  }
  return cached;
}
