import { test } from 'node:test';
import assert from 'node:assert/strict';
import { delegatingHandlers, type VmletOwnership } from '../../../src/delegate/router.js';
import { DelegateError, type Delegate, type CriServiceName } from '../../../src/delegate/client.js';
import { imageSide, isVmPod, idSide, matchesVmImagePrefix } from '../../../src/delegate/routing.js';
import { mergeStatus } from '../../../src/delegate/merge.js';
import { loadCriServices } from '../../../src/cri/proto.js';
import { EncodedMessage } from '../../../src/cri/encoded_list.js';
import type { CallContext, HandlerMap } from '../../../src/cri/rpc.js';
import { createLogger } from '../../../src/log.js';
import { Code, NotFoundError } from '../../../src/errors.js';

const { runtimeService, imageService } = loadCriServices();
const logger = createLogger('silent');
const ctx: CallContext = { signal: new AbortController().signal, method: 'test', log: logger };

/** A delegate that answers from a table of canned responses (encoded like the real one) and records calls. */
class FakeDelegate implements Delegate {
  readonly endpoint = 'unix:///fake.sock';
  calls: { service: CriServiceName; method: string; request: object }[] = [];
  down = false;
  constructor(private readonly answers: Record<string, object | DelegateError>) {}
  async call(service: CriServiceName, method: string, request: object): Promise<Buffer> {
    this.calls.push({ service, method, request });
    if (this.down) throw new DelegateError(14, 'connect ECONNREFUSED');
    const answer = this.answers[method];
    if (answer instanceof DelegateError) throw answer;
    const def = (service === 'runtime' ? runtimeService : imageService) as unknown as Record<string, { responseSerialize(v: object): Buffer }>;
    return def[method]!.responseSerialize(answer ?? {});
  }
  close(): void {}
}

const VM_SANDBOX = 'a'.repeat(64);
const VM_CONTAINER = 'b'.repeat(64);
const CTR_SANDBOX = 'c'.repeat(64);

function setup(answers: Record<string, object | DelegateError> = {}, vmImagePrefixes: string[] = []) {
  const delegate = new FakeDelegate(answers);
  const vmletCalls: string[] = [];
  const record = (name: string, answer: object = {}) => async () => {
    vmletCalls.push(name);
    return answer;
  };
  const runtime: HandlerMap = {
    Version: record('Version', { runtime_name: 'vmlet' }),
    RunPodSandbox: record('RunPodSandbox', { pod_sandbox_id: VM_SANDBOX }),
    PodSandboxStatus: record('PodSandboxStatus', { status: { id: VM_SANDBOX } }),
    StopContainer: record('StopContainer'),
    CreateContainer: async (req: any) => {
      vmletCalls.push('CreateContainer');
      throw new NotFoundError(`image ${req.config.image.image} is not present; pull it first`);
    },
    ListPodSandbox: record('ListPodSandbox', { items: [{ id: VM_SANDBOX, runtime_handler: 'vmlet' }] }),
    ListContainers: async () => {
      vmletCalls.push('ListContainers');
      // vmlet's list handlers may answer pre-encoded bytes.
      return new EncodedMessage(runtimeService.ListContainers.responseSerialize({ containers: [{ id: VM_CONTAINER }] }));
    },
    Status: record('Status', { status: { conditions: [{ type: 'RuntimeReady', status: true }, { type: 'NetworkReady', status: true }] } }),
  };
  const image: HandlerMap = {
    PullImage: record('PullImage', { image_ref: 'sha256:vm' }),
    ListImages: record('ListImages', { images: [{ id: 'sha256:' + '1'.repeat(64), repo_tags: ['vm:latest'] }] }),
    ImageFsInfo: record('ImageFsInfo', { image_filesystems: [{ fs_id: { mountpoint: '/var/lib/vmlet/images' } }] }),
  };
  const owns: VmletOwnership = {
    sandbox: (id) => VM_SANDBOX.startsWith(id),
    container: (id) => VM_CONTAINER.startsWith(id),
    image: { held: (ref) => ref === 'held-vm-image', translated: async (name) => name === 'cirros' },
  };
  const handlers = delegatingHandlers({ vmlet: { runtime, image }, delegate, owns, logger, vmImagePrefixes });
  const decode = (service: 'runtime' | 'image', method: string, value: object) => {
    const def = (service === 'runtime' ? runtimeService : imageService) as unknown as Record<string, { responseDeserialize(b: Buffer): any }>;
    assert.ok(value instanceof EncodedMessage, `${method} answers encoded bytes`);
    return def[method]!.responseDeserialize(value.bytes);
  };
  return { handlers, delegate, vmletCalls, decode };
}

