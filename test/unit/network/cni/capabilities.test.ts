import { test } from 'node:test';
import assert from 'node:assert/strict';
import { capabilityArgs, type PodCapabilityRequest } from '../../../../src/network/cni/capabilities.js';

function pod(over: Partial<PodCapabilityRequest> = {}): PodCapabilityRequest {
  return { dns: { servers: [], searches: [], options: [] }, portMappings: [], ...over };
}

test('portMappings: only mappings that publish a host port reach the plugins (portmap refuses host port 0)', () => {
  const args = capabilityArgs(pod({
    portMappings: [
      { protocol: 'tcp', containerPort: 8080, hostPort: 0, hostIP: '' },
      { protocol: 'udp', containerPort: 53, hostPort: 5353, hostIP: '198.18.0.1' },
    ],
  }));
  assert.deepEqual(args.portMappings, [{ hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '198.18.0.1' }]);
  assert.equal('dns' in args, false, 'no dns capability without pod DNS');
});

test('dns capability: the pod DNSConfig, when it names servers or searches', () => {
  const dns = { servers: ['198.18.0.53'], searches: ['svc.cluster.local'], options: ['ndots:5'] };
  assert.deepEqual(capabilityArgs(pod({ dns })).dns, { servers: dns.servers, searches: dns.searches, options: dns.options });
  assert.equal('dns' in capabilityArgs(pod({ dns: { servers: [], searches: [], options: ['ndots:5'] } })), false);
});

test('bandwidth from the pod annotations, in bits/s with unlimited bursts, as containerd passes it', async () => {
  const { bandwidthArgs, capabilityArgs: caps } = await import('../../../../src/network/cni/capabilities.js');
  assert.equal(bandwidthArgs({}), undefined);
  assert.deepEqual(bandwidthArgs({ 'kubernetes.io/ingress-bandwidth': '10M' }), { ingressRate: 10_000_000, ingressBurst: 4294967295 });
  assert.deepEqual(bandwidthArgs({ 'kubernetes.io/ingress-bandwidth': '2.5M', 'kubernetes.io/egress-bandwidth': '1Gi' }), {
    ingressRate: 2_500_000, ingressBurst: 4294967295, egressRate: 1073741824, egressBurst: 4294967295,
  });
  const args = caps({ portMappings: [], dns: { servers: [], searches: [], options: [] }, annotations: { 'kubernetes.io/egress-bandwidth': '500k' } });
  assert.deepEqual(args.bandwidth, { egressRate: 500_000, egressBurst: 4294967295 });
  for (const [value, message] of [['10 Mbit', /not a quantity/], ['-1M', /not a quantity/], ['999', /unreasonably small/], ['2P', /unreasonably large/], ['1e6', /not a quantity/]] as const) {
    assert.throws(() => bandwidthArgs({ 'kubernetes.io/ingress-bandwidth': value }), (err: Error) => err.name === 'InvalidArgumentError' && /^annotation kubernetes.io\/ingress-bandwidth: /.test(err.message) && message.test(err.message), value);
  }
});

test('ipRanges: one range set per node pod CIDR (UpdateRuntimeConfig), none when kubelet set none', () => {
  assert.equal('ipRanges' in capabilityArgs(pod()), false);
  assert.equal('ipRanges' in capabilityArgs(pod({ podCidrs: [] })), false);
  assert.deepEqual(capabilityArgs(pod({ podCidrs: ['198.19.44.0/24', 'fd44::/64'] })).ipRanges, [[{ subnet: '198.19.44.0/24' }], [{ subnet: 'fd44::/64' }]]);
});
