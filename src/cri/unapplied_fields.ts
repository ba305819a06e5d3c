/**
 * The CRI fields a VM pod cannot apply, reviewed before anything is made: each is refused
 * (INVALID_ARGUMENT, when the request contradicts itself or asks for something no VM can give) or
 * named in the list the handler logs as one warning, so nothing is dropped silently. Pure.
 *
 * Most of a container's Linux security context confines the container's processes on the host's
 * kernel (capabilities, seccomp, AppArmor, SELinux, masked /proc paths, the user it runs as). A VM
 * pod's processes run on the guest's own kernel under the guest's init; vmlet confines QEMU itself
 * (docs/vmwrapper.md) and does not reach into the guest to confine its processes.
 */
import type { ContainerConfig__Output } from './generated/runtime/v1/ContainerConfig.js';
import type { LinuxContainerResources__Output } from './generated/runtime/v1/LinuxContainerResources.js';
import type { LinuxContainerSecurityContext__Output } from './generated/runtime/v1/LinuxContainerSecurityContext.js';
import type { LinuxSandboxSecurityContext__Output } from './generated/runtime/v1/LinuxSandboxSecurityContext.js';
import type { NamespaceOption__Output } from './generated/runtime/v1/NamespaceOption.js';
import type { PodSandboxConfig__Output } from './generated/runtime/v1/PodSandboxConfig.js';
import type { SecurityProfile__Output } from './generated/runtime/v1/SecurityProfile.js';
import { InvalidArgumentError } from '../errors.js';

/** The legacy seccomp/AppArmor profile strings CRI defines, besides `localhost/<ref>`. */
const SECCOMP_PATHS = new Set(['', 'unconfined', 'runtime/default', 'docker/default']);
const APPARMOR_PROFILES = new Set(['', 'unconfined', 'runtime/default']);

/**
 * Reviews a CreateContainer config: throws for what must be refused, returns the names of set
 * fields vmlet accepts but does not apply (for one warning line naming them).
 */
export function reviewContainerConfig(c: ContainerConfig__Output): string[] {
  if (c.windows) throw new InvalidArgumentError('config.windows is set: vmlet runs Linux VMs');
  const unapplied: string[] = [];
  // The VM boots its disk's own init: there is no process of the container's command to start.
  if ((c.command?.length ?? 0) > 0) unapplied.push('config.command (the VM boots its image; run commands through cloud-init user-data)');
  if ((c.args?.length ?? 0) > 0) unapplied.push('config.args');
  if (c.working_dir) unapplied.push('config.working_dir');
  if (c.stdin_once) unapplied.push('config.stdin_once (a VM console stays open to later attaches)');
  if (c.stop_signal !== undefined && String(c.stop_signal) !== 'RUNTIME_DEFAULT') {
    unapplied.push(`config.stop_signal ${String(c.stop_signal)} (StopContainer asks the guest to power off by ACPI)`);
  }
  unapplied.push(...reviewResources(c.linux?.resources, 'config.linux.resources'));
  const sc = c.linux?.security_context;
  if (sc) unapplied.push(...reviewContainerSecurity(sc));
  return unapplied;
}

/** Reviews a RunPodSandbox config's Linux part the same way. hostNetwork is refused by the caller. */
export function reviewSandboxConfig(config: PodSandboxConfig__Output): string[] {
  if (config.windows) throw new InvalidArgumentError('config.windows is set: vmlet runs Linux VMs');
  const linux = config.linux;
  if (!linux) return [];
  const unapplied: string[] = [];
  // kubelet sets cgroup_parent on every pod; QEMU runs in libvirt's machine cgroup instead.
  if (linux.cgroup_parent) unapplied.push('config.linux.cgroup_parent (QEMU runs in libvirt\'s machine cgroup)');
  if (Object.keys(linux.sysctls ?? {}).length > 0) {
    unapplied.push(`config.linux.sysctls ${Object.keys(linux.sysctls ?? {}).join(',')} (the guest kernel keeps its own)`);
  }
  if (linux.overhead && hasResources(linux.overhead)) unapplied.push('config.linux.overhead');
  if (linux.resources && hasResources(linux.resources)) unapplied.push('config.linux.resources (the VM is sized by its container)');
  const sc = linux.security_context;
  if (sc) unapplied.push(...reviewSandboxSecurity(sc));
  return unapplied;
}

function reviewContainerSecurity(sc: LinuxContainerSecurityContext__Output): string[] {
  const at = 'config.linux.security_context';
  refuseHostNamespaces(sc.namespace_options, at);
  refuseGroupWithoutUser(sc.run_as_group, sc.run_as_user, sc.run_as_username, at);
  checkLegacyProfile(sc.seccomp_profile_path, SECCOMP_PATHS, `${at}.seccomp_profile_path`);
  checkLegacyProfile(sc.apparmor_profile, APPARMOR_PROFILES, `${at}.apparmor_profile`);
  checkProfile(sc.seccomp, `${at}.seccomp`);
  checkProfile(sc.apparmor, `${at}.apparmor`);
  const unapplied = commonSecurity(sc, at);
  if ((sc.capabilities?.add_capabilities?.length ?? 0) > 0 || (sc.capabilities?.drop_capabilities?.length ?? 0) > 0
    || (sc.capabilities?.add_ambient_capabilities?.length ?? 0) > 0) unapplied.push(`${at}.capabilities`);
  if (sc.no_new_privs) unapplied.push(`${at}.no_new_privs`);
  if ((sc.masked_paths?.length ?? 0) > 0) unapplied.push(`${at}.masked_paths`);
  if ((sc.readonly_paths?.length ?? 0) > 0) unapplied.push(`${at}.readonly_paths`);
  if (sc.run_as_username) unapplied.push(`${at}.run_as_username`);
  return unapplied;
}