test('RunPodSandbox: handler vmlet or the Virtlet annotation is a VM pod; everything else goes to the delegate unchanged', async () => {
  const { handlers, delegate, vmletCalls, decode } = setup({ RunPodSandbox: { pod_sandbox_id: CTR_SANDBOX } });
  await handlers.runtime.RunPodSandbox!({ runtime_handler: 'vmlet', config: {} }, ctx);
  await handlers.runtime.RunPodSandbox!({ runtime_handler: '', config: { annotations: { 'kubernetes.io/target-runtime': 'virtlet.cloud' } } }, ctx);
  assert.deepEqual(vmletCalls, ['RunPodSandbox', 'RunPodSandbox']);
  const request = { runtime_handler: 'runc', config: { metadata: { name: 'p' }, annotations: { a: 'b' } } };
  const answer = await handlers.runtime.RunPodSandbox!(request, ctx);
  assert.equal(decode('runtime', 'RunPodSandbox', answer).pod_sandbox_id, CTR_SANDBOX);
  assert.deepEqual(delegate.calls, [{ service: 'runtime', method: 'RunPodSandbox', request }]);
});

test('calls on an id go to its owner: vmlet when its records know the id (or a prefix of it), the delegate otherwise', async () => {
  const { handlers, delegate, vmletCalls } = setup();
  await handlers.runtime.PodSandboxStatus!({ pod_sandbox_id: VM_SANDBOX.slice(0, 12) }, ctx);
  await handlers.runtime.StopContainer!({ container_id: VM_CONTAINER }, ctx);
  await handlers.runtime.PodSandboxStatus!({ pod_sandbox_id: CTR_SANDBOX }, ctx);
  await handlers.runtime.StopContainer!({ container_id: 'd'.repeat(64) }, ctx);
  // A missing id stays with vmlet, whose validation answers INVALID_ARGUMENT.
  await handlers.runtime.PodSandboxStatus!({}, ctx);
  assert.deepEqual(vmletCalls, ['PodSandboxStatus', 'StopContainer', 'PodSandboxStatus']);
  assert.deepEqual(delegate.calls.map((c) => c.method), ['PodSandboxStatus', 'StopContainer']);
  // A VM-side call vmlet has no handler for answers UNIMPLEMENTED, not the delegate's answer.
  await assert.rejects(handlers.runtime.Exec!({ container_id: VM_CONTAINER }, ctx), (e: { code: number }) => e.code === 12);
});

