import { writeFileSync } from 'node:fs';
import { qcow2Overlay } from '../src/container/qcow2_overlay.js';
writeFileSync('/tmp/mine.qcow2', qcow2Overlay({ backingPath: '/work/main/.cache/images/test-guest.qcow2', backingFormat: 'qcow2', virtualSize: 0xf00000n }));
writeFileSync('/tmp/mine-big.qcow2', qcow2Overlay({ backingPath: '/work/main/.cache/images/test-guest.qcow2', backingFormat: 'qcow2', virtualSize: 5n * 1024n ** 4n }));
