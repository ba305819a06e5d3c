/**
 * Preload for the bench's profile daemon only (`node --import <this> …/main.js serve …`): wraps,
 * at run time, the steps serve takes for RunPodSandbox, CreateContainer and StartContainer with
 * timing spans, and appends one JSON line per finished call to the file named by
 * VMLET_BENCH_SPANS_FILE. src/ is not touched; the measured daemon of the bench runs without it.
 *
 * What is timed: the service methods (the roots), their collaborators found by class (records,
 * netd calls, libvirt calls, console pump), every execFile (qemu-img, genisoimage) and the
 * fs/promises calls and fsyncs they make. Builtins are patched before any product module loads
 * (the product binds `promisify(execFile)` when its module is evaluated), then
 * syncBuiltinESMExports() makes the ESM bindings see the patched functions.
 *
 * netd and Node helpers inherit this --import; there it does nothing (it looks at the subcommand).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import childProcess from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { basename } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { LIBVIRT_START_SPAN, SPANS_FILE_ENV, type RootSpanRecord } from './span_record.js';


interface Frame {
  root: RootSpanRecord;
  t0: number;
  path: string;
}

const als = new AsyncLocalStorage<Frame>();

/** Where finished root records go (the file, in the daemon; the tests read them directly). */
let sink: (record: RootSpanRecord) => void = () => {};

export function setRecordSink(fn: (record: RootSpanRecord) => void): void {
  sink = fn;
}

function appendToFile(file: string): (record: RootSpanRecord) => void {
  return (record) => {
    try {
      fs.appendFileSync(file, `${JSON.stringify(record)}\n`);
    } catch {
      // The bench reads what arrived; a lost line shows as a missing sample there.
    }
  };
}

/** A span's path: its ancestors below the root, then its own name. */
function childPath(parent: Frame, name: string): string {
  return parent.path ? `${parent.path} > ${name}` : name;
}

function addSpan(frame: Frame, path: string, startMs: number, endMs: number): void {
  const s = (frame.root.spans[path] ??= [0, 0, startMs - frame.t0, endMs - frame.t0]);
  s[0] += 1;
  s[1] += endMs - startMs;
  s[2] = Math.min(s[2], startMs - frame.t0);
  s[3] = Math.max(s[3], endMs - frame.t0);
}

/**
 * A timed version of `fn`. As a root it starts a record (when no root is running in this async
 * context); as a child it only counts inside a root, so calls outside the three RPCs cost a lookup.
 */
export function timed<F extends (...args: any[]) => any>(fn: F, label: string | ((args: unknown[]) => string), isRoot = false): F {
  return function (this: unknown, ...args: unknown[]) {
    const parent = als.getStore();
    if (!isRoot && !parent) return fn.apply(this, args);
    if (isRoot && parent) return fn.apply(this, args);
    const name = typeof label === 'function' ? label(args) : label;
    const started = performance.now();
    const frame: Frame = parent
      ? { ...parent, path: childPath(parent, name) }
      : { root: { root: name, startedAt: performance.timeOrigin + started, durMs: 0, ok: true, spans: {} }, t0: started, path: '' };
    const finish = (ok: boolean) => {
      const ended = performance.now();
      if (parent) addSpan(parent, frame.path, started, ended);
      else {
        frame.root.durMs = ended - started;
        frame.root.ok = ok;
        sink(frame.root);
      }
    };
    return als.run(frame, () => {
      let result: unknown;
      try {
        result = fn.apply(this, args);
      } catch (err) {
        finish(false);
        throw err;
      }
      if (result && typeof (result as Promise<unknown>).then === 'function') {
        return (result as Promise<unknown>).then(
          (v) => {
            finish(true);
            return v;
          },
          (err: unknown) => {
            finish(false);
            throw err;
          },
        );
      }
      finish(true);
      return result;
    });
  } as F;
}

export function wrapMethod(proto: object, method: string, label: string | ((args: unknown[]) => string), isRoot = false): void {
  const target = proto as Record<string, unknown>;
  const original = target[method];
  // A renamed product method must fail the profile loudly, not leave a step silently untimed.
  if (typeof original !== 'function') throw new Error(`serve_spans: ${method} is not a method any more`);
  target[method] = timed(original as (...a: unknown[]) => unknown, label, isRoot);
}

