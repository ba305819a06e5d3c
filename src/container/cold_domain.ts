/** The cold path: a container's VM as a new libvirt domain, defined from its spec (started by StartContainer). */
import { basename, join } from 'node:path';
import type { DomainRef } from '../libvirt/client.js';
import { buildDomainXml } from '../libvirt/domain_xml.js';
import type { VmAnnotations } from '../guest/annotations.js';
import type { VmNetwork } from '../network/types.js';
import type { SandboxRecord } from '../sandbox/records.js';
import type { DataDisk, Share } from '../libvirt/domain_spec.js';
import { domainOps, type ContainerContext } from './context.js';
import { buildVmSpec } from './domain_spec_builder.js';
import { CONSOLE_RAW, OVERLAY, SEED } from './layout.js';
import type { ContainerRecord } from './records.js';

export interface ColdDomainInputs {
  sandbox: SandboxRecord;
  annotations: VmAnnotations;
  /** The pod gave VirtletVCPUCount (it then overrides the CPU limit). */
  vcpuAnnotationGiven: boolean;
  network: VmNetwork;
  shares: Share[];
  dataDisks: DataDisk[];
}

/** Builds the domain of `record` (its disks in record.dir), records its shape in record.vm, and defines it. */
export async function defineColdDomain(ctx: ContainerContext, record: ContainerRecord, inputs: ColdDomainInputs): Promise<DomainRef> {
  const { sandbox, annotations, network } = inputs;
  const vmSpec = buildVmSpec(
    {
      containerId: record.id,
      sandboxId: sandbox.id,
      owner: ctx.owner,
      domainName: record.domainName,
      domainUuid: record.domainUuid,
      resources: record.resources,
      annotations,
      network,
      netnsName: basename(sandbox.netnsPath!),
      overlayPath: join(record.dir, OVERLAY),
      ...(record.persistentRoot ? { persistentRoot: record.persistentRoot } : {}),
      seedPath: join(record.dir, SEED),
      consolePath: join(record.dir, CONSOLE_RAW),
      socketDir: ctx.qmpDir,
      shares: inputs.shares,
      dataDisks: inputs.dataDisks,
    },
    ctx.host,
    inputs.vcpuAnnotationGiven,
  );
  record.vm = { memoryBytes: vmSpec.memoryBytes, vcpus: vmSpec.vcpus, domainType: vmSpec.domainType };
  return domainOps(ctx).defineXml(buildDomainXml(vmSpec));
}
