/**
 * VMLET_NETNS values both the TS side (netns_env.ts) and the launcher script must refuse; shared by
 * test/unit/vmwrapper/netns_env.test.ts and test/integration/vmwrapper/launcher.test.ts.
 */
export const REFUSED_NETNS_PATHS = [
  '',
  'vmlet-abc',
  '/run/netns/',
  '/run/netns/vmlet-',
  '/run/netns/vmlet-abc-',
  '/run/netns/vmlet-ABC',
  '/run/netns/vmlet-a_b',
  '/run/netns/vmlet-a.b',
  '/run/netns/other',
  '/run/netns/../netns/vmlet-abc',
  '/run/netns/vmlet-abc/../vmlet-def',
  '/run/netns/vmlet-abc/',
  '/run/netns//vmlet-abc',
  '/run/netns/vmlet-abc\n',
  '/run/netns/vmlet-abc def',
  '/tmp/vmlet-abc',
  '/run/netnsx/vmlet-abc',
  `/run/netns/vmlet-${'a'.repeat(64)}`,
];
