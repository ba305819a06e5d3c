/** cputune (CPU shares, CFS period and quota) as libvirt scheduler parameters. Pure. */
import type { TypedParam } from './client.js';
import { SchedulerParam } from './client.js';
import type { CpuTune } from './domain_spec.js';

/** As UpdateContainerResources and a warm VM's adoption send them. */
export function schedulerParams(tune: CpuTune): TypedParam[] {
  const params: TypedParam[] = [];
  if (tune.shares !== undefined) params.push({ field: SchedulerParam.CPU_SHARES, type: 'ullong', value: BigInt(tune.shares) });
  if (tune.period !== undefined) params.push({ field: SchedulerParam.VCPU_PERIOD, type: 'ullong', value: BigInt(tune.period) });
  if (tune.quota !== undefined) params.push({ field: SchedulerParam.VCPU_QUOTA, type: 'llong', value: BigInt(tune.quota) });
  return params;
}
