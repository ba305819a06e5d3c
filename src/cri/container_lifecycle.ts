/** StartContainer, StopContainer, RemoveContainer. */
import type { StartContainerRequest__Output } from './generated/runtime/v1/StartContainerRequest.js';
import type { StopContainerRequest__Output } from './generated/runtime/v1/StopContainerRequest.js';
import type { RemoveContainerRequest__Output } from './generated/runtime/v1/RemoveContainerRequest.js';
import { InvalidArgumentError } from '../errors.js';
import type { ContainerService } from '../container/service.js';
import type { HandlerMap } from './rpc.js';
import { checkIdOrPrefix } from './validate.js';

/** A day: kubelet's grace periods are far shorter; anything longer is a malformed request. */
const MAX_STOP_TIMEOUT_S = 86_400n;

export function containerLifecycleHandlers(containers: ContainerService): HandlerMap {
  return {
    async StartContainer(req: StartContainerRequest__Output): Promise<object> {
      await containers.start(checkIdOrPrefix(req.container_id, 'container_id'));
      return {};
    },
    async StopContainer(req: StopContainerRequest__Output): Promise<object> {
      const timeout = BigInt(req.timeout ?? '0');
      if (timeout < 0n || timeout > MAX_STOP_TIMEOUT_S) throw new InvalidArgumentError(`timeout ${timeout} is out of range (0..${MAX_STOP_TIMEOUT_S} s)`);
      await containers.stop(checkIdOrPrefix(req.container_id, 'container_id'), Number(timeout));
      return {};
    },
    async RemoveContainer(req: RemoveContainerRequest__Output): Promise<object> {
      await containers.remove(checkIdOrPrefix(req.container_id, 'container_id'));
      return {};
    },
  };
}
