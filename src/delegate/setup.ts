/**
 * Wires the delegating layer for `vmlet serve --container-runtime-endpoint`: the gRPC client to
 * the delegate and what vmlet's records and image translations say it owns.
 */
import type { HandlerMap } from '../cri/rpc.js';
import type { Logger } from '../log.js';
import type { SandboxService } from '../sandbox/service.js';
import type { ContainerService } from '../container/service.js';
import type { ImageStore } from '../image/store.js';
import { TranslationDirectory } from '../image/translation_dir.js';
import { translateImageName } from '../image/translate.js';
import { parseImageName } from '../image/reference.js';
import { GrpcDelegate } from './client.js';
import { delegatingHandlers, type VmletOwnership } from './router.js';

export interface DelegateSetup {
  runtime: HandlerMap;
  image: HandlerMap;
  close(): void;
}

export function setUpDelegate(
  endpoint: string,
  vmlet: { runtime: HandlerMap; image: HandlerMap },
  deps: { sandboxes: SandboxService; containers: ContainerService; images: ImageStore; translationsDir: string; logger: Logger; vmImagePrefixes?: readonly string[] },
): DelegateSetup {
  const delegate = new GrpcDelegate(endpoint);
  const translations = new TranslationDirectory(deps.translationsDir, deps.logger.child({ component: 'delegate-images' }));
  // An ambiguous prefix among vmlet's ids is vmlet's to refuse (INVALID_ARGUMENT).
  const knows = (resolve: () => string | undefined) => {
    try {
      return resolve() !== undefined;
    } catch {
      return true;
    }
  };
  const owns: VmletOwnership = {
    sandbox: (id) => knows(() => deps.sandboxes.resolve(id)),
    container: (id) => knows(() => deps.containers.resolve(id)),
    image: {
      held: (ref) => {
        try {
          return deps.images.status(ref) !== undefined;
        } catch {
          return false;
        }
      },
      translated: async (name) => {
        try {
          return translateImageName((await translations.current()).configs, parseImageName(name)) !== undefined;
        } catch {
          return false;
        }
      },
    },
  };
  deps.logger.info({ endpoint, vmImagePrefixes: deps.vmImagePrefixes ?? [] }, 'container pods are delegated to this runtime; VM pods are runtime handler "vmlet" or Virtlet-annotated');
  return { ...delegatingHandlers({ vmlet, delegate, owns, logger: deps.logger, vmImagePrefixes: deps.vmImagePrefixes }), close: () => delegate.close() };
}
