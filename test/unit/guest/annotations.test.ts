import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../../../src/errors.js';
import { ANNOTATION, parseQuantityBytes, parseVmAnnotations } from '../../../src/guest/annotations.js';

test('no annotations: Virtlet defaults', () => {
  assert.deepEqual(parseVmAnnotations({}), {
    vcpuCount: 1,
    diskDriver: 'scsi',
    sshKeys: [],
    userDataOverwrite: false,
    cloudInitImageType: 'nocloud',
    forceDhcpNetworkConfig: false,
    unsupported: [],
  });
});

test('every supported annotation parsed', () => {
  const parsed = parseVmAnnotations({
    VirtletVCPUCount: '4',
    VirtletDiskDriver: 'virtio',
    VirtletRootVolumeSize: '4Gi',
    VirtletCPUModel: 'host-model',
    VirtletSystemUUID: '53008994-44C0-4017-AD44-9C49758083DA',
    VirtletSSHKeys: 'ssh-rsa AAAAB3Nza me@localhost\n\n  ssh-ed25519 AAAAC3Nz other@host  \r\n',
    VirtletCloudInitUserData: 'users:\n- name: cloudy\n  gecos: Magic Cloud App Daemon User\n  inactive: yes\n',
    VirtletCloudInitUserDataOverwrite: 'true',
    VirtletCloudInitUserDataScript: '#!/bin/sh\necho hi\n',
    VirtletCloudInitMetaData: 'instance-id: foobar\n',
    VirtletCloudInitImageType: 'ConfigDrive',
    VirtletForceDHCPNetworkConfig: 'true',
    VirtletLibvirtCPUSetting: 'mode: host-passthrough',
    'kubernetes.io/target-runtime': 'virtlet.cloud',
  });
  assert.deepEqual(parsed, {
    vcpuCount: 4,
    diskDriver: 'virtio',
    rootVolumeSizeBytes: 4 * 1024 ** 3,
    cpuModel: 'host-model',
    systemUuid: '53008994-44c0-4017-ad44-9c49758083da',
    sshKeys: ['ssh-rsa AAAAB3Nza me@localhost', 'ssh-ed25519 AAAAC3Nz other@host'],
    // YAML 1.1, like cloud-init's PyYAML: `yes` is a boolean.
    userData: { users: [{ name: 'cloudy', gecos: 'Magic Cloud App Daemon User', inactive: true }] },
    userDataOverwrite: true,
    userDataScript: '#!/bin/sh\necho hi\n',
    metaData: { 'instance-id': 'foobar' },
    cloudInitImageType: 'configdrive',
    forceDhcpNetworkConfig: true,
    unsupported: ['VirtletLibvirtCPUSetting'],
  });
});

test('empty values mean "not given" where Virtlet treats them so', () => {
  const parsed = parseVmAnnotations({
    VirtletCPUModel: '',
    VirtletCloudInitUserData: '   \n',
    VirtletCloudInitMetaData: '# nothing but a comment\n',
    VirtletCloudInitUserDataScript: '',
    VirtletCloudInitImageType: '',
    VirtletSSHKeys: '\n\n',
  });
  assert.equal(parsed.cpuModel, undefined);
  assert.equal(parsed.userData, undefined);
  assert.equal(parsed.metaData, undefined);
  assert.equal(parsed.userDataScript, undefined);
  assert.equal(parsed.cloudInitImageType, 'nocloud');
  assert.deepEqual(parsed.sshKeys, []);
  assert.equal(parseVmAnnotations({ VirtletForceDHCPNetworkConfig: 'false' }).forceDhcpNetworkConfig, false);
  assert.equal(parseVmAnnotations({ VirtletCloudInitUserDataOverwrite: 'false' }).userDataOverwrite, false);
});

test('a key named __proto__ in user YAML stays data and pollutes nothing', () => {
  const parsed = parseVmAnnotations({ VirtletCloudInitUserData: '__proto__:\n  polluted: 1\nruncmd: [ls]\n' });
  assert.deepEqual(Object.keys(parsed.userData!), ['__proto__', 'runcmd']);
  assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  assert.equal(Object.getPrototypeOf(parsed.userData), Object.prototype);
});

