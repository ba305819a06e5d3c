import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assertGolden } from '../../helpers/golden.js';
import { InvalidArgumentError } from '../../../src/errors.js';
import { parseImageName } from '../../../src/image/reference.js';
import {
  DEFAULT_TRANSPORT,
  expandTemplate,
  parseTranslationConfig,
  translateImageName,
  type TranslationConfig,
  type TransportProfile,
} from '../../../src/image/translate.js';

const caPem = readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'ca.pem'), 'utf8');
const indented = (pem: string, spaces: number): string =>
  pem
    .trim()
    .split('\n')
    .map((l) => ' '.repeat(spaces) + l)
    .join('\n');

// Two files as a translation directory would hold them: a plain one and a prefixed one.
const plainConfig = `
translations:
  - name: cirros
    url: https://download.example.org/cirros/0.6.2/cirros-0.6.2-x86_64-disk.img
  - name: ubuntu/22.04
    url: http://images.example.org/jammy.qcow2
    transport: slow
  - name: fedora:39
    url: http://images.example.org/fedora-39.qcow2
  - name: pinned:latest
    url: http://images.example.org/pinned.raw
  - regexp: 'cirros/(\\d+\\.\\d+\\.\\d+)'
    url: 'https://download.example.org/cirros/$1/cirros-$1-x86_64-disk.img'
  - regexp: 'centos/(?P<major>\\d+)-(?P<build>\\d+)'
    url: 'https://cloud.example.org/centos/\${major}/CentOS-\${major}-GenericCloud-\${build}.qcow2'
  - regexp: 'dollar/(\\w+)'
    url: 'http://h.example.org/$$/$1x/\${1}x'
transports:
  slow:
    timeout: 30000
    maxRedirects: 1
    proxy: http://proxy.example.org:3128
`;

const prefixedConfig = `
prefix: corp
translations:
  - name: cirros
    url: https://mirror.corp.example/cirros.img
  - name: secure
    url: https://mirror.corp.example/secure.qcow2
    transport: pinned-ca
  - regexp: 'build/(.*)'
    url: 'https://ci.corp.example/artifacts/$1/disk.qcow2'
transports:
  "":
    proxy: http://corp-proxy.example:8080
  pinned-ca:
    maxRedirects: 0
    tls:
      serverName: mirror.corp.example
      certificates:
        - cert: |
${indented(caPem, 12)}
  lax:
    tls:
      insecure: true
`;

function describeTransport(t: TransportProfile): string {
  if (t === DEFAULT_TRANSPORT) return 'default';
  const parts = [`timeoutMs=${t.timeoutMs}`, `maxRedirects=${t.maxRedirects}`];
  if (t.proxy) parts.push(`proxy=${t.proxy}`);
  if (t.tls) {
    parts.push(`tls(ca=${t.tls.caCertificates.length} client=${t.tls.clientCertificates.length} insecure=${t.tls.insecure}${t.tls.serverName ? ` serverName=${t.tls.serverName}` : ''})`);
  }
  return parts.join(' ');
}

function table(configs: TranslationConfig[], names: string[]): string {
  const lines: string[] = [];
  for (const name of names) {
    let out: string;
    try {
      const t = translateImageName(configs, parseImageName(name));
      out = t ? `${t.url}  [${t.source ?? 'url'} / ${t.transportName || '-'}: ${describeTransport(t.transport)}]` : 'NO TRANSLATION';
    } catch (err) {
      out = `ERROR ${(err as Error).name}: ${(err as Error).message}`;
    }
    lines.push(`${name}\n  => ${out}`);
  }
  return `${lines.join('\n')}\n`;
}

test('translation table of names to URLs', () => {
  const configs = [parseTranslationConfig(plainConfig, '10-plain.yaml'), parseTranslationConfig(prefixedConfig, '20-corp.yaml')];
  const names = [
    'cirros',
    'cirros:latest',
    'cirros@sha256:' + 'a'.repeat(64),
    'cirros:0.5',
    'corp/cirros',
    'corp/cirros:latest',
    'ubuntu/22.04',
    'ubuntu/22.04:latest',
    'fedora:39',
    'fedora',
    'pinned',
    'pinned:latest',
    'cirros/0.6.2',
    'cirros/0.6.2:latest',
    'x/cirros/0.6.2',
    'cirros/0.6',
    'centos/7-2009',
    'dollar/abc',
    'secure',
    'corp/secure',
    'corp/build/1234',
    'build/1234',
    'http://plain.example.org/disk.qcow2',
    'https://plain.example.org:8443/disk.img',
    'https://plain.example.org/disk.img:latest',
    'https://plain.example.org/disk.img:v2',
    'ftp://plain.example.org/disk.img',
    'plain.example.org/disk.img',
    'unknown',
  ];
  assertGolden('image/translation-table.txt', table(configs, names));
});

