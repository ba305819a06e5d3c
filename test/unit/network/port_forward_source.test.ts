import test from 'node:test';
import assert from 'node:assert/strict';
import { PORT_FORWARD_SOURCE_IP, podBridges, portForwardSourceCommands, portForwardSourceScript } from '../../../src/network/port_forward_source.js';

// What `ip -j -d link show` printed in a wired pod netns (trimmed to the fields used).
const LINKS = [
  { ifname: 'lo', address: '00:00:00:00:00:00' },
  { ifname: 'eth0', master: 'vbrrpnttcm1800', address: '32:f8:fe:7d:61:4a', linkinfo: { info_kind: 'veth' } },
  { ifname: 'vbrrpnttcm1800', address: '6E:B4:C7:44:A8:D3', linkinfo: { info_kind: 'bridge' } },
  { ifname: 'vtaprpnttcm1800', master: 'vbrrpnttcm1800', address: '62:dd:ae:2f:55:86', linkinfo: { info_kind: 'tun' } },
];

// Found with crictl port-forward against the busybox guest: the pod netns has no IPv4 address once
// the VM owns the pod IP, so the SYN left from 0.0.0.0 and every forward timed out.
test('port-forward source: every pod bridge gets the link-local /32; only TAP ports get the reply rule', () => {
  const bridges = podBridges(LINKS);
  assert.deepEqual(bridges, [{ name: 'vbrrpnttcm1800', mac: '6e:b4:c7:44:a8:d3', taps: ['vtaprpnttcm1800'] }]);
  assert.deepEqual(portForwardSourceCommands(bridges), [['address', 'replace', `${PORT_FORWARD_SOURCE_IP}/32`, 'dev', 'vbrrpnttcm1800']]);
  assert.equal(
    portForwardSourceScript(bridges),
    [
      'add table bridge vmlet-portforward',
      'flush table bridge vmlet-portforward',
      'table bridge vmlet-portforward {',
      '\tchain prerouting {',
      '\t\ttype filter hook prerouting priority dstnat; policy accept;',
      '\t\tiifname "vtaprpnttcm1800" ip daddr 169.254.253.253 ether daddr set 6e:b4:c7:44:a8:d3 meta pkttype set host comment "portforward-reply"',
      '\t}',
      '}',
      '',
    ].join('\n'),
  );
});

test('port-forward source: no bridge in an unwired netns; hostile names are refused', () => {
  assert.deepEqual(podBridges([{ ifname: 'eth0', linkinfo: { info_kind: 'veth' } }]), []);
  assert.deepEqual(podBridges('nonsense'), []);
  assert.throws(() => portForwardSourceScript([{ name: 'br0', mac: '6e:b4:c7:44:a8:d3', taps: ['x"; flush ruleset; "'] }]));
  assert.throws(() => portForwardSourceScript([{ name: 'br0', mac: 'not-a-mac', taps: ['tap0'] }]), /no Ethernet address/);
  assert.throws(() => portForwardSourceCommands([{ name: 'br 0', mac: '6e:b4:c7:44:a8:d3', taps: [] }]));
});
