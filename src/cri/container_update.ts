/** UpdateContainerResources (live vCPU/memory/cputune tuning through libvirt) and ReopenContainerLog. */
import type { UpdateContainerResourcesRequest__Output } from './generated/runtime/v1/UpdateContainerResourcesRequest.js';
import type { ReopenContainerLogRequest__Output } from './generated/runtime/v1/ReopenContainerLogRequest.js';
import { FailedPreconditionError, InvalidArgumentError, errorText } from '../errors.js';
import type { ContainerService } from '../container/service.js';
import type { LibvirtConnection } from '../libvirt/connection.js';
import { DomainAffect } from '../libvirt/client.js';
import { schedulerParams } from '../container/service.js';
import { cputuneFor } from '../container/domain_spec_builder.js';
import { resourcesFrom } from './container_create.js';
import type { HandlerMap } from './rpc.js';
import { checkIdOrPrefix } from './validate.js';

export function containerUpdateHandlers(containers: ContainerService, libvirt: LibvirtConnection): HandlerMap {
  return {
    async UpdateContainerResources(req: UpdateContainerResourcesRequest__Output): Promise<object> {
      const id = checkIdOrPrefix(req.container_id, 'container_id');
      if (!req.linux) throw new InvalidArgumentError('linux resources are required (vmlet runs Linux VMs)');
      const wanted = resourcesFrom(req.linux);
      await containers.updateResources(id, wanted, async (dom, r) => {
        const client = libvirt.current();
        const running = r.state === 'RUNNING';
        const affect = running ? DomainAffect.LIVE | DomainAffect.CONFIG : DomainAffect.CONFIG;
        if (wanted.memoryLimitInBytes && BigInt(wanted.memoryLimitInBytes) !== BigInt(r.vm.memoryBytes)) {
          const kib = (BigInt(wanted.memoryLimitInBytes) + 1023n) / 1024n;
          if (kib * 1024n > BigInt(r.vm.memoryBytes)) {
            throw new FailedPreconditionError(`memory of a VM can shrink but not grow past the ${r.vm.memoryBytes} bytes it was created with`);
          }
          await apply('memory', () => client.setMemoryFlags(dom, kib, affect));
        }
        const params = schedulerParams(cputuneFor(wanted));
        if (params.length > 0) await apply('CPU tuning', () => client.setSchedulerParametersFlags(dom, params, affect));
      });
      return {};
    },

    async ReopenContainerLog(req: ReopenContainerLogRequest__Output): Promise<object> {
      await containers.reopenLog(checkIdOrPrefix(req.container_id, 'container_id'));
      return {};
    },
  };
}

async function apply(what: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    throw new FailedPreconditionError(`libvirt cannot change the VM's ${what}: ${errorText(err)}`);
  }
}
