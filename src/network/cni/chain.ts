/**
 * Runs a network configuration list the way libcni does: ADD through the plugins in order, each
 * seeing the previous one's result as prevResult; DEL in reverse with the cached ADD result; CHECK
 * (spec 0.4.0+) in order against the cached result. A failed ADD is undone with a DEL of the
 * whole list before its error is rethrown.
 */
import { access } from 'node:fs/promises';
import { AlreadyExistsError, FailedPreconditionError, errorText } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import type { AttachmentCache, AttachmentKey, CachedAttachment } from './cache.js';
import type { NetworkConfigList } from './config.js';
import { CniPluginError } from './errors.js';
import type { PluginRunner } from './exec.js';
import {
  buildCniArgs,
  buildPluginConfig,
  validateContainerId,
  validateIfName,
  validateNetnsPath,
  type CapabilityArgs,
  type CniCommand,
  type PodArgs,
} from './invocation.js';
import { parseCniResult, type CniResult } from './result.js';
import { passesPrevResultOnDel, supportsCheck } from './version.js';

export interface AttachmentRequest {
  /** CNI_CONTAINERID: the sandbox id. */
  containerId: string;
  /** Path of the sandbox's netns (e.g. /run/netns/NAME). */
  netns: string;
  /** CNI_IFNAME: name of the interface inside the netns (eth0). */
  ifName: string;
  pod?: PodArgs;
  /** Values for plugins that declare capabilities (portMappings, dns, bandwidth, …). */
  capabilityArgs?: CapabilityArgs;
}

export interface AddOutcome {
  /** The validated, version-neutral result. */
  result: CniResult;
  /** The last plugin's result exactly as printed (what later plugins and DEL get as prevResult). */
  raw: unknown;
}

export interface CniChainDeps {
  runner: PluginRunner;
  cache: AttachmentCache;
  logger?: Logger;
  /** Whether a netns path still exists; a DEL of a vanished netns passes CNI_NETNS="". */
  netnsExists?: (path: string) => Promise<boolean>;
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

export class CniChain {
  private readonly runner: PluginRunner;
  private readonly cache: AttachmentCache;
  private readonly logger: Logger;
  private readonly netnsExists: (path: string) => Promise<boolean>;
  /** The spec forbids parallel operations on one attachment; calls on the same key queue here. */
  private readonly inFlight = new Map<string, Promise<unknown>>();

  constructor(deps: CniChainDeps) {
    this.runner = deps.runner;
    this.cache = deps.cache;
    this.logger = (deps.logger ?? silentLogger).child({ component: 'cni-chain' });
    this.netnsExists = deps.netnsExists ?? pathExists;
  }

  /** Attaches the sandbox to `config`'s network and caches the result for DEL and CHECK. */
  async add(config: NetworkConfigList, req: AttachmentRequest): Promise<AddOutcome> {
    validateContainerId(req.containerId);
    validateIfName(req.ifName);
    validateNetnsPath(req.netns, false);
    buildCniArgs(req.pod);
    const key = { networkName: config.name, containerId: req.containerId, ifName: req.ifName };
    return this.serialize(key, () => this.addLocked(config, req, key));
  }

  /**
   * Detaches the sandbox from network `networkName`. The config and args the ADD used come from
   * the cache; `fallbackConfig` is used when nothing was cached. Succeeds when the attachment is
   * already gone (repeat DEL, vanished netns) and removes the cache record when done.
   */
  async del(networkName: string, req: AttachmentRequest, fallbackConfig?: NetworkConfigList): Promise<void> {
    validateContainerId(req.containerId);
    validateIfName(req.ifName);
    validateNetnsPath(req.netns, true);
    const key = { networkName, containerId: req.containerId, ifName: req.ifName };
    return this.serialize(key, () => this.delLocked(key, req, fallbackConfig));
  }