test('lists merge both sides; a filter naming one id asks only its owner', async () => {
  const { handlers, delegate, decode } = setup({
    ListPodSandbox: { items: [{ id: CTR_SANDBOX, runtime_handler: '' }] },
    ListContainers: { containers: [{ id: 'e'.repeat(64) }] },
    ListImages: { images: [{ id: 'sha256:' + '2'.repeat(64), repo_tags: ['busybox:1'] }] },
    ImageFsInfo: { image_filesystems: [{ fs_id: { mountpoint: '/var/lib/containerd' } }] },
  });
  assert.deepEqual(decode('runtime', 'ListPodSandbox', await handlers.runtime.ListPodSandbox!({}, ctx)).items.map((i: { id: string }) => i.id), [VM_SANDBOX, CTR_SANDBOX]);
  assert.deepEqual(decode('runtime', 'ListContainers', await handlers.runtime.ListContainers!({}, ctx)).containers.map((i: { id: string }) => i.id), [VM_CONTAINER, 'e'.repeat(64)]);
  assert.deepEqual(decode('image', 'ListImages', await handlers.image.ListImages!({}, ctx)).images.map((i: { repo_tags: string[] }) => i.repo_tags[0]), ['vm:latest', 'busybox:1']);
  assert.deepEqual(decode('image', 'ImageFsInfo', await handlers.image.ImageFsInfo!({}, ctx)).image_filesystems.map((f: { fs_id: { mountpoint: string } }) => f.fs_id.mountpoint), ['/var/lib/vmlet/images', '/var/lib/containerd']);
  // Filtered by a VM sandbox id: vmlet alone; by another id: the delegate alone.
  delegate.calls = [];
  await handlers.runtime.ListContainers!({ filter: { pod_sandbox_id: VM_SANDBOX } }, ctx);
  assert.equal(delegate.calls.length, 0);
  await handlers.runtime.ListPodSandbox!({ filter: { id: CTR_SANDBOX } }, ctx);
  assert.deepEqual(delegate.calls.map((c) => c.method), ['ListPodSandbox']);
});

test('delegate down: its calls answer UNAVAILABLE, lists answer vmlet\'s part, VM calls work, Status says which side is not ready', async () => {
  const { handlers, delegate, decode } = setup({ Status: { status: { conditions: [{ type: 'RuntimeReady', status: true }, { type: 'NetworkReady', status: true }] } } });
  delegate.down = true;
  await assert.rejects(handlers.runtime.RunPodSandbox!({ config: {} }, ctx), (e: { code: number }) => e.code === 14);
  await assert.rejects(handlers.runtime.PodSandboxStatus!({ pod_sandbox_id: CTR_SANDBOX }, ctx), (e: { code: number }) => e.code === 14);
  assert.deepEqual(decode('runtime', 'ListPodSandbox', await handlers.runtime.ListPodSandbox!({}, ctx)).items.map((i: { id: string }) => i.id), [VM_SANDBOX]);
  await handlers.runtime.PodSandboxStatus!({ pod_sandbox_id: VM_SANDBOX }, ctx);
  const status = (await handlers.runtime.Status!({}, ctx)) as { status: { conditions: { type: string; status: boolean; reason?: string }[] } };
  assert.deepEqual(status.status.conditions.map((c) => [c.type, c.status, c.reason]), [
    ['RuntimeReady', false, 'ContainerRuntimeUnavailable'],
    ['NetworkReady', false, 'ContainerRuntimeUnavailable'],
  ]);
  delegate.down = false;
  const up = (await handlers.runtime.Status!({}, ctx)) as { status: { conditions: { type: string; status: boolean }[] } };
  assert.ok(up.status.conditions.every((c) => c.status));
});

test('the delegate\'s errors pass through with their codes, also on merged lists', async () => {
  const { handlers } = setup({ ListContainers: new DelegateError(7, 'permission denied'), StartContainer: new DelegateError(5, 'no such container') });
  await assert.rejects(handlers.runtime.StartContainer!({ container_id: 'd'.repeat(64) }, ctx), (e: { code: number; message: string }) => e.code === 5 && /no such container/.test(e.message));
  await assert.rejects(handlers.runtime.ListContainers!({}, ctx), (e: { code: number }) => e.code === 7);
});

test('Version answers for vmlet alone', async () => {
  const { handlers, delegate } = setup();
  assert.deepEqual(await handlers.runtime.Version!({}, ctx), { runtime_name: 'vmlet' });
  assert.deepEqual(delegate.calls, []);
});

