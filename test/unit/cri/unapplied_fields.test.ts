import { test } from 'node:test';
import assert from 'node:assert/strict';
import { reviewContainerConfig, reviewSandboxConfig } from '../../../src/cri/unapplied_fields.js';
import { InvalidArgumentError } from '../../../src/errors.js';

type C = Parameters<typeof reviewContainerConfig>[0];
type S = Parameters<typeof reviewSandboxConfig>[0];
const container = (linux: unknown, extra: Record<string, unknown> = {}) => ({ metadata: { name: 'c' }, command: [], args: [], envs: [], mounts: [], devices: [], CDI_devices: [], linux, ...extra }) as unknown as C;
const sandbox = (linux: unknown, extra: Record<string, unknown> = {}) => ({ metadata: { name: 'p' }, linux, ...extra }) as unknown as S;
const refused = (fn: () => unknown, re: RegExp) => assert.throws(fn, (err: unknown) => err instanceof InvalidArgumentError && re.test(err.message));

test('a bare container config has nothing unapplied', () => {
  assert.deepEqual(reviewContainerConfig(container(undefined)), []);
  assert.deepEqual(reviewContainerConfig(container({ resources: { cpu_shares: '512', memory_limit_in_bytes: '134217728' } })), []);
});

test("kubelet's usual security context is accepted and each field it cannot apply is named", () => {
  const names = reviewContainerConfig(container({
    security_context: {
      namespace_options: { pid: 'CONTAINER' },
      run_as_user: { value: '1000' },
      run_as_group: { value: '1000' },
      masked_paths: ['/proc/kcore'],
      readonly_paths: ['/proc/sys'],
      seccomp: { profile_type: 'RuntimeDefault' },
      capabilities: { add_capabilities: [], drop_capabilities: ['ALL'], add_ambient_capabilities: [] },
      no_new_privs: true,
      supplemental_groups: [],
    },
    resources: { oom_score_adj: '1000', hugepage_limits: [] },
  }, { stdin_once: true, stop_signal: 'SIGTERM', command: ['/bin/sh'], args: ['-c', 'top'], working_dir: '/' }));
  assert.deepEqual(names.map((n) => n.split(' ')[0]), [
    'config.command',
    'config.args',
    'config.working_dir',
    'config.stdin_once',
    'config.stop_signal',
    'config.linux.resources.oom_score_adj',
    'config.linux.security_context.run_as_user',
    'config.linux.security_context.run_as_group',
    'config.linux.security_context.seccomp',
    'config.linux.security_context.capabilities',
    'config.linux.security_context.no_new_privs',
    'config.linux.security_context.masked_paths',
    'config.linux.security_context.readonly_paths',
  ]);
});

test('an unconfined seccomp or AppArmor profile asks for nothing and is not named', () => {
  assert.deepEqual(reviewContainerConfig(container({ security_context: { seccomp: { profile_type: 'Unconfined' }, apparmor: { profile_type: 'Unconfined' }, seccomp_profile_path: 'unconfined' } })), []);
});

test('contradictions and what no VM can give are refused', () => {
  refused(() => reviewContainerConfig(container({ security_context: { run_as_group: { value: '10' } } })), /run_as_group is set without run_as_user/);
  assert.doesNotThrow(() => reviewContainerConfig(container({ security_context: { run_as_group: { value: '10' }, run_as_username: 'web' } })));
  refused(() => reviewContainerConfig(container({ security_context: { seccomp_profile_path: 'my-profile' } })), /seccomp_profile_path "my-profile" is not one of/);
  assert.doesNotThrow(() => reviewContainerConfig(container({ security_context: { seccomp_profile_path: 'localhost/profile.json' } })));
  refused(() => reviewContainerConfig(container({ security_context: { apparmor_profile: 'x' } })), /apparmor_profile "x"/);
  refused(() => reviewContainerConfig(container({ security_context: { seccomp: { profile_type: 'Localhost' } } })), /Localhost needs localhost_ref/);
  refused(() => reviewContainerConfig(container({ security_context: { seccomp: { profile_type: 'RuntimeDefault', localhost_ref: '/x' } } })), /localhost_ref is set but profile_type is RuntimeDefault/);
  refused(() => reviewContainerConfig(container({ security_context: { namespace_options: { pid: 'NODE' } } })), /pid NODE is not supported/);
  refused(() => reviewContainerConfig(container({ security_context: { namespace_options: { ipc: 'NODE' } } })), /ipc NODE is not supported/);
  refused(() => reviewContainerConfig(container({ security_context: { namespace_options: { pid: 'TARGET', target_id: 'abc' } } })), /pid TARGET is not supported/);
  refused(() => reviewContainerConfig(container({ security_context: { namespace_options: { userns_options: { mode: 'POD' } } } })), /user namespaces are not supported/);
  refused(() => reviewContainerConfig(container(undefined, { windows: { resources: {} } })), /config\.windows is set/);
});

test('pod-level fields: cgroup_parent, sysctls and the security context are named; host namespaces refused', () => {
  assert.deepEqual(reviewSandboxConfig(sandbox(undefined)), []);
  assert.deepEqual(reviewSandboxConfig(sandbox({ security_context: { namespace_options: {} } })), []);
  const names = reviewSandboxConfig(sandbox({
    cgroup_parent: '/kubepods/besteffort/pod1',
    sysctls: { 'net.ipv4.ip_forward': '1' },
    security_context: { privileged: true, run_as_user: { value: '0' }, selinux_options: { type: 'spc_t' } },
  }));
  assert.deepEqual(names.map((n) => n.split(' ')[0]), [
    'config.linux.cgroup_parent',
    'config.linux.sysctls',
    'config.linux.security_context.privileged',
    'config.linux.security_context.selinux_options',
    'config.linux.security_context.run_as_user',
  ]);
  refused(() => reviewSandboxConfig(sandbox({ security_context: { namespace_options: { pid: 'NODE' } } })), /pid NODE is not supported/);
  refused(() => reviewSandboxConfig(sandbox({ security_context: { run_as_group: { value: '5' } } })), /run_as_group is set without run_as_user/);
});
