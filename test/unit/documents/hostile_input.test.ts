/**
 * Hostile input, table-driven: every user document and size vmlet parses (cloud-init annotations,
 * the root volume size, image translation files, the config file, JSON) against deep, huge,
 * alias-bombed, cyclic and malformed values. Each case asserts the code, the field named in the
 * message, and (for files) that the parse left nothing open or written. Runs under a 256 KiB stack
 * so that a parse that recursed per nesting level would overflow here first.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code, VmletError } from '../../../src/errors.js';
import { parseVmAnnotations, MAX_ROOT_VOLUME_BYTES } from '../../../src/guest/annotations.js';
import { parseTranslationConfig } from '../../../src/image/translate.js';
import { loadConfig } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/config/table.js';
import { DOCUMENT_LIMITS, checkValueBounds, parseJsonBounded, parseYamlBounded } from '../../../src/documents/bounded.js';
import { installProcessGuards, EXIT_TOO_MANY_UNCAUGHT } from '../../../src/process_guard.js';
import { pino } from 'pino';

const deepFlow = (n: number): string => `x: ${'['.repeat(n)}${']'.repeat(n)}\n`;
const deepBlock = (n: number): string => `x:\n${'- '.repeat(n)}1\n`;
const deepIndent = (n: number): string => `${Array.from({ length: n }, (_, i) => `${' '.repeat(i)}k:`).join('\n')} 1\n`;
const aliasBomb = (): string => {
  const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < 9; i++) lines.push(`a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]`);
  return `${lines.join('\n')}\n`;
};
const manyKeys = (n: number): string => Array.from({ length: n }, (_, i) => `k${i}: v`).join('\n');
const aliasDeeper = `a: &a ${'['.repeat(40)}${']'.repeat(40)}\nb: ${'['.repeat(40)}*a${']'.repeat(40)}\n`;

interface Case {
  what: string;
  run: () => unknown;
  code: number;
  /** The message must name the field (annotation, file) and say what is wrong. */
  message: RegExp;
}

function annotationCase(name: string, value: string, problem: RegExp, what: string): Case {
  return {
    what: `${name}: ${what}`,
    run: () => parseVmAnnotations({ [name]: value }),
    code: Code.INVALID_ARGUMENT,
    message: new RegExp(`annotation ${name}[: ].*${problem.source}`),
  };
}

