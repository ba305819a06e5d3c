import { test } from 'node:test';
import assert from 'node:assert/strict';
import { capabilityArgs, podDns } from '../../../src/netd/manager.js';
import type { SetupParams } from '../../../src/netd/protocol.js';

function params(over: Partial<SetupParams> = {}): SetupParams {
  return {
    sandboxId: 'a'.repeat(64), podName: 'p', podNamespace: 'ns', podUid: 'u', hostname: 'p',
    dns: { servers: [], searches: [], options: [] }, portMappings: [], ...over,
  };
}

test('portMappings: only mappings that publish a host port reach the plugins (portmap refuses host port 0)', () => {
  const args = capabilityArgs(params({
    portMappings: [
      { protocol: 'tcp', containerPort: 8080, hostPort: 0, hostIP: '' },
      { protocol: 'udp', containerPort: 53, hostPort: 5353, hostIP: '198.18.0.1' },
    ],
  }));
  assert.deepEqual(args.portMappings, [{ hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '198.18.0.1' }]);
  assert.equal('dns' in args, false, 'no dns capability without pod DNS');
});

test('dns capability and the VM DNS: the pod DNSConfig wins, the CNI result fills in', () => {
  const dns = { servers: ['198.18.0.53'], searches: ['svc.cluster.local'], options: ['ndots:5'] };
  assert.deepEqual(capabilityArgs(params({ dns })).dns, { servers: dns.servers, searches: dns.searches, options: dns.options });
  const cni = { nameservers: ['198.18.0.10'], search: ['cni.local'], options: [], domain: 'cni.local' };
  assert.deepEqual(podDns(dns, cni), { nameservers: dns.servers, search: dns.searches, options: dns.options, domain: 'cni.local' });
  assert.deepEqual(podDns({ servers: [], searches: [], options: [] }, cni), cni);
});
