import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../../../../src/errors.js';
import { podNetworkPlan } from '../../../../src/network/cni/pod_networks.js';
import { joinAttachmentViews, networkStatusOf } from '../../../../src/network/cni/attachments.js';
import type { VmNetworkView } from '../../../../src/network/cni/result.js';
import { assertGolden } from '../../../helpers/golden.js';

const MULTUS = 'k8s.v1.cni.cncf.io/networks';

test('network plans of every annotation form (golden)', () => {
  const cases: [string, Record<string, string>][] = [
    ['none', {}],
    ['cni-genie', { cni: 'calico, flannel' }],
    ['multus-short', { [MULTUS]: 'net-a, default/net-b@side0,net-c' }],
    ['multus-json', { [MULTUS]: '[{"name":"net-a","namespace":"default","interface":"fast0","mac":"02:AA:00:00:00:01","ips":["198.18.151.7/24"]},{"name":"net-b"}]' }],
    ['empty annotations mean the default network', { cni: ' ', [MULTUS]: '' }],
  ];
  const text = cases.map(([title, annotations]) => `# ${title}\n${JSON.stringify(podNetworkPlan(annotations, 'default'), null, 1)}\n`).join('');
  assertGolden('network/cni/pod-network-plans.txt', text);
});

test('bad annotations are INVALID_ARGUMENT naming the annotation', () => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ cni: 'a,' }, /^annotation cni: .*empty network name/],
    [{ cni: 'a/b' }, /^annotation cni: "a\/b" is not a network name/],
    [{ cni: Array.from({ length: 17 }, (_, i) => `n${i}`).join(',') }, /^annotation cni: names more than 16/],
    [{ [MULTUS]: 'a@eth0' }, /^annotation k8s.v1.cni.cncf.io\/networks: interface eth0 is named twice/],
    [{ [MULTUS]: 'a@x,b@x' }, /interface x is named twice/],
    [{ [MULTUS]: 'a@this-name-is-far-too-long' }, /is not an interface name/],
    [{ [MULTUS]: 'kube-system/a' }, /network namespace kube-system is not the pod's \(default\)/],
    [{ [MULTUS]: '{"name":"a"}' }, /is not a network name/],
    [{ [MULTUS]: 'a@b@c' }, /"b@c" is not an interface name/],
    [{ [MULTUS]: '[]' }, /names no network/],
    [{ [MULTUS]: '[1]' }, /networks\[0\]: is not a JSON object/],
    [{ [MULTUS]: '[{"name":"a","default-route":["198.18.151.1"]}]' }, /"default-route" not supported/],
    [{ [MULTUS]: '[{"name":"a","mac":"01:00:5e:00:00:01"}]' }, /multicast/],
    [{ [MULTUS]: '[{"name":"a","mac":"zz"}]' }, /not a MAC address/],
    [{ [MULTUS]: '[{"name":"a","ips":["198.18.151.7"]}]' }, /not an address in CIDR form/],
    [{ [MULTUS]: '[{"name":"a","ips":[]}]' }, /ips must be a list/],
    [{ [MULTUS]: '[' + '['.repeat(100) + ']'.repeat(100) + ']' }, /^annotation k8s.v1.cni.cncf.io\/networks/],
    [{ cni: 'x'.repeat(70_000) }, /longer than/],
  ];
  for (const [annotations, message] of bad) {
    assert.throws(() => podNetworkPlan(annotations, 'default'), (err) => err instanceof InvalidArgumentError && message.test(err.message), JSON.stringify(annotations).slice(0, 80));
  }
});

function view(name: string, n: number, extra: Partial<VmNetworkView> = {}): VmNetworkView {
  return {
    interfaces: [{
      resultIndex: 1, name, mac: `0a:58:c6:12:${n.toString(16).padStart(2, '0')}:02`, sandbox: '/run/netns/x',
      ips: [{ family: 4, address: `198.18.${n}.2`, prefixLength: 24, gateway: `198.18.${n}.1` }],
      routes: [{ destination: '0.0.0.0/0', gateway: `198.18.${n}.1` }, { destination: '198.19.0.0/16', gateway: `198.18.${n}.254` }],
    }],
    dns: { nameservers: [`198.18.${n}.53`], search: [], options: [] },
    unassigned: { ips: [], routes: [] },
    ...extra,
  };
}

test('joined views: only the default network keeps its gateway and default route, and gives the DNS; network-status (golden)', () => {
  const joined = joinAttachmentViews([{ view: view('eth0', 152), isDefault: true }, { view: view('net1', 153), isDefault: false }]);
  const status = networkStatusOf([
    { network: 'podnet', ifName: 'eth0', isDefault: true, interfaces: ['eth0'], dns: joined.dns },
    { network: 'side', namespace: 'default', ifName: 'net1', isDefault: false, interfaces: ['net1'], dns: { nameservers: [], search: [], options: [] } },
  ], joined);
  assertGolden('network/cni/joined-view-and-status.json', `${JSON.stringify({ joined, status }, null, 1)}\n`);
  assert.throws(() => joinAttachmentViews([{ view: view('eth0', 152), isDefault: true }, { view: view('eth0', 153), isDefault: false }]), /two networks gave the sandbox an interface named eth0/);
});

test('a Multus JSON element picks its interface\'s binding with vmlet.io/network-binding; unknown values and other forms refused', () => {
  const plan = podNetworkPlan({ [MULTUS]: '[{"name":"side","vmlet.io/network-binding":"masquerade"},{"name":"other","vmlet.io/network-binding":"bridge"},{"name":"third"}]' }, 'default');
  assert.deepEqual(plan.map((p) => [p.ifName, p.binding]), [['eth0', undefined], ['net1', 'masquerade'], ['net2', 'bridge'], ['net3', undefined]]);
  for (const value of ['"Masquerade"', '"slirp"', '1', 'null', '["masquerade"]']) {
    assert.throws(
      () => podNetworkPlan({ [MULTUS]: `[{"name":"side","vmlet.io/network-binding":${value}}]` }, 'default'),
      (err) => err instanceof InvalidArgumentError && /networks\[0\]: vmlet\.io\/network-binding .* is not one of bridge, masquerade/.test(err.message),
      value,
    );
  }
  // The short form and CNI-Genie's list have no place for it: a per-interface binding needs the JSON form.
  assert.throws(() => podNetworkPlan({ [MULTUS]: 'side@net1:masquerade' }, 'default'), InvalidArgumentError);
});
