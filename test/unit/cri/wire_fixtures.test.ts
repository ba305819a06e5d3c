/**
 * Wire compatibility of proto/runtime/v1/api.proto with real CRI traffic: requests encoded by
 * crictl v1.26.1 and responses encoded by containerd 1.6.20 (test/fixtures/cri-wire, see the
 * README there). Every fixture must decode to exactly its .json, leave no byte unexplained, and
 * the .json must encode back to the same bytes. A failure here means the .proto is wrong.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { CRI_PROTO_PATH } from '../../../src/cri/proto.js';

const fixtureDir = fileURLToPath(new URL('../../fixtures/cri-wire/', import.meta.url));

/** Message type of every fixture, as listed in the fixtures' README. */
const FIXTURE_TYPES: ReadonlyMap<string, string> = new Map(
  [
    ...[
      'Version',
      'Status',
      'RunPodSandbox',
      'ListPodSandbox',
      'PodSandboxStatus',
      'CreateContainer',
      'StartContainer',
      'ListContainers',
      'ContainerStatus',
      'ListContainerStats',
      'ExecSync',
      'UpdateContainerResources',
      'StopContainer',
      'RemoveContainer',
      'StopPodSandbox',
      'RemovePodSandbox',
      'ImageFsInfo',
      'ListImages',
      'ImageStatus',
    ].flatMap((method) => [
      [`${method}.request.bin`, `runtime.v1.${method}Request`],
      [`${method}.response.bin`, `runtime.v1.${method}Response`],
    ]),
    // These calls failed with gRPC UNKNOWN upstream, so only the request was captured.
    ['PullImage.request.bin', 'runtime.v1.PullImageRequest'],
    ['ListPodSandboxStats.request.bin', 'runtime.v1.ListPodSandboxStatsRequest'],
  ] as Array<[string, string]>,
);

/** The exact conversion the fixtures' .json files were produced with. */
const TO_OBJECT_OPTIONS: protobuf.IConversionOptions = {
  longs: String,
  enums: String,
  bytes: String,
  defaults: false,
  oneofs: true,
};

const root = new protobuf.Root().loadSync(CRI_PROTO_PATH, { keepCase: true });
root.resolveAll();

test('fixture table covers every .bin in test/fixtures/cri-wire and nothing else', () => {
  const onDisk = readdirSync(fixtureDir)
    .filter((name) => name.endsWith('.bin'))
    .sort();
  assert.deepEqual(onDisk, [...FIXTURE_TYPES.keys()].sort());
  for (const name of onDisk) {
    const jsonName = name.replace(/\.bin$/, '.json');
    assert.ok(readdirSync(fixtureDir).includes(jsonName), `${jsonName} is missing`);
  }
});

for (const [binName, typeName] of FIXTURE_TYPES) {
  test(`${binName} as ${typeName}`, async (t) => {
    const type = root.lookupType(typeName);
    const wire = readFileSync(join(fixtureDir, binName));
    const expected: unknown = JSON.parse(
      readFileSync(join(fixtureDir, binName.replace(/\.bin$/, '.json')), 'utf8'),
    );

    await t.test('decodes to the recorded JSON', () => {
      const decoded = type.decode(wire);
      assert.deepEqual(type.toObject(decoded, TO_OBJECT_OPTIONS), expected);
    });

    await t.test('every field on the wire is known, with its declared wire type', () => {
      assertKnownFields(type, wire, typeName);
    });

    await t.test('re-encoding the decoded message reproduces the bytes', () => {
      const reencoded = type.encode(type.decode(wire)).finish();
      assertSameBytes(reencoded, wire);
    });

    await t.test('the recorded JSON encodes to the same bytes', () => {
      const fromJson = type.encode(type.fromObject(expected as Record<string, unknown>)).finish();
      assertSameBytes(fromJson, wire);
    });
  });
}

test('the known-field check rejects a field the definition does not have', () => {
  const type = root.lookupType('runtime.v1.VersionRequest');
  // Field 1 (string "v1") followed by field 15, varint 1: not part of VersionRequest.
  const withUnknown = Uint8Array.from([0x0a, 0x02, 0x76, 0x31, 0x78, 0x01]);
  assert.throws(() => assertKnownFields(type, withUnknown, 'VersionRequest'), /unknown field 15/);
  // protobufjs itself skips it silently, which is why the explicit walk exists.
  assert.deepEqual(type.toObject(type.decode(withUnknown)), { version: 'v1' });
});

function assertSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  assert.equal(Buffer.from(actual).toString('hex'), Buffer.from(expected).toString('hex'));
}

/** Wire type a field of this protobufjs type name uses when not packed. */
function scalarWireType(typeName: string): number {
  const basic = (protobuf.types.basic as Record<string, number | undefined>)[typeName];
  if (basic !== undefined) return basic;
  return 2; // string, bytes and messages are length-delimited
}

/**
 * Walks the raw bytes against the definition: each tag must name a declared field (including
 * inside nested messages and map entries) and use the wire type that field implies. protobufjs
 * drops unknown fields without a word, so without this a wrong field number could go unnoticed.
 */
function assertKnownFields(type: protobuf.Type, bytes: Uint8Array, path: string): void {
  const reader = protobuf.Reader.create(bytes);
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    const id = tag >>> 3;
    const wireType = tag & 7;
    const field = type.fieldsById[id];
    if (field === undefined) {
      assert.fail(`${path}: unknown field ${id} (wire type ${wireType}) in ${type.fullName}`);
    }
    field.resolve();
    const fieldPath = `${path}.${field.name}`;

    if (field instanceof protobuf.MapField) {
      assert.equal(wireType, 2, `${fieldPath}: map entries are length-delimited`);
      assertMapEntry(field, reader.bytes(), fieldPath);
      continue;
    }
    if (field.resolvedType instanceof protobuf.Type) {
      assert.equal(wireType, 2, `${fieldPath}: messages are length-delimited`);
      assertKnownFields(field.resolvedType, reader.bytes(), fieldPath);
      continue;
    }
    const unpacked = field.resolvedType instanceof protobuf.Enum ? 0 : scalarWireType(field.type);
    const packable = field.repeated && unpacked !== 2;
    assert.ok(
      wireType === unpacked || (packable && wireType === 2),
      `${fieldPath}: wire type ${wireType}, but ${field.type} expects ${unpacked}`,
    );
    reader.skipType(wireType);
  }
}

function assertMapEntry(field: protobuf.MapField, bytes: Uint8Array, path: string): void {
  const reader = protobuf.Reader.create(bytes);
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    const id = tag >>> 3;
    const wireType = tag & 7;
    if (id === 1) {
      assert.equal(wireType, scalarWireType(field.keyType), `${path}: map key wire type`);
      reader.skipType(wireType);
    } else if (id === 2) {
      if (field.resolvedType instanceof protobuf.Type) {
        assert.equal(wireType, 2, `${path}: map value wire type`);
        assertKnownFields(field.resolvedType, reader.bytes(), `${path}[value]`);
      } else {
        const expected = field.resolvedType instanceof protobuf.Enum ? 0 : scalarWireType(field.type);
        assert.equal(wireType, expected, `${path}: map value wire type`);
        reader.skipType(wireType);
      }
    } else {
      assert.fail(`${path}: unknown field ${id} in a map entry`);
    }
  }
}