  /**
   * Starts the first plugin a del() of the cached attachment runs (the list's last), its stdin
   * held (PluginRunner.prestart), so that the del() that follows with the same request only hands
   * it its config: for a caller with other work before the DEL (netd releasing the VM side).
   * Returns the discard, to call when the del() is over or will not come; a no-op when the runner
   * cannot prestart.
   */
  prestartDel(cached: CachedAttachment, req: AttachmentRequest): () => void {
    const { runner } = this;
    const plugin = cached.config.plugins.at(-1);
    if (!runner.prestart || !plugin) return () => {};
    let discarded = false;
    let discard: (() => void) | undefined;
    // The same netns and args runDel will pass (delLocked's netns, then its existence).
    const netns = req.netns || cached.netns;
    void (netns ? this.netnsExists(netns) : Promise.resolve(false))
      .then((exists) => {
        if (discarded) return;
        discard = runner.prestart!({ command: 'DEL', pluginType: plugin.type, containerId: req.containerId, netns: exists ? netns : '', ifName: req.ifName, cniArgs: buildCniArgs(cached.pod ?? req.pod) });
      })
      // Nothing prestarted: the del() spawns its plugin itself.
      .catch(() => {});
    return () => {
      discarded = true;
      discard?.();
    };
  }

  /** Asks every plugin whether the attachment is still as ADD left it (spec 0.4.0+). */
  async check(config: NetworkConfigList, req: AttachmentRequest): Promise<void> {
    validateContainerId(req.containerId);
    validateIfName(req.ifName);
    validateNetnsPath(req.netns, false);
    const key = { networkName: config.name, containerId: req.containerId, ifName: req.ifName };
    return this.serialize(key, () => this.checkLocked(config, req, key));
  }

  private async addLocked(config: NetworkConfigList, req: AttachmentRequest, key: AttachmentKey): Promise<AddOutcome> {
    const existing = await this.loadOrForget(key);
    if (existing?.state === 'added') {
      throw new AlreadyExistsError(`${config.name}/${req.containerId}/${req.ifName} is already attached; DEL it first`);
    }
    if (existing) {
      // A previous ADD died half way: clean up what it may have made before starting over.
      this.logger.warn({ ...key }, 'found an unfinished CNI ADD; running DEL before adding again');
      await this.runDel(existing.config, { ...req, netns: existing.netns }, existing, undefined);
    }
    const record: CachedAttachment = {
      kind: 'vmlet-cni-attachment-v1',
      ...key,
      state: 'adding',
      netns: req.netns,
      config,
      ...(req.pod ? { pod: req.pod } : {}),
      ...(req.capabilityArgs ? { capabilityArgs: req.capabilityArgs } : {}),
    };
    await this.cache.save(record);
    const cniArgs = buildCniArgs(req.pod);
    let prevResult: unknown;
    let parsed: CniResult | undefined;
    try {
      for (const plugin of config.plugins) {
        const out = await this.runner.run({
          command: 'ADD',
          pluginType: plugin.type,
          containerId: req.containerId,
          netns: req.netns,
          ifName: req.ifName,
          cniArgs,
          config: buildPluginConfig(config, plugin, { prevResult, capabilityArgs: req.capabilityArgs }),
        });
        if (out === undefined) {
          throw new CniPluginError({ kind: 'bad-output', plugin: plugin.type, command: 'ADD' }, 'printed no result');
        }
        parsed = parseCniResult(out);
        prevResult = out;
      }
      await this.cache.save({ ...record, state: 'added', result: prevResult });
    } catch (err) {
      await this.rollback(config, req, record, err);
      throw err;
    }
    return { result: parsed!, raw: prevResult };
  }

  private async rollback(config: NetworkConfigList, req: AttachmentRequest, record: CachedAttachment, cause: unknown): Promise<void> {
    this.logger.warn({ network: config.name, containerId: req.containerId, error: errorText(cause) }, 'CNI ADD failed; running DEL for the whole list');
    try {
      await this.runDel(config, req, record, undefined);
      await this.cache.remove(record);
    } catch (delErr) {
      // The "adding" record stays, so a later DEL (kubelet retries StopPodSandbox) finishes the job.
      this.logger.error({ network: config.name, containerId: req.containerId, error: errorText(delErr) }, 'DEL after failed ADD failed too');
    }
  }