function execLabel(args: unknown[]): string {
  const file = typeof args[0] === 'string' ? basename(args[0]) : '?';
  const first = Array.isArray(args[1]) && typeof args[1][0] === 'string' ? ` ${args[1][0]}` : '';
  return `exec ${file}${first}`;
}

/** execFile with a callback: the span ends when the callback runs. Its promisified form is timed too. */
export function patchExecFile(): void {
  const original = childProcess.execFile;
  const custom = (original as unknown as Record<symbol, (...a: unknown[]) => Promise<unknown>>)[promisify.custom];
  const patched = function (this: unknown, ...args: unknown[]) {
    const parent = als.getStore();
    const cbIndex = args.findIndex((a) => typeof a === 'function');
    if (!parent || cbIndex < 0) return (original as (...a: unknown[]) => unknown).apply(this, args);
    const path = childPath(parent, execLabel(args));
    const started = performance.now();
    const cb = args[cbIndex] as (...a: unknown[]) => void;
    args[cbIndex] = (...cbArgs: unknown[]) => {
      addSpan(parent, path, started, performance.now());
      cb(...cbArgs);
    };
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  };
  if (custom) {
    (patched as unknown as Record<symbol, unknown>)[promisify.custom] = function (this: unknown, ...args: unknown[]) {
      const parent = als.getStore();
      const promise = custom.apply(this, args);
      if (!parent) return promise;
      const path = childPath(parent, execLabel(args));
      const started = performance.now();
      const done = () => addSpan(parent, path, started, performance.now());
      promise.then(done, done);
      return promise;
    };
  }
  (childProcess as unknown as Record<string, unknown>).execFile = patched;
}

const FS_CALLS = ['mkdir', 'mkdtemp', 'writeFile', 'readFile', 'rename', 'rm', 'unlink', 'open', 'stat', 'readdir'] as const;

async function patchFs(): Promise<void> {
  const table = fsp as unknown as Record<string, (...a: unknown[]) => unknown>;
  for (const name of FS_CALLS) table[name] = timed(table[name]!, `fs ${name}`);
  // FileHandle is not exported: take its prototype from a handle.
  const probe = await fsp.open('/proc/self/stat', 'r');
  const handleProto = Object.getPrototypeOf(probe) as object;
  await probe.close();
  wrapMethod(handleProto, 'sync', 'fsync');
  wrapMethod(handleProto, 'writeFile', 'fs handle.writeFile');
}

async function install(): Promise<void> {
  patchExecFile();
  await patchFs();
  syncBuiltinESMExports();
  // Product modules only now, so they bind the patched builtins.
  const { SandboxService } = await import('../../src/sandbox/service.js');
  const { ContainerService } = await import('../../src/container/service.js');
  const { NetdClient } = await import('../../src/netd/client.js');
  const { RecordStore } = await import('../../src/store/record_store.js');
  const { LibvirtClient } = await import('../../src/libvirt/client.js');
  const { ConsolePumps } = await import('../../src/container/console_pumps.js');
  wrapMethod(SandboxService.prototype, 'run', 'RunPodSandbox', true);
  wrapMethod(SandboxService.prototype, 'vmNetwork', 'await VM side of the sandbox');
  wrapMethod(ContainerService.prototype, 'create', 'CreateContainer', true);
  wrapMethod(ContainerService.prototype, 'start', 'StartContainer', true);
  wrapMethod(NetdClient.prototype, 'call', (args) => `netd ${String(args[0])}`);
  wrapMethod(RecordStore.prototype, 'put', 'record write');
  wrapMethod(RecordStore.prototype, 'delete', 'record delete');
  wrapMethod(LibvirtClient.prototype, 'defineXml', 'libvirt define');
  wrapMethod(LibvirtClient.prototype, 'create', LIBVIRT_START_SPAN);
  wrapMethod(LibvirtClient.prototype, 'lookupByName', 'libvirt lookup');
  wrapMethod(ConsolePumps.prototype, 'start', 'console pump start');
}

if (process.argv[2] === 'serve') {
  const file = process.env[SPANS_FILE_ENV];
  if (!file) throw new Error(`serve_spans: ${SPANS_FILE_ENV} is not set`);
  setRecordSink(appendToFile(file));
  await install();
}