const cases: Case[] = [
  annotationCase('VirtletCloudInitUserData', deepFlow(60000), /nests deeper than 64 levels/, '60000-deep flow sequence (the 120 KB report)'),
  annotationCase('VirtletCloudInitUserData', deepBlock(60000), /nests deeper than 64 levels/, '60000-deep block sequence on one line'),
  annotationCase('VirtletCloudInitUserData', `x: ${'{a: '.repeat(30000)}1${'}'.repeat(30000)}\n`, /nests deeper than 64 levels/, '30000-deep flow mapping'),
  annotationCase('VirtletCloudInitUserData', `x: ${'['.repeat(120000)}\n`, /nests deeper than 64 levels/, 'unclosed brackets'),
  annotationCase('VirtletCloudInitUserData', `${'? '.repeat(60000)}a\n`, /nests deeper than 64 levels/, 'nested explicit keys'),
  annotationCase('VirtletCloudInitMetaData', deepIndent(200), /nests deeper than 64 levels/, '200 levels of indented mappings'),
  annotationCase('VirtletCloudInitMetaData', deepFlow(65), /nests deeper than 64 levels/, 'one level over the limit'),
  annotationCase('VirtletCloudInitUserData', aliasDeeper, /nests deeper than 64 levels/, 'an alias that makes the value deeper than the text'),
  annotationCase('VirtletCloudInitUserData', aliasBomb(), /expands more than 100 aliases/, 'billion laughs'),
  annotationCase('VirtletCloudInitUserData', 'x: &a [*a]\n', /alias that refers to a node containing it/, 'a sequence containing itself'),
  annotationCase('VirtletCloudInitMetaData', 'x: &a {b: *a}\n', /alias that refers to a node containing it/, 'a mapping containing itself'),
  annotationCase('VirtletCloudInitUserData', `a: &a x\nb: [${'*a, '.repeat(99)}]\nc: *b\n`, /not valid YAML/, 'an unknown alias'),
  annotationCase('VirtletCloudInitUserData', manyKeys(20000), /has more than 32768 YAML tokens/, '20000 keys (6.8 s in yaml before)'),
  annotationCase('VirtletCloudInitUserData', 'a: 1\nb: 2\na: 3\n', /Map keys must be unique at line 3, column 1/, 'a duplicate key'),
  annotationCase('VirtletCloudInitUserData', 'a: 1\n---\nb: 2\n', /exactly one YAML document/, 'two documents'),
  annotationCase('VirtletCloudInitUserData', `a: "${'x'.repeat(300 * 1024)}"\n`, /too long/, 'over 256 KiB'),
  annotationCase('VirtletRootVolumeSize', '7Pi', /larger than qcow2 allows/, '7Pi (QEMU: Active L1 table too large)'),
  annotationCase('VirtletRootVolumeSize', String(MAX_ROOT_VOLUME_BYTES + 512 * 2 ** 20), /larger than qcow2 allows/, '2Pi + 512Mi'),
  annotationCase('VirtletRootVolumeSize', '1e30', /positive whole number/, 'beyond a safe integer'),
  {
    what: 'translation file: 60000-deep',
    run: () => parseTranslationConfig(deepFlow(60000), 'deep.yaml'),
    code: Code.INVALID_ARGUMENT,
    message: /image translation config deep\.yaml: nests deeper than 64 levels/,
  },
  {
    what: 'translation file: alias to itself',
    run: () => parseTranslationConfig('translations: &t [*t]\n', 'cycle.yaml'),
    code: Code.INVALID_ARGUMENT,
    message: /image translation config cycle\.yaml: has an alias that refers to a node containing it/,
  },
  {
    what: 'translation file: over 1 MiB',
    run: () => parseTranslationConfig(`# ${'x'.repeat(1024 * 1024)}\n`, 'big.yaml'),
    code: Code.INVALID_ARGUMENT,
    message: /image translation config big\.yaml: is larger than 1048576 bytes/,
  },
  {
    what: 'JSON: 100000-deep array',
    run: () => parseJsonBounded('['.repeat(100000), 'annotation example/json'),
    code: Code.INVALID_ARGUMENT,
    message: /annotation example\/json: nests deeper than 64 levels/,
  },
  {
    what: 'JSON: brackets inside strings do not count, broken JSON is named',
    run: () => parseJsonBounded(`{"a": "${'['.repeat(1000)}", `, 'annotation example/json'),
    code: Code.INVALID_ARGUMENT,
    message: /annotation example\/json: not valid JSON/,
  },
  {
    what: 'a value built in code: a cycle before serialising',
    run: () => {
      const a: Record<string, unknown> = {};
      a['self'] = [a];
      checkValueBounds(a, 'annotation VirtletCloudInitUserData');
    },
    code: Code.INVALID_ARGUMENT,
    message: /annotation VirtletCloudInitUserData: has an alias that refers to a node containing it/,
  },
  {
    what: 'a value built in code: shared subtrees that expand past 4 MiB',
    run: () => {
      let v: unknown = 'x'.repeat(1024);
      for (let i = 0; i < 13; i++) v = [v, v];
      checkValueBounds(v, 'annotation VirtletCloudInitMetaData');
    },
    code: Code.INVALID_ARGUMENT,
    message: /annotation VirtletCloudInitMetaData: expands to more than 4194304 bytes/,
  },
];

for (const c of cases) {
  test(`hostile input refused: ${c.what}`, () => {
    const started = performance.now();
    assert.throws(c.run, (err: unknown) => {
      assert.ok(err instanceof VmletError, `not a VmletError: ${String(err)}`);
      assert.equal(err.code, c.code, err.message);
      assert.match(err.message, c.message);
      return true;
    });
    // Bounded in time too: the worst measured shape takes about half a second.
    assert.ok(performance.now() - started < 5000, `took ${Math.round(performance.now() - started)} ms`);
  });
}