test('a regexp rule that yields something other than an http(s) URL is refused', () => {
  const config = parseTranslationConfig(`translations:\n  - regexp: 'raw/(.*)'\n    url: '$1'\n`, 'evil.yaml');
  assert.throws(() => translateImageName([config], parseImageName('raw/file:///etc/passwd')), InvalidArgumentError);
  assert.throws(() => translateImageName([config], parseImageName('raw/notaurl')), /evil\.yaml.*not an http\(s\) URL/);
  const ok = translateImageName([config], parseImageName('raw/http://h/x'));
  assert.equal(ok?.url, 'http://h/x');
});

test('config errors name the file and the field', () => {
  const bad: [string, string][] = [
    ['not: [valid', 'yaml.yaml'],
    ['- a\n- b\n', 'list.yaml'],
    ['translations: {}\n', 'rules-not-list.yaml'],
    ['translations:\n  - url: http://x/y\n', 'no-name.yaml'],
    ['translations:\n  - name: a\n    regexp: b\n    url: http://x/y\n', 'both.yaml'],
    ['translations:\n  - name: a\n', 'no-url.yaml'],
    ['translations:\n  - name: a\n    url: /etc/passwd\n', 'file-url.yaml'],
    ['translations:\n  - regexp: "("\n    url: http://x/$1\n', 'bad-regexp.yaml'],
    ['translations:\n  - name: a\n    url: http://x/y\n    transport: missing\n', 'missing-transport.yaml'],
    ['transports:\n  t:\n    timeout: soon\n', 'timeout.yaml'],
    ['transports:\n  t:\n    maxRedirects: -1\n', 'redirects.yaml'],
    ['transports:\n  t:\n    proxy: socks5://p:1080\n', 'proxy.yaml'],
    ['transports:\n  t:\n    tls:\n      insecure: "yes"\n', 'insecure.yaml'],
    ['transports:\n  t:\n    tls:\n      certificates:\n        - cert: hello\n', 'cert.yaml'],
    ['translations:\n  - name: "bad name"\n    url: http://x/y\n', 'name.yaml'],
  ];
  const lines = bad.map(([text, file]) => {
    try {
      parseTranslationConfig(text, file);
      return `${file}: ACCEPTED`;
    } catch (err) {
      assert.ok(err instanceof InvalidArgumentError, `${file}: ${String(err)}`);
      assert.ok(err.message.includes(file), `${file}: message does not name the file: ${err.message}`);
      return `${file}: ${err.message}`;
    }
  });
  assertGolden('image/translation-config-errors.txt', `${lines.join('\n')}\n`);
});

test('an empty file is a config with no rules', () => {
  const c = parseTranslationConfig('', 'empty.yaml');
  assert.deepEqual(c.rules, []);
  assert.equal(translateImageName([c], parseImageName('cirros')), undefined);
});

test('a prefix with a trailing slash is the same prefix', () => {
  const c = parseTranslationConfig('prefix: p/\ntranslations:\n  - name: a\n    url: http://x/a\n', 'p.yaml');
  assert.equal(translateImageName([c], parseImageName('p/a'))?.url, 'http://x/a');
});

test('fixed names win over regexps in any config order', () => {
  const re = parseTranslationConfig(`translations:\n  - regexp: '.*'\n    url: http://re/\n`, '00-re.yaml');
  const fixed = parseTranslationConfig(`translations:\n  - name: a\n    url: http://fixed/\n`, '99-fixed.yaml');
  assert.equal(translateImageName([re, fixed], parseImageName('a'))?.url, 'http://fixed/');
  assert.equal(translateImageName([re, fixed], parseImageName('b'))?.url, 'http://re/');
});

test('expandTemplate follows Go Regexp.Expand naming', () => {
  const m = /^(?<word>[a-z]+)-(\d+)$/.exec('abc-42')!;
  assert.equal(expandTemplate('$1/$2', m), 'abc/42');
  assert.equal(expandTemplate('${word}:${2}', m), 'abc:42');
  assert.equal(expandTemplate('$1x', m), ''); // `$1x` is the (absent) group "1x"
  assert.equal(expandTemplate('${1}x', m), 'abcx');
  assert.equal(expandTemplate('$$1', m), '$1');
  assert.equal(expandTemplate('$9', m), '');
});