function reviewSandboxSecurity(sc: LinuxSandboxSecurityContext__Output): string[] {
  const at = 'config.linux.security_context';
  refuseHostNamespaces(sc.namespace_options, at);
  refuseGroupWithoutUser(sc.run_as_group, sc.run_as_user, undefined, at);
  checkLegacyProfile(sc.seccomp_profile_path, SECCOMP_PATHS, `${at}.seccomp_profile_path`);
  checkProfile(sc.seccomp, `${at}.seccomp`);
  checkProfile(sc.apparmor, `${at}.apparmor`);
  return commonSecurity(sc, at);
}

type CommonSecurity = Pick<LinuxSandboxSecurityContext__Output,
  'privileged' | 'selinux_options' | 'run_as_user' | 'run_as_group' | 'readonly_rootfs' | 'supplemental_groups' | 'seccomp_profile_path' | 'seccomp' | 'apparmor'>;

function commonSecurity(sc: CommonSecurity, at: string): string[] {
  const unapplied: string[] = [];
  if (sc.privileged) unapplied.push(`${at}.privileged (a VM gets no host devices)`);
  const se = sc.selinux_options;
  if (se && (se.user || se.role || se.type || se.level)) unapplied.push(`${at}.selinux_options`);
  if (sc.run_as_user) unapplied.push(`${at}.run_as_user`);
  if (sc.run_as_group) unapplied.push(`${at}.run_as_group`);
  if (sc.readonly_rootfs) unapplied.push(`${at}.readonly_rootfs`);
  if ((sc.supplemental_groups?.length ?? 0) > 0) unapplied.push(`${at}.supplemental_groups`);
  if (confines(sc.seccomp) || (sc.seccomp_profile_path ?? '') !== '' && sc.seccomp_profile_path !== 'unconfined') unapplied.push(`${at}.seccomp`);
  if (confines(sc.apparmor)) unapplied.push(`${at}.apparmor`);
  return unapplied;
}

/** A VM has its own PID, IPC and network namespaces by nature: it cannot join the host's. */
function refuseHostNamespaces(ns: NamespaceOption__Output | undefined, at: string): void {
  for (const kind of ['network', 'pid', 'ipc'] as const) {
    if (String(ns?.[kind] ?? '') === 'NODE') {
      throw new InvalidArgumentError(`${at}.namespace_options.${kind} NODE is not supported: a VM cannot share the host's ${kind} namespace`);
    }
  }
  if (String(ns?.pid ?? '') === 'TARGET') {
    throw new InvalidArgumentError(`${at}.namespace_options.pid TARGET is not supported: each VM pod has one guest, so there is no other container's PID namespace to join`);
  }
  if (ns?.userns_options && String(ns.userns_options.mode ?? 'NODE') !== 'NODE') {
    throw new InvalidArgumentError(`${at}.namespace_options.userns_options: user namespaces are not supported for VM pods`);
  }
}

/** As the CRI API says and containerd enforces: a group without a user is refused. */
function refuseGroupWithoutUser(group: unknown, user: unknown, username: string | undefined, at: string): void {
  if (group && !user && !username) {
    throw new InvalidArgumentError(`${at}.run_as_group is set without run_as_user or run_as_username`);
  }
}

function checkLegacyProfile(value: string | undefined, known: ReadonlySet<string>, field: string): void {
  const v = value ?? '';
  if (known.has(v)) return;
  if (v.startsWith('localhost/') && v.length > 'localhost/'.length) return;
  throw new InvalidArgumentError(`${field} ${JSON.stringify(v.slice(0, 256))} is not one of ${[...known].filter(Boolean).join(', ')} or localhost/<profile>`);
}

function checkProfile(p: SecurityProfile__Output | undefined, field: string): void {
  if (!p) return;
  const type = String(p.profile_type ?? 'RuntimeDefault');
  if (type === 'Localhost' && !p.localhost_ref) throw new InvalidArgumentError(`${field}: profile_type Localhost needs localhost_ref`);
  if (type !== 'Localhost' && p.localhost_ref) throw new InvalidArgumentError(`${field}: localhost_ref is set but profile_type is ${type}`);
}

function confines(p: SecurityProfile__Output | undefined): boolean {
  return p !== undefined && p !== null && String(p.profile_type ?? 'RuntimeDefault') !== 'Unconfined';
}

function reviewResources(r: LinuxContainerResources__Output | undefined, at: string): string[] {
  if (!r) return [];
  const unapplied: string[] = [];
  const set = (v: string | undefined) => v !== undefined && v !== '' && v !== '0';
  if (r.cpuset_cpus) unapplied.push(`${at}.cpuset_cpus`);
  if (r.cpuset_mems) unapplied.push(`${at}.cpuset_mems`);
  if (set(r.oom_score_adj)) unapplied.push(`${at}.oom_score_adj`);
  if (set(r.memory_swap_limit_in_bytes)) unapplied.push(`${at}.memory_swap_limit_in_bytes`);
  if ((r.hugepage_limits?.length ?? 0) > 0) unapplied.push(`${at}.hugepage_limits`);
  if (Object.keys(r.unified ?? {}).length > 0) unapplied.push(`${at}.unified`);
  return unapplied;
}

function hasResources(r: LinuxContainerResources__Output): boolean {
  const set = (v: string | undefined) => v !== undefined && v !== '' && v !== '0';
  return set(r.cpu_period) || set(r.cpu_quota) || set(r.cpu_shares) || set(r.memory_limit_in_bytes) || set(r.oom_score_adj)
    || Boolean(r.cpuset_cpus) || Boolean(r.cpuset_mems) || (r.hugepage_limits?.length ?? 0) > 0 || Object.keys(r.unified ?? {}).length > 0;
}
