/**
 * Bounded parsing of documents that come from users (pod annotations, image translation files,
 * config files): size, nesting depth, alias expansion and cycles are checked so that no document
 * can exhaust the stack, the heap or the CPU of the process that reads it. Every refusal is a
 * DocumentLimitError (INVALID_ARGUMENT) whose message starts with the field that carried it.
 *
 * Why the depth check comes before the parser recurses: `yaml`'s lexer and CST parser are
 * iterative (they keep an explicit token stack), but its composer (CST → nodes) and toJS recurse
 * once per nesting level. A 120 KB `x: [[[[…` overflows the composer's stack at ~750 levels;
 * `yaml` catches that RangeError itself, but whether a document overflows then depends on how deep
 * the caller's stack already is, and everything downstream (merging, stringify) recurses again.
 * So this module drives the lexer and parser itself, stops as soon as the parser's stack holds more
 * collections than allowed, measures the finished CST iteratively, and only then composes.
 * The composed value is walked once more, iteratively, for what aliases can add: depth (an alias
 * to a deep node placed deep), size after expansion, and cycles (`&a [*a]`).
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Composer, LineCounter, Lexer, Parser, isMap, isPair, isScalar, isSeq, type CST, type Document } from 'yaml';
import { InvalidArgumentError } from '../errors.js';

export interface DocumentLimits {
  /** UTF-8 bytes of the document text. */
  maxBytes: number;
  /** Nesting of collections (sequences, mappings), counted from 1 for the top-level collection. */
  maxDepth: number;
  /** Lexical tokens (scalars, indicators, spaces, newlines, comments) of a YAML text. */
  maxTokens: number;
  /** Alias resolutions as `yaml` counts them (each weighted by the size of what it expands to). */
  maxAliasCount: number;
  /** Size of the value once aliases are expanded, estimated as its serialised size (see below). */
  maxExpandedBytes: number;
}

/**
 * The numbers:
 * - 1 MiB of text: vmlet's largest user documents are Kubernetes annotations (all of a pod's
 *   annotations together are capped at 256 KiB by the API server) and admin-written config and
 *   translation files, which are a few KiB. Parsing 1 MiB of the worst shapes found takes well
 *   under a second (test/unit/documents/bounded.test.ts measures it).
 * - depth 64: real cloud-init user-data nests 6–8 levels, a Kubernetes object ~20; 64 leaves room
 *   and keeps every recursion on the value (yaml's composer and toJS, the user-data merge,
 *   YAML/JSON stringify) about 12 times below the ~750 levels where the composer overflows on
 *   Node's default stack.
 * - 32 Ki tokens: yaml's cost is per token, and not small (up to ~20 µs for a token the composer
 *   reports as an error: 64 Ki of `[]` took 1.4 s, 256 KiB of `a, ` in one flow sequence 1.7 s),
 *   so the size limit alone lets one annotation block the event loop for seconds. 32 Ki tokens
 *   is ~8000 `key: value` lines — far more than any cloud-config or translation file — and
 *   bounds a parse to about half a second in the worst shape measured.
 * - 100 aliases: `yaml`'s own default; a legitimate document uses a handful of anchors.
 * - 4 MiB expanded: 16 times the largest annotation, so a document with a few aliases still
 *   passes, while the text built from it (seed files, held in memory) stays small.
 */
export const DOCUMENT_LIMITS: Readonly<DocumentLimits> = Object.freeze({
  maxBytes: 1024 * 1024,
  maxDepth: 64,
  maxTokens: 32 * 1024,
  maxAliasCount: 100,
  maxExpandedBytes: 4 * 1024 * 1024,
});

/** A document refused by a limit or as malformed; `field` names where it came from. */
export class DocumentLimitError extends InvalidArgumentError {
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}

export interface YamlParseOptions {
  /** YAML 1.1 for documents PyYAML (cloud-init) reads; 1.2 (yaml's default) otherwise. */
  version?: '1.1' | '1.2';
  /** Refuse duplicate mapping keys (default true); checked here in linear time, not by yaml. */
  uniqueKeys?: boolean;
  limits?: Partial<DocumentLimits>;
}

/**
 * Parses one YAML document within the limits. Returns undefined for a stream with no document
 * (empty or only comments) and null for an empty document; throws DocumentLimitError naming
 * `field` for anything over a limit, malformed, or more than one document.
 */
