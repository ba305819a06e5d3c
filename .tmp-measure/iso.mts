import { writeFileSync } from 'node:fs';
import { buildIso9660 } from '../src/vm/iso9660.js';
const d = new Date(Date.UTC(2026, 11, 5, 12, 34, 56));
const t0 = performance.now();
const a = buildIso9660([{ path: 'meta-data', content: Buffer.from('instance-id: abc\nlocal-hostname: h\n') }, { path: 'user-data', content: Buffer.from('#cloud-config\n') }, { path: 'network-config', content: Buffer.from('version: 1\n') }], 'cidata', d);
console.log('ms', (performance.now() - t0).toFixed(3), a.length);
writeFileSync('/tmp/a.iso', a);
writeFileSync('/tmp/b.iso', buildIso9660([{ path: 'openstack/latest/meta_data.json', content: Buffer.from('{"uuid":"x"}') }, { path: 'openstack/latest/user_data', content: Buffer.alloc(5000, 65) }, { path: 'openstack/latest/network_data.json', content: Buffer.from('{}') }], 'config-2', d));