  private async delLocked(key: AttachmentKey, req: AttachmentRequest, fallbackConfig?: NetworkConfigList): Promise<void> {
    const started = performance.now();
    const cached = await this.loadOrForget(key);
    const loadedAt = performance.now();
    const config = cached?.config ?? fallbackConfig;
    if (!config) {
      this.logger.info({ ...key }, 'CNI DEL: no cached attachment and no config; nothing to do');
      return;
    }
    if (config.name !== key.networkName) {
      throw new FailedPreconditionError(`CNI DEL: config is for network ${config.name}, not ${key.networkName}`);
    }
    const prevResult = cached?.state === 'added' && passesPrevResultOnDel(config.cniVersion) ? cached.result : undefined;
    const netns = req.netns || cached?.netns || '';
    await this.runDel(config, { ...req, netns }, cached, prevResult);
    const ranAt = performance.now();
    await this.cache.remove(key);
    const ms = (a: number, b: number) => Math.round((b - a) * 100) / 100;
    this.logger.debug({ ...key, cacheReadMs: ms(started, loadedAt), pluginsMs: ms(loadedAt, ranAt), cacheRemoveMs: ms(ranAt, performance.now()) }, 'CNI DEL done');
  }

  /**
   * DEL through the list in reverse. Unlike libcni, it goes on past a failing plugin so one
   * broken plugin does not keep the others from releasing what they hold; the first error is
   * thrown at the end, and a retry runs them all again (DEL is idempotent).
   */
  private async runDel(
    config: NetworkConfigList,
    req: AttachmentRequest,
    cached: CachedAttachment | undefined,
    prevResult: unknown,
  ): Promise<void> {
    const netns = req.netns && (await this.netnsExists(req.netns)) ? req.netns : '';
    const pod = cached?.pod ?? req.pod;
    const capabilityArgs = cached?.capabilityArgs ?? req.capabilityArgs;
    const cniArgs = buildCniArgs(pod);
    let firstError: unknown;
    for (const plugin of [...config.plugins].reverse()) {
      try {
        await this.runner.run({
          command: 'DEL',
          pluginType: plugin.type,
          containerId: req.containerId,
          netns,
          ifName: req.ifName,
          cniArgs,
          config: buildPluginConfig(config, plugin, { prevResult, capabilityArgs }),
        });
      } catch (err) {
        this.logger.warn({ network: config.name, plugin: plugin.type, containerId: req.containerId, error: errorText(err) }, 'CNI DEL failed');
        firstError ??= err;
      }
    }
    if (firstError !== undefined) throw firstError;
  }

  private async checkLocked(config: NetworkConfigList, req: AttachmentRequest, key: AttachmentKey): Promise<void> {
    if (!supportsCheck(config.cniVersion)) {
      throw new FailedPreconditionError(`CNI CHECK needs cniVersion 0.4.0 or later; network ${config.name} uses ${config.cniVersion}`);
    }
    if (config.disableCheck) return;
    const cached = await this.cache.load(key);
    if (cached?.state !== 'added' || cached.result === undefined) {
      throw new FailedPreconditionError(`CNI CHECK: ${config.name}/${req.containerId}/${req.ifName} has no cached ADD result`);
    }
    const cniArgs = buildCniArgs(cached.pod ?? req.pod);
    for (const plugin of config.plugins) {
      await this.runner.run({
        command: 'CHECK' satisfies CniCommand,
        pluginType: plugin.type,
        containerId: req.containerId,
        netns: req.netns,
        ifName: req.ifName,
        cniArgs,
        config: buildPluginConfig(config, plugin, {
          prevResult: cached.result,
          capabilityArgs: cached.capabilityArgs ?? req.capabilityArgs,
        }),
      });
    }
  }

  /** A cache record that cannot be read must not block a DEL: log it and carry on without it. */
  private async loadOrForget(key: AttachmentKey): Promise<CachedAttachment | undefined> {
    try {
      return await this.cache.load(key);
    } catch (err) {
      this.logger.warn({ ...key, error: errorText(err) }, 'unreadable CNI cache record ignored');
      return undefined;
    }
  }

  private serialize<T>(key: AttachmentKey, fn: () => Promise<T>): Promise<T> {
    const id = `${key.networkName}\0${key.containerId}\0${key.ifName}`;
    const before = this.inFlight.get(id) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const settled = run.then(
      () => {},
      () => {},
    );
    this.inFlight.set(id, settled);
    void settled.then(() => {
      if (this.inFlight.get(id) === settled) this.inFlight.delete(id);
    });
    return run;
  }
}
