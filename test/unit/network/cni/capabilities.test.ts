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
