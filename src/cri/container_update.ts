/** UpdateContainerResources (live vCPU/memory/cputune tuning, src/container/update.ts) and ReopenContainerLog. */
import type { UpdateContainerResourcesRequest__Output } from './generated/runtime/v1/UpdateContainerResourcesRequest.js';
import type { ReopenContainerLogRequest__Output } from './generated/runtime/v1/ReopenContainerLogRequest.js';
import { InvalidArgumentError } from '../errors.js';
import type { ContainerService } from '../container/service.js';
import { resourcesFrom } from './container_create.js';
import type { HandlerMap } from './rpc.js';
import { checkIdOrPrefix } from './validate.js';

export function containerUpdateHandlers(containers: ContainerService): HandlerMap {
  return {
    async UpdateContainerResources(req: UpdateContainerResourcesRequest__Output): Promise<object> {
      const id = checkIdOrPrefix(req.container_id, 'container_id');
      if (!req.linux) throw new InvalidArgumentError('linux resources are required (vmlet runs Linux VMs)');
      await containers.updateResources(id, resourcesFrom(req.linux));
      return {};
    },

    async ReopenContainerLog(req: ReopenContainerLogRequest__Output): Promise<object> {
      await containers.reopenLog(checkIdOrPrefix(req.container_id, 'container_id'));
      return {};
    },
  };
}