export function parseYamlBounded(text: string, field: string, options: YamlParseOptions = {}): unknown {
  const limits = { ...DOCUMENT_LIMITS, ...options.limits };
  checkSize(text, field, limits);
  const lineCounter = new LineCounter();
  const tokens = parseCstBounded(text, field, limits, lineCounter);
  // yaml's own uniqueKeys check compares each key with every earlier one: 20 000 keys (190 KB)
  // took 6.8 s. duplicateKey() does the same check with a Set.
  const composer = new Composer({ version: options.version ?? '1.2', uniqueKeys: false, logLevel: 'silent' });
  const docs: Document.Parsed[] = Array.from(composer.compose(tokens));
  if (docs.length === 0) return undefined;
  if (docs.length > 1) throw new DocumentLimitError(field, `must be exactly one YAML document, found ${docs.length}`);
  const doc = docs[0]!;
  const error = doc.errors[0];
  if (error) {
    const at = lineCounter.linePos(error.pos[0]);
    throw new DocumentLimitError(field, `not valid YAML: ${error.message.split('\n')[0]} at line ${at.line}, column ${at.col}`);
  }
  if (options.uniqueKeys ?? true) {
    const offset = duplicateKey(doc);
    if (offset !== undefined) {
      const at = lineCounter.linePos(offset);
      throw new DocumentLimitError(field, `not valid YAML: Map keys must be unique at line ${at.line}, column ${at.col}`);
    }
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: limits.maxAliasCount });
  } catch (err) {
    // yaml throws a ReferenceError for an alias bomb and for an unknown anchor.
    const message = err instanceof Error ? err.message : String(err);
    if (/alias count/i.test(message)) throw new DocumentLimitError(field, `expands more than ${limits.maxAliasCount} aliases`);
    throw new DocumentLimitError(field, `not valid YAML: ${message}`);
  }
  checkValueBounds(value, field, limits);
  return value;
}