test('image routing by name: URLs, virtlet.cloud/, translated and held names, VM-pod pulls are vmlet\'s; other names the delegate\'s', async () => {
  const facts = { held: (r: string) => r === 'sha256:' + '1'.repeat(64), translated: async (n: string) => n === 'cirros' };
  assert.equal(await imageSide('http://h/x.qcow2', facts), 'vmlet');
  assert.equal(await imageSide('HTTPS://h/x.qcow2', facts), 'vmlet');
  assert.equal(await imageSide('virtlet.cloud/cirros', facts), 'vmlet');
  assert.equal(await imageSide('cirros', facts), 'vmlet');
  assert.equal(await imageSide('sha256:' + '1'.repeat(64), facts), 'vmlet');
  assert.equal(await imageSide('busybox:1.29', facts), 'delegate');
  assert.equal(await imageSide('docker.io/library/nginx', facts), 'delegate');
  assert.equal(await imageSide('vm-in-registry:1', facts, { runtimeHandler: 'vmlet' }), 'vmlet');
  assert.equal(await imageSide('vm-in-registry:1', facts, { podAnnotations: { 'kubernetes.io/target-runtime': 'virtlet.cloud' } }), 'vmlet');
  assert.equal(await imageSide('', facts), 'vmlet');
  assert.equal(isVmPod('runc', { 'kubernetes.io/target-runtime': 'other' }), false);
  assert.equal(idSide('abc', () => false), 'delegate');
});

test('PullImage of an OCI name goes to the delegate with the request unchanged; a URL stays with vmlet', async () => {
  const { handlers, delegate, vmletCalls } = setup({ PullImage: { image_ref: 'sha256:' + '3'.repeat(64) } });
  const request = { image: { image: 'busybox:1.29' }, sandbox_config: { metadata: { name: 'p' } } };
  await handlers.image.PullImage!(request, ctx);
  await handlers.image.PullImage!({ image: { image: 'https://example.invalid/vm.qcow2' } }, ctx);
  assert.deepEqual(delegate.calls, [{ service: 'image', method: 'PullImage', request }]);
  assert.deepEqual(vmletCalls, ['PullImage']);
});

test('mergeStatus keeps a condition true only when both sides say so and names the side that is not ready', () => {
  const vm = { status: { conditions: [{ type: 'RuntimeReady', status: true }, { type: 'NetworkReady', status: false, reason: 'NetworkPluginNotReady', message: 'no conf' }] }, info: { config: '{}' } };
  const merged = mergeStatus(vm, { ok: true, response: { status: { conditions: [{ type: 'RuntimeReady', status: false, reason: 'X', message: 'broken' }, { type: 'NetworkReady', status: true }] }, info: { config: 'ctd' } } }, 'unix:///c.sock');
  assert.deepEqual(merged, {
    status: { conditions: [
      { type: 'RuntimeReady', status: false, reason: 'X', message: 'container runtime unix:///c.sock: broken' },
      { type: 'NetworkReady', status: false, reason: 'NetworkPluginNotReady', message: 'no conf' },
    ] },
    info: { config: '{}', 'delegate.config': 'ctd' },
  });
});

test('VM image prefixes match at a name boundary only', () => {
  const prefixes = ['quay.io/containerdisks', 'registry.vm.test:5000', 'vms.test/'];
  assert.equal(matchesVmImagePrefix('quay.io/containerdisks/fedora:40', prefixes), 'quay.io/containerdisks');
  assert.equal(matchesVmImagePrefix('quay.io/containerdisks:1', prefixes), 'quay.io/containerdisks');
  assert.equal(matchesVmImagePrefix('quay.io/containerdisks@sha256:' + '1'.repeat(64), prefixes), 'quay.io/containerdisks');
  assert.equal(matchesVmImagePrefix('quay.io/containerdisks', prefixes), 'quay.io/containerdisks');
  assert.equal(matchesVmImagePrefix('quay.io/containerdisks-other/x:1', prefixes), undefined);
  assert.equal(matchesVmImagePrefix('quay.io/other/x:1', prefixes), undefined);
  assert.equal(matchesVmImagePrefix('registry.vm.test:5000/a/b:1', prefixes), 'registry.vm.test:5000');
  assert.equal(matchesVmImagePrefix('registry.vm.test:50001/a/b:1', prefixes), undefined);
  assert.equal(matchesVmImagePrefix('vms.test/x', prefixes), 'vms.test/');
  // A bare host prefix does not take another port of that host.
  assert.equal(matchesVmImagePrefix('vms.test:5000/x', ['vms.test']), undefined);
  assert.equal(matchesVmImagePrefix('vms.test/x', []), undefined);
});

