/**
 * The delegating layer: wraps vmlet's own CRI handlers so that container pods go to a delegate
 * runtime (containerd) unchanged and VM pods stay with vmlet. Decisions come from routing.ts;
 * delegated answers are the delegate's protobuf bytes, passed through untouched; merged lists
 * are vmlet's bytes followed by the delegate's (merge.ts).
 *
 * When the delegate does not answer (UNAVAILABLE), calls that belong to it fail with that code,
 * while VM pods keep being served: merged lists then hold vmlet's part only (logged once per
 * outage), since kubelet needs its VM pods listed to keep them running.
 */
import type * as grpc from '@grpc/grpc-js';
import { Code, FailedPreconditionError, NotFoundError, UnimplementedError, errorText } from '../errors.js';
import type { Logger } from '../log.js';
import type { CallContext, HandlerMap, UnaryHandler } from '../cri/rpc.js';
import { loadCriServices } from '../cri/proto.js';
import { EncodedMessage } from '../cri/encoded_list.js';
import type { StatusResponse } from '../cri/generated/runtime/v1/StatusResponse.js';
import { DelegateError, type CriServiceName, type Delegate } from './client.js';
import { concatEncoded, mergeStatus, type DelegateStatus } from './merge.js';
import { idSide, imageSide, sandboxSide, type ImageFacts, type Side } from './routing.js';

/** What vmlet's records say it owns. Both accept an id or a prefix, as the CRI calls carry them. */
export interface VmletOwnership {
  sandbox(idOrPrefix: string): boolean;
  container(idOrPrefix: string): boolean;
  image: ImageFacts;
}

export interface DelegatingOptions {
  vmlet: { runtime: HandlerMap; image: HandlerMap };
  delegate: Delegate;
  owns: VmletOwnership;
  logger: Logger;
  /** `--vm-image-prefixes`: image names under these are VM images whatever the pull says. */
  vmImagePrefixes?: readonly string[];
}

/** Calls on one existing sandbox, by `pod_sandbox_id`. */
const BY_SANDBOX_ID = ['StopPodSandbox', 'RemovePodSandbox', 'PodSandboxStatus', 'PortForward', 'PodSandboxStats', 'UpdatePodSandboxResources', 'CreateContainer'];
/** Calls on one existing container, by `container_id`. */
const BY_CONTAINER_ID = [
  'StartContainer', 'StopContainer', 'RemoveContainer', 'ContainerStatus', 'UpdateContainerResources', 'ReopenContainerLog',
  'ExecSync', 'Exec', 'Attach', 'ContainerStats', 'CheckpointContainer',
];
/** Lists answered by both sides; the filter fields that name one id (and so one side). */
const MERGED_LISTS: Record<string, { sandbox?: string[]; container?: string[] }> = {
  ListPodSandbox: { sandbox: ['id'] },
  ListContainers: { container: ['id'], sandbox: ['pod_sandbox_id'] },
  ListContainerStats: { container: ['id'], sandbox: ['pod_sandbox_id'] },
  ListPodSandboxStats: { sandbox: ['id'] },
  ListPodSandboxMetrics: {},
  ListMetricDescriptors: {},
};
/** Image calls on one image reference, `image.image`. */
const BY_IMAGE_REF = ['ImageStatus', 'RemoveImage'];
/** Answered by vmlet alone: they describe the runtime kubelet talks to. */
const VMLET_ONLY = ['Version', 'RuntimeConfig'];

