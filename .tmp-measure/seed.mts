import { writeFileSync } from 'node:fs';
import { seedIsoImage } from '../src/vm/seed_iso.js';
writeFileSync('/tmp/seed-test.iso', seedIsoImage({ kind: 'nocloud', metaData: 'instance-id: abc123\nlocal-hostname: myhost\n', userData: '#cloud-config\n', networkConfig: 'version: 1\n' } as any, new Date()));