test('imageSide: a name under a VM image prefix is a VM image for every image call; other names keep their side', async () => {
  const facts = { held: () => false, translated: async () => false };
  const prefixes = ['quay.io/containerdisks'];
  assert.equal(await imageSide('quay.io/containerdisks/fedora:40', facts, {}, prefixes), 'vmlet');
  assert.equal(await imageSide('quay.io/containerdisks/fedora:40', facts, {}, []), 'delegate');
  assert.equal(await imageSide('quay.io/other/x:1', facts, {}, prefixes), 'delegate');
  assert.equal(await imageSide('quay.io/other/x:1', facts, { runtimeHandler: 'vmlet' }, prefixes), 'vmlet');
});

test('PullImage of a name under --vm-image-prefixes goes to vmlet without pod context; other names to the delegate', async () => {
  const { handlers, delegate, vmletCalls } = setup({ PullImage: { image_ref: 'sha256:' + '3'.repeat(64) }, ImageStatus: {} }, ['127.0.0.1:5000/vmlet']);
  await handlers.image.PullImage!({ image: { image: '127.0.0.1:5000/vmlet/guest:1' } }, ctx);
  await handlers.image.PullImage!({ image: { image: '127.0.0.1:5000/other/guest:1' } }, ctx);
  assert.deepEqual(vmletCalls, ['PullImage']);
  assert.deepEqual(delegate.calls.map((c) => [c.method, (c.request as any).image.image]), [['PullImage', '127.0.0.1:5000/other/guest:1']]);
});

test('CreateContainer in a VM pod on an image the delegate pulled: FAILED_PRECONDITION naming the image and the setting', async () => {
  const ref = 'registry.test/vm/disk:1';
  const { handlers, delegate } = setup({ ImageStatus: { image: { id: 'sha256:' + '4'.repeat(64), repo_tags: [ref] } } });
  await assert.rejects(
    handlers.runtime.CreateContainer!({ pod_sandbox_id: VM_SANDBOX, config: { image: { image: ref } } }, ctx),
    (err: any) => {
      assert.equal(err.code, Code.FAILED_PRECONDITION);
      assert.match(err.message, /image registry\.test\/vm\/disk:1 was pulled by the container runtime \(unix:\/\/\/fake\.sock\)/);
      assert.match(err.message, /--vm-image-prefixes/);
      return true;
    },
  );
  assert.deepEqual(delegate.calls.map((c) => [c.method, c.request]), [['ImageStatus', { image: { image: ref } }]]);
});

test('CreateContainer in a VM pod on an image nobody holds keeps vmlet\'s NOT_FOUND', async () => {
  const { handlers } = setup({ ImageStatus: {} });
  await assert.rejects(
    handlers.runtime.CreateContainer!({ pod_sandbox_id: VM_SANDBOX, config: { image: { image: 'registry.test/vm/none:1' } } }, ctx),
    (err: any) => err.code === Code.NOT_FOUND && /not present/.test(err.message),
  );
  // The delegate being down does not change vmlet's answer either.
  const down = setup({});
  down.delegate.down = true;
  await assert.rejects(
    down.handlers.runtime.CreateContainer!({ pod_sandbox_id: VM_SANDBOX, config: { image: { image: 'registry.test/vm/none:1' } } }, ctx),
    (err: any) => err.code === Code.NOT_FOUND,
  );
});