export function delegatingHandlers(opts: DelegatingOptions): { runtime: HandlerMap; image: HandlerMap } {
  const { runtimeService, imageService } = loadCriServices();
  const { delegate, owns, logger } = opts;
  const prefixes = opts.vmImagePrefixes ?? [];
  const log = logger.child({ component: 'delegate' });
  let outage = false;

  const forward = (service: CriServiceName, method: string) => async (req: object, ctx: CallContext) => {
    try {
      const bytes = await delegate.call(service, method, req, { signal: ctx.signal });
      noteUp();
      return new EncodedMessage(bytes);
    } catch (err) {
      noteDown(err);
      throw err;
    }
  };
  const noteDown = (err: unknown) => {
    if (err instanceof DelegateError && err.code === Code.UNAVAILABLE && !outage) {
      outage = true;
      log.warn({ endpoint: delegate.endpoint, err: errorText(err) }, 'container runtime unavailable: container pods cannot be served, VM pods still are');
    }
  };
  const noteUp = () => {
    if (outage) {
      outage = false;
      log.info({ endpoint: delegate.endpoint }, 'container runtime answers again');
    }
  };
  const own = (service: CriServiceName, method: string): UnaryHandler => {
    const handler = (service === 'runtime' ? opts.vmlet.runtime : opts.vmlet.image)[method];
    return handler ?? (async () => Promise.reject(new UnimplementedError(`vmlet does not implement ${method} for VM pods`)));
  };
  const route = (service: CriServiceName, method: string, decide: (req: any) => Side | Promise<Side>): UnaryHandler => {
    const mine = own(service, method);
    const theirs = forward(service, method);
    return async (req, ctx) => ((await decide(req)) === 'vmlet' ? mine(req, ctx) : theirs(req, ctx));
  };
  const merged = (service: CriServiceName, method: string, def: grpc.MethodDefinition<any, any>, targeted: (req: any) => Side | undefined | Promise<Side | undefined>): UnaryHandler => {
    const mineHandler = (service === 'runtime' ? opts.vmlet.runtime : opts.vmlet.image)[method];
    const mine = own(service, method);
    const theirs = forward(service, method);
    return async (req, ctx) => {
      const side = await targeted(req);
      if (side === 'vmlet') return mine(req, ctx);
      if (side === 'delegate') return theirs(req, ctx);
      const [ownPart, otherPart] = await Promise.all([
        mineHandler ? mineHandler(req, ctx).then((v) => encodedBytes(v, def)) : Promise.resolve(Buffer.alloc(0)),
        theirs(req, ctx).then(
          (m) => m.bytes,
          (err: unknown) => {
            if (err instanceof DelegateError && err.code === Code.UNAVAILABLE) return Buffer.alloc(0);
            throw err;
          },
        ),
      ]);
      return new EncodedMessage(concatEncoded([ownPart, otherPart]));
    };
  };

  const sandboxKnown = (id: string) => owns.sandbox(id);
  const containerKnown = (id: string) => owns.container(id);
  const listTarget = (filters: { sandbox?: string[]; container?: string[] }) => (req: any): Side | undefined => {
    const f = req?.filter;
    if (!f) return undefined;
    const sides: Side[] = [
      ...(filters.sandbox ?? []).filter((k) => f[k]).map((k) => idSide(f[k], sandboxKnown)),
      ...(filters.container ?? []).filter((k) => f[k]).map((k) => idSide(f[k], containerKnown)),
    ];
    if (sides.includes('vmlet')) return 'vmlet';
    return sides.length > 0 ? 'delegate' : undefined;
  };

  const runtime: HandlerMap = {};
  const runtimeDefs = runtimeService as unknown as grpc.ServiceDefinition;
  for (const [method, def] of Object.entries(runtimeDefs)) {
    if (def.requestStream || def.responseStream) continue;
    if (method === 'RunPodSandbox') runtime[method] = route('runtime', method, (req) => sandboxSide(req?.runtime_handler, req?.config?.annotations));
    else if (method === 'CreateContainer') runtime[method] = explainDelegatePulls(route('runtime', method, (req) => idSide(req?.pod_sandbox_id, sandboxKnown)));
    else if (BY_SANDBOX_ID.includes(method)) runtime[method] = route('runtime', method, (req) => idSide(req?.pod_sandbox_id, sandboxKnown));
    else if (BY_CONTAINER_ID.includes(method)) runtime[method] = route('runtime', method, (req) => idSide(req?.container_id, containerKnown));
    else if (method in MERGED_LISTS) runtime[method] = merged('runtime', method, def, listTarget(MERGED_LISTS[method]!));
    else if (method === 'Status') runtime[method] = mergedStatus(own('runtime', method), forward('runtime', method), def, delegate.endpoint);
    else if (method === 'UpdateRuntimeConfig') runtime[method] = both(own('runtime', method), forward('runtime', method));
    else if (VMLET_ONLY.includes(method) || opts.vmlet.runtime[method]) {
      if (opts.vmlet.runtime[method]) runtime[method] = opts.vmlet.runtime[method];
    } else {
      // A call of a newer CRI that vmlet does not know is the delegate's to answer.
      runtime[method] = forward('runtime', method);
    }
  }

  const image: HandlerMap = {};
  const imageDefs = imageService as unknown as grpc.ServiceDefinition;
  for (const [method, def] of Object.entries(imageDefs)) {
    if (def.requestStream || def.responseStream) continue;
    if (method === 'PullImage') {
      image[method] = route('image', method, (req) =>
        imageSide(req?.image?.image, owns.image, { runtimeHandler: req?.image?.runtime_handler, podAnnotations: req?.sandbox_config?.annotations }, prefixes));
    } else if (BY_IMAGE_REF.includes(method)) image[method] = route('image', method, (req) => imageSide(req?.image?.image, owns.image, {}, prefixes));
    else if (method === 'ListImages') image[method] = merged('image', method, def, (req) => (req?.filter?.image?.image ? imageSide(req.filter.image.image, owns.image, {}, prefixes) : undefined));
    else if (method === 'ImageFsInfo') image[method] = merged('image', method, def, () => undefined);
    else if (opts.vmlet.image[method]) image[method] = opts.vmlet.image[method];
    else image[method] = forward('image', method);
  }
  return { runtime, image };

  /**
   * kubelet asks ImageStatus without the pod, so a registry image a VM pod needs can end up
   * pulled by the delegate (the pull is skipped when "present"). vmlet's NOT_FOUND would then
   * be puzzling: when the delegate holds the image, say so and name what routes it to vmlet.
   */
  function explainDelegatePulls(inner: UnaryHandler): UnaryHandler {
    return async (req, ctx) => {
      try {
        return await inner(req, ctx);
      } catch (err) {
        const ref: unknown = req?.config?.image?.image;
        if (!(err instanceof NotFoundError) || typeof ref !== 'string' || ref === '' || owns.image.held(ref)) throw err;
        if (idSide(req?.pod_sandbox_id, sandboxKnown) !== 'vmlet') throw err;
        let delegateHolds = false;
        try {
          const bytes = await delegate.call('image', 'ImageStatus', { image: { image: ref } }, { signal: ctx.signal });
          delegateHolds = Boolean((imageService.ImageStatus.responseDeserialize(bytes) as { image?: unknown }).image);
        } catch {
          throw err;
        }
        if (!delegateHolds) throw err;
        throw new FailedPreconditionError(
          `image ${ref} was pulled by the container runtime (${delegate.endpoint}), not by vmlet, so this VM pod cannot use it: ` +
            `pull it for the VM pod (runtime handler "vmlet" or the pod annotation kubernetes.io/target-runtime: virtlet.cloud), ` +
            `or add its registry or repository to --vm-image-prefixes (config key vm-image-prefixes) and pull it again`,
        );
      }
    };
  }
}

function encodedBytes(value: object, def: grpc.MethodDefinition<any, any>): Buffer {
  return value instanceof EncodedMessage ? value.bytes : def.responseSerialize(value);
}

function mergedStatus(mine: UnaryHandler, theirs: UnaryHandler, def: grpc.MethodDefinition<any, any>, endpoint: string): UnaryHandler {
  return async (req, ctx) => {
    const [own, other] = await Promise.all([
      mine(req, ctx) as Promise<StatusResponse>,
      theirs(req, ctx).then(
        (m): DelegateStatus => ({ ok: true, response: def.responseDeserialize((m as EncodedMessage).bytes) as StatusResponse }),
        (err: unknown): DelegateStatus => ({ ok: false, code: err instanceof DelegateError ? err.code : Code.UNKNOWN, message: errorText(err) }),
      ),
    ]);
    return mergeStatus(own, other, endpoint);
  };
}

/** UpdateRuntimeConfig: both runtimes need the pod CIDR; vmlet validates it first. */
function both(mine: UnaryHandler, theirs: UnaryHandler): UnaryHandler {
  return async (req, ctx) => {
    await mine(req, ctx);
    await theirs(req, ctx);
    return {};
  };
}
