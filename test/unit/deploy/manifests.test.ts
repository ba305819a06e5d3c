/** deploy/*.yaml validated offline against the Kubernetes API schemas (kubernetes-models, ajv). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { RuntimeClass } from 'kubernetes-models/node.k8s.io/v1/RuntimeClass';
import { REPO_ROOT } from '../../helpers/daemon.js';

const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  'apps/v1/DaemonSet': DaemonSet,
  'v1/Namespace': Namespace,
  'node.k8s.io/v1/RuntimeClass': RuntimeClass,
};

function documents(file: string): any[] {
  return parseAllDocuments(readFileSync(join(REPO_ROOT, 'deploy', file), 'utf8')).map((d) => {
    assert.deepEqual(d.errors, [], `${file}: YAML errors`);
    return d.toJS();
  });
}

function validate(doc: any): void {
  const Model = MODELS[`${doc.apiVersion}/${doc.kind}`];
  assert.ok(Model, `no schema for ${doc.apiVersion} ${doc.kind}`);
  new Model(doc).validate();
}

test('every manifest under deploy/ is valid against its Kubernetes schema', () => {
  const docs = [...documents('runtimeclass.yaml'), ...documents('daemonset.yaml')];
  assert.deepEqual(docs.map((d) => d.kind), ['RuntimeClass', 'Namespace', 'DaemonSet']);
  for (const doc of docs) validate(doc);
});

test('the RuntimeClass is vmlet with handler vmlet; the DaemonSet is privileged with host PID and network and the host paths vmlet needs', () => {
  const [rc] = documents('runtimeclass.yaml');
  assert.equal(rc.metadata.name, 'vmlet');
  assert.equal(rc.handler, 'vmlet');
  const ds = documents('daemonset.yaml').find((d) => d.kind === 'DaemonSet');
  const pod = ds.spec.template.spec;
  assert.equal(pod.hostPID, true);
  assert.equal(pod.hostNetwork, true);
  assert.equal(pod.containers[0].securityContext.privileged, true);
  const hostPaths = pod.volumes.map((v: { hostPath: { path: string } }) => v.hostPath.path);
  for (const p of ['/run/vmlet', '/var/lib/vmlet', '/run/libvirt', '/run/netns', '/usr/local/lib/vmlet', '/var/log/pods', '/etc/cni/net.d', '/run/containerd']) {
    assert.ok(hostPaths.includes(p), `hostPath ${p}`);
  }
  // Each host path is mounted at the same path: libvirtd and kubelet resolve them on the host.
  const mounts = Object.fromEntries(pod.containers[0].volumeMounts.map((m: { name: string; mountPath: string }) => [m.name, m.mountPath]));
  for (const v of pod.volumes) if (v.name !== 'dev' && v.name !== 'modules') assert.equal(mounts[v.name], v.hostPath.path, v.name);
});

test('the schema check fails a broken manifest', () => {
  const ds = documents('daemonset.yaml').find((d) => d.kind === 'DaemonSet');
  ds.spec.template.spec.containers[0].securityContext.privileged = 'yes';
  assert.throws(() => validate(ds), /privileged must be boolean/);
  const rc = documents('runtimeclass.yaml')[0];
  delete rc.handler;
  assert.throws(() => validate(rc), /handler/);
});
