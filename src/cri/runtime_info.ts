/** CRI verbs about the runtime itself: Version, Status, UpdateRuntimeConfig, RuntimeConfig. */
import type { VersionResponse } from './generated/runtime/v1/VersionResponse.js';
import type { StatusRequest__Output } from './generated/runtime/v1/StatusRequest.js';
import type { StatusResponse } from './generated/runtime/v1/StatusResponse.js';
import type { UpdateRuntimeConfigRequest__Output } from './generated/runtime/v1/UpdateRuntimeConfigRequest.js';
import type { RuntimeCondition } from './generated/runtime/v1/RuntimeCondition.js';
import { CRI_API_VERSION, RUNTIME_NAME, VMLET_VERSION } from '../version.js';
import { InvalidArgumentError } from '../errors.js';
import type { HandlerMap } from './rpc.js';
import type { Config } from '../config/table.js';
import type { RuntimeSettings } from '../store/runtime_settings.js';

export interface Readiness {
  ready: boolean;
  reason?: string;
  message?: string;
}

/** What Status asks of the rest of vmlet. */
export interface RuntimeHealth {
  runtime(): Promise<Readiness>;
  network(): Promise<Readiness>;
}

export function runtimeInfoHandlers(deps: { config: Config; health: RuntimeHealth; settings: RuntimeSettings }): HandlerMap {
  return {
    async Version(): Promise<VersionResponse> {
      // `version` is the version of the CRI API wire protocol kubelet checks, as containerd answers.
      return { version: '0.1.0', runtime_name: RUNTIME_NAME, runtime_version: VMLET_VERSION, runtime_api_version: CRI_API_VERSION };
    },

    async Status(req: StatusRequest__Output): Promise<StatusResponse> {
      const [runtime, network] = await Promise.all([deps.health.runtime(), deps.health.network()]);
      const conditions: RuntimeCondition[] = [
        condition('RuntimeReady', runtime, 'LibvirtNotReady'),
        condition('NetworkReady', network, 'NetworkPluginNotReady'),
      ];
      const response: StatusResponse = { status: { conditions } };
      if (req.verbose) {
        response.info = {
          config: JSON.stringify(deps.config),
          runtimeSettings: JSON.stringify(deps.settings.current()),
        };
      }
      return response;
    },

    async UpdateRuntimeConfig(req: UpdateRuntimeConfigRequest__Output): Promise<object> {
      const cidr = req.runtime_config?.network_config?.pod_cidr ?? '';
      if (cidr !== '') {
        for (const one of cidr.split(',')) {
          if (!isCidr(one.trim())) throw new InvalidArgumentError(`pod_cidr ${JSON.stringify(cidr)} is not a CIDR or a comma-separated list of CIDRs`);
        }
      }
      await deps.settings.setPodCidr(cidr);
      return {};
    },
  };
}

function condition(type: string, r: Readiness, defaultReason: string): RuntimeCondition {
  if (r.ready) return { type, status: true };
  return { type, status: false, reason: r.reason ?? defaultReason, message: r.message ?? '' };
}

export function isCidr(value: string): boolean {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(value);
  if (v4) return v4.slice(1, 5).every((o) => Number(o) <= 255) && Number(v4[5]) <= 32;
  const v6 = /^([0-9a-fA-F:]+)\/(\d{1,3})$/.exec(value);
  return v6 !== null && v6[1]!.includes(':') && Number(v6[2]) <= 128;
}