test('each malformed annotation → InvalidArgumentError naming it', () => {
  const cases: Array<[string, string]> = [
    ['VirtletVCPUCount', '0'],
    ['VirtletVCPUCount', '256'],
    ['VirtletVCPUCount', '-1'],
    ['VirtletVCPUCount', '2.5'],
    ['VirtletVCPUCount', 'two'],
    ['VirtletVCPUCount', '0x10'],
    ['VirtletVCPUCount', ''],
    ['VirtletDiskDriver', 'ducttape'],
    ['VirtletDiskDriver', 'VIRTIO'],
    ['VirtletRootVolumeSize', '4GB'],
    ['VirtletRootVolumeSize', '-1Gi'],
    ['VirtletRootVolumeSize', '0'],
    ['VirtletRootVolumeSize', '100m'],
    ['VirtletRootVolumeSize', '1.5'],
    ['VirtletRootVolumeSize', '1e100'],
    ['VirtletRootVolumeSize', '99999Ei'],
    ['VirtletRootVolumeSize', ''],
    ['VirtletCPUModel', 'host-passthrough'],
    ['VirtletSystemUUID', 'not-a-uuid'],
    ['VirtletSystemUUID', '53008994-44c0-4017-ad44-9c49758083dz'],
    ['VirtletSSHKeys', 'ssh-rsa AAAA\u0007bell'],
    ['VirtletSSHKeys', 'justonetoken'],
    ['VirtletCloudInitUserData', 'a: [1, 2'],
    ['VirtletCloudInitUserData', '- a\n- b\n'],
    ['VirtletCloudInitUserData', 'just a string'],
    ['VirtletCloudInitUserData', 'a: 1\na: 2\n'],
    ['VirtletCloudInitUserData', 'a: 1\n---\nb: 2\n'],
    ['VirtletCloudInitUserData', '2001-12-14'],
    ['VirtletCloudInitUserDataOverwrite', 'yes'],
    ['VirtletCloudInitUserDataOverwrite', 'True'],
    ['VirtletCloudInitUserDataScript', '#!/bin/sh\necho \u0000'],
    ['VirtletCloudInitMetaData', '{ broken'],
    ['VirtletCloudInitMetaData', '[1, 2]'],
    ['VirtletCloudInitImageType', 'iso'],
    ['VirtletForceDHCPNetworkConfig', '1'],
    ['VirtletForceDHCPNetworkConfig', 'TRUE'],
  ];
  for (const [name, value] of cases) {
    assert.throws(
      () => parseVmAnnotations({ [name]: value }),
      (err: unknown) => err instanceof InvalidArgumentError && (err.message.includes(`annotation ${name} `) || err.message.includes(`annotation ${name}: `)),
      `${name}=${JSON.stringify(value)}`,
    );
  }
});

test('YAML alias bombs are refused, not expanded', () => {
  const lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
  for (let i = 0; i < 8; i++) {
    const prev = String.fromCharCode(97 + i);
    const next = String.fromCharCode(98 + i);
    lines.push(`${next}: &${next} [${Array(10).fill(`*${prev}`).join(',')}]`);
  }
  assert.throws(
    () => parseVmAnnotations({ [ANNOTATION.userData]: lines.join('\n') }),
    (err: unknown) => err instanceof InvalidArgumentError && err.message.includes(ANNOTATION.userData),
  );
});

test('an oversized annotation is refused', () => {
  assert.throws(
    () => parseVmAnnotations({ [ANNOTATION.userDataScript]: 'x'.repeat(256 * 1024 + 1) }),
    (err: unknown) => err instanceof InvalidArgumentError && err.message.includes(ANNOTATION.userDataScript),
  );
});

test('Kubernetes quantities → bytes', () => {
  const cases: Array<[string, number | undefined]> = [
    ['4Gi', 4294967296],
    ['512Mi', 536870912],
    ['1G', 1e9],
    ['1.5Gi', 1610612736],
    ['100', 100],
    ['1k', 1000],
    ['1Ki', 1024],
    ['2e9', 2e9],
    ['2E3', 2000],
    ['1.5e3', 1500],
    ['+5M', 5e6],
    ['.5Ki', 512],
    ['1000m', 1],
    ['7Ei', undefined], // beyond Number.MAX_SAFE_INTEGER
    ['1Pi', 1125899906842624],
    ['1.0001', undefined],
    ['1 Gi', undefined],
    ['Gi', undefined],
    ['1GiB', undefined],
    ['1e-3', undefined],
    ['-2Ki', -2048],
  ];
  for (const [text, expected] of cases) assert.equal(parseQuantityBytes(text), expected, text);
});