test('values at the limits are accepted: 64 levels, 2Pi root volume, a few aliases, a block scalar of 200 KiB', () => {
  assert.deepEqual(parseYamlBounded('a: 1\n', 'f'), { a: 1 });
  const deep = parseVmAnnotations({ VirtletCloudInitUserData: deepFlow(63) });
  assert.ok(deep.userData);
  assert.equal(parseVmAnnotations({ VirtletRootVolumeSize: '2Pi' }).rootVolumeSizeBytes, MAX_ROOT_VOLUME_BYTES);
  const aliases = parseVmAnnotations({ VirtletCloudInitUserData: `a: &a {x: 1}\nb: *a\nc: [*a, *a]\n` });
  assert.deepEqual(aliases.userData, { a: { x: 1 }, b: { x: 1 }, c: [{ x: 1 }, { x: 1 }] });
  const big = `write_files:\n  - path: /x\n    content: |\n${'      line of text\n'.repeat(12000)}`;
  assert.ok(parseVmAnnotations({ VirtletCloudInitUserData: big }).userData);
  assert.equal(parseYamlBounded('# only a comment\n', 'f'), undefined);
});

test('the config file: deep, huge and cyclic files stop the start naming the file; nothing is written', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-hostile-config-'));
  try {
    const files: Array<[string, string, RegExp]> = [
      ['deep.yaml', deepFlow(60000), /nests deeper than 64 levels/],
      ['cycle.yaml', 'state-dir: &a [*a]\n', /alias that refers to a node containing it/],
      ['big.yaml', `# ${'x'.repeat(DOCUMENT_LIMITS.maxBytes)}\n`, /is larger than 1048576 bytes/],
    ];
    for (const [name, text, problem] of files) {
      const file = join(dir, name);
      writeFileSync(file, text);
      assert.throws(
        () => loadConfig({ file }),
        (err: unknown) => err instanceof ConfigError && err.key === 'config' && err.message.includes(`config file ${file}`) && problem.test(err.message),
        name,
      );
    }
    assert.deepEqual(readdirSync(dir).sort(), ['big.yaml', 'cycle.yaml', 'deep.yaml']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the limits hold on a small stack: no parse recurses per nesting level', () => {
  // A child with a 256 KiB V8 stack (default ~984 KiB) parses the report's document and a
  // document at the limit; a per-level recursion would overflow and print no result.
  const script = `
    const { parseVmAnnotations } = await import(${JSON.stringify(new URL('../../../src/guest/annotations.ts', import.meta.url).href)});
    const out = [];
    for (const n of [60000, 63]) {
      try { parseVmAnnotations({ VirtletCloudInitUserData: 'x: ' + '['.repeat(n) + ']'.repeat(n) + '\\n' }); out.push('ok'); }
      catch (e) { out.push(e.constructor.name + ': ' + e.message); }
    }
    console.log(JSON.stringify(out));`;
  const child = spawnSync(process.execPath, ['--stack-size=256', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(child.status, 0, child.stderr);
  assert.deepEqual(JSON.parse(child.stdout.trim().split('\n').pop()!), [
    'DocumentLimitError: annotation VirtletCloudInitUserData: nests deeper than 64 levels',
    'ok',
  ]);
});

test('process guards: rejections and uncaught exceptions are logged; a storm of them exits 70', () => {
  const listeners: Record<string, (arg: unknown) => void> = {};
  const fakeProcess = { on: (event: string, fn: (arg: unknown) => void) => void (listeners[event] = fn) };
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) });
  const exits: number[] = [];
  let now = 0;
  installProcessGuards(fakeProcess as never, logger, { exit: (code) => exits.push(code), maxUncaughtPerMinute: 3, now: () => now });
  listeners['unhandledRejection']!(new Error('lost promise'));
  for (let i = 0; i < 3; i++) listeners['uncaughtException']!(new Error(`thrown ${i}`));
  assert.deepEqual(exits, []);
  now += 61_000; // older ones leave the window
  for (let i = 0; i < 3; i++) listeners['uncaughtException']!(new Error(`again ${i}`));
  assert.deepEqual(exits, []);
  listeners['uncaughtException']!(new Error('one too many'));
  assert.deepEqual(exits, [EXIT_TOO_MANY_UNCAUGHT]);
  assert.ok(lines.some((l) => l.includes('lost promise') && l.includes('unhandled promise rejection')));
  assert.ok(lines.some((l) => l.includes('thrown 0') && l.includes('uncaught exception')));
});
