/** StopPodSandbox and RemovePodSandbox. */
import type { StopPodSandboxRequest__Output } from './generated/runtime/v1/StopPodSandboxRequest.js';
import type { RemovePodSandboxRequest__Output } from './generated/runtime/v1/RemovePodSandboxRequest.js';
import type { SandboxService } from '../sandbox/service.js';
import type { HandlerMap } from './rpc.js';
import { checkIdOrPrefix } from './validate.js';

export function sandboxLifecycleHandlers(sandboxes: SandboxService): HandlerMap {
  return {
    async StopPodSandbox(req: StopPodSandboxRequest__Output): Promise<object> {
      await sandboxes.stop(checkIdOrPrefix(req.pod_sandbox_id, 'pod_sandbox_id'));
      return {};
    },
    async RemovePodSandbox(req: RemovePodSandboxRequest__Output): Promise<object> {
      await sandboxes.remove(checkIdOrPrefix(req.pod_sandbox_id, 'pod_sandbox_id'));
      return {};
    },
  };
}