/** JSON.parse within the limits (V8's JSON.parse is iterative, but the value is used recursively). */
export function parseJsonBounded(text: string, field: string, limits: Partial<DocumentLimits> = {}): unknown {
  const all = { ...DOCUMENT_LIMITS, ...limits };
  checkSize(text, field, all);
  const depth = jsonDepth(text, all.maxDepth);
  if (depth > all.maxDepth) throw tooDeep(field, all.maxDepth);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new DocumentLimitError(field, `not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  checkValueBounds(value, field, all);
  return value;
}

/**
 * Checks a value about to be used recursively or serialised: no cycle, nesting within maxDepth,
 * estimated serialised size within maxExpandedBytes. Iterative, and it stops at the first excess,
 * so it is itself bounded. The size estimate counts every string, key and number once per place it
 * appears (shared objects once per reference, as a serialiser writes them) plus two bytes of
 * indentation per nesting level per entry, which is what YAML and indented JSON add.
 */
export function checkValueBounds(value: unknown, field: string, limits: Partial<DocumentLimits> = {}): void {
  const { maxDepth, maxExpandedBytes } = { ...DOCUMENT_LIMITS, ...limits };
  const onPath = new Set<object>();
  // An entry is a value to enter at a depth, or the marker that leaves an object again.
  const stack: Array<{ value: unknown; depth: number; keyBytes: number } | { leave: object }> = [{ value, depth: 0, keyBytes: 0 }];
  let bytes = 0;
  while (stack.length > 0) {
    const entry = stack.pop()!;
    if ('leave' in entry) {
      onPath.delete(entry.leave);
      continue;
    }
    const { value: v, depth } = entry;
    bytes += entry.keyBytes + 2 * depth + 4 + scalarBytes(v);
    if (bytes > maxExpandedBytes) throw new DocumentLimitError(field, `expands to more than ${maxExpandedBytes} bytes`);
    const children = childrenOf(v);
    if (children === undefined) continue;
    const obj = v as object;
    if (onPath.has(obj)) throw new DocumentLimitError(field, 'has an alias that refers to a node containing it (a cycle)');
    if (depth + 1 > maxDepth) throw tooDeep(field, maxDepth);
    onPath.add(obj);
    stack.push({ leave: obj });
    for (const [key, child] of children) stack.push({ value: child, depth: depth + 1, keyBytes: key.length });
  }
}

function tooDeep(field: string, maxDepth: number): DocumentLimitError {
  return new DocumentLimitError(field, `nests deeper than ${maxDepth} levels`);
}

function checkSize(text: string, field: string, limits: DocumentLimits): void {
  // String length bounds the UTF-8 size from below: skip the count for obviously large texts.
  if (text.length > limits.maxBytes || Buffer.byteLength(text, 'utf8') > limits.maxBytes) {
    throw new DocumentLimitError(field, `is larger than ${limits.maxBytes} bytes`);
  }
}

/** Entries of a container value (key text for size, child), or undefined for a leaf. */
function childrenOf(v: unknown): Array<[string, unknown]> | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  if (Array.isArray(v)) return v.map((child) => ['', child]);
  if (v instanceof Map) return [...v.entries()].map(([k, child]) => [String(k), child]);
  if (v instanceof Set) return [...v.values()].map((child) => ['', child]);
  if (v instanceof Date || ArrayBuffer.isView(v)) return undefined;
  return Object.keys(v).map((k) => [k, (v as Record<string, unknown>)[k]]);
}

function scalarBytes(v: unknown): number {
  if (typeof v === 'string') return v.length;
  if (ArrayBuffer.isView(v)) return Math.ceil((v.byteLength * 4) / 3);
  if (typeof v === 'object' && v !== null) return 0;
  return 24; // numbers, booleans, null, dates: at most a short line
}

/**
 * Offset of the first mapping key equal to an earlier key of the same mapping, with yaml's notion
 * of equal (scalar keys with the same value; collection keys are never equal). Walked iteratively.
 */
function duplicateKey(doc: Document.Parsed): number | undefined {
  const stack: unknown[] = [doc.contents];
  while (stack.length > 0) {
    const node = stack.pop();
    if (isMap(node)) {
      const seen = new Set<unknown>();
      for (const pair of node.items) {
        const key = pair.key;
        if (isScalar(key) && !Number.isNaN(key.value)) {
          if (seen.has(key.value)) return key.range?.[0] ?? 0;
          seen.add(key.value);
        }
        stack.push(pair.key, pair.value);
      }
    } else if (isSeq(node)) {
      for (const item of node.items) stack.push(isPair(item) ? item.value : item);
    }
  }
  return undefined;
}

const COLLECTIONS = new Set(['block-map', 'block-seq', 'flow-collection']);

/**
 * The CST of `text`, refusing a nesting deeper than maxDepth while it is being built (the parser's
 * stack holds the open collections, each of which ends up inside the one below it) and measuring
 * the finished tree again (a collection can also become a child without being pushed, e.g. a flow
 * collection turned into an implicit key).
 */
function parseCstBounded(text: string, field: string, limits: DocumentLimits, lineCounter: LineCounter): CST.Token[] {
  const parser = new Parser(lineCounter.addNewLine);
  lineCounter.addNewLine(0);
  const tokens: CST.Token[] = [];
  let count = 0;
  for (const lexeme of new Lexer().lex(text, false)) {
    if (++count > limits.maxTokens) throw new DocumentLimitError(field, `has more than ${limits.maxTokens} YAML tokens`);
    for (const token of parser.next(lexeme)) tokens.push(token);
    if (parser.stack.length > limits.maxDepth) {
      // The stack is the document, the open collections and at most a few scalar tokens.
      const open = parser.stack.reduce((n, t) => n + (COLLECTIONS.has(t.type) ? 1 : 0), 0);
      if (open > limits.maxDepth || parser.stack.length > 2 * limits.maxDepth + 8) throw tooDeep(field, limits.maxDepth);
    }
  }
  for (const token of parser.end()) tokens.push(token);
  for (const token of tokens) {
    if (cstDepth(token, limits.maxDepth) > limits.maxDepth) throw tooDeep(field, limits.maxDepth);
  }
  return tokens;
}

/** Collection nesting of a CST token, walked iteratively; stops counting past `stopAbove`. */
function cstDepth(root: CST.Token, stopAbove: number): number {
  let max = 0;
  const stack: Array<[CST.Token, number]> = [[root, 0]];
  while (stack.length > 0) {
    const [token, above] = stack.pop()!;
    const depth = above + (COLLECTIONS.has(token.type) ? 1 : 0);
    if (depth > max) max = depth;
    if (max > stopAbove) return max;
    switch (token.type) {
      case 'document':
        if (token.value) stack.push([token.value, depth]);
        break;
      case 'block-map':
      case 'block-seq':
      case 'flow-collection':
        for (const item of token.items) {
          if ('key' in item && item.key) stack.push([item.key, depth]);
          if (item.value) stack.push([item.value, depth]);
        }
        break;
      default:
        break;
    }
  }
  return max;
}

/** Bracket nesting of JSON text outside strings; stops counting past `stopAbove`. */
function jsonDepth(text: string, stopAbove: number): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      depth++;
      if (depth > max) max = depth;
      if (max > stopAbove) return max;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/**
 * Reads at most `maxBytes` of a text file (UTF-8), refusing a larger one without reading it all:
 * the size is what is read, not what stat says, so a file that grows (or a FIFO) cannot make it
 * read without end. Errors are DocumentLimitError naming `field`, or the fs error.
 */
export async function readTextFileBounded(path: string, field: string, maxBytes = DOCUMENT_LIMITS.maxBytes): Promise<string> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(maxBytes + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > maxBytes) throw new DocumentLimitError(field, `is larger than ${maxBytes} bytes`);
    }
    return buffer.toString('utf8', 0, length);
  } finally {
    await handle.close();
  }
}

/** readTextFileBounded for start-up code that reads synchronously (the config file). */
export function readTextFileBoundedSync(path: string, field: string, maxBytes = DOCUMENT_LIMITS.maxBytes): string {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(maxBytes + 1);
    let length = 0;
    for (;;) {
      const bytesRead = readSync(fd, buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > maxBytes) throw new DocumentLimitError(field, `is larger than ${maxBytes} bytes`);
    }
    return buffer.toString('utf8', 0, length);
  } finally {
    closeSync(fd);
  }
}
