/**
 * Loads the node's CNI network configuration the way kubelet/libcni pick it: the files `*.conf`,
 * `*.conflist` and `*.json` of one directory, in file-name order, the first valid one wins.
 * Parsing is pure; `loadNetworkConfig` is the thin reader over the directory.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import {
  OLDEST_CNI_VERSION,
  SUPPORTED_CNI_VERSIONS,
  compareVersions,
  isSupportedVersion,
  parseVersion,
  type CniVersion,
} from './version.js';

/** One plugin entry of a list, kept as the JSON object the admin wrote (plugins own their fields). */
export interface PluginConfig {
  readonly type: string;
  /** Capabilities the plugin asks the runtime to fill into `runtimeConfig` (e.g. portMappings). */
  readonly capabilities?: Readonly<Record<string, boolean>>;
  readonly [field: string]: unknown;
}

export interface NetworkConfigList {
  cniVersion: CniVersion;
  name: string;
  /** Set by the admin to tell the runtime never to run CHECK on this network (spec 0.4.0+). */
  disableCheck: boolean;
  plugins: PluginConfig[];
}

export type ConfigParseResult = { ok: true; config: NetworkConfigList } | { ok: false; reason: string };

export interface SkippedConfigFile {
  file: string;
  reason: string;
}

export type ConfigLoadResult =
  | { ok: true; config: NetworkConfigList; file: string; skipped: SkippedConfigFile[] }
  | { ok: false; reason: string; skipped: SkippedConfigFile[] };

/** File extensions libcni reads from a conf dir. */
export const CONFIG_EXTENSIONS = ['.conf', '.conflist', '.json'] as const;

/** Files bigger than this are refused unread: a network config is a few hundred bytes. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/** Network names end up in file names (cache, IPAM dirs): libcni's charset, bounded length. */
const NETWORK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** Plugin types are executable names looked up in the bin dirs: no path separators, no "..". */
const PLUGIN_TYPE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function isValidNetworkName(name: unknown): name is string {
  return typeof name === 'string' && NETWORK_NAME.test(name);
}

export function isValidPluginType(type: unknown): type is string {
  return typeof type === 'string' && PLUGIN_TYPE.test(type) && !type.includes('..');
}

/** The names of `names` that are config files, in the order they are tried. */
export function selectConfigFiles(names: readonly string[]): string[] {
  return names
    .filter((n) => (CONFIG_EXTENSIONS as readonly string[]).includes(extname(n)) && !n.startsWith('.'))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

type Checked<T> = { ok: true; value: T } | { ok: false; reason: string };

/** Picks the version to speak: the best supported one of `cniVersions` (spec 1.1), else `cniVersion`. */
function checkVersion(doc: Record<string, unknown>): Checked<CniVersion> {
  const listed = doc.cniVersions;
  if (listed !== undefined) {
    if (!Array.isArray(listed) || !listed.every((v) => typeof v === 'string')) {
      return { ok: false, reason: '"cniVersions" must be a list of version strings' };
    }
    const usable = listed.filter(isSupportedVersion).sort(compareVersions);
    if (usable.length > 0) return { ok: true, value: usable[usable.length - 1]! };
  }
  const v = doc.cniVersion;
  if (v === undefined || v === '') return { ok: false, reason: 'missing cniVersion' };
  if (parseVersion(v) === undefined) return { ok: false, reason: `cniVersion ${JSON.stringify(v)} is not a version` };
  const text = v as string;
  if (compareVersions(text, OLDEST_CNI_VERSION) < 0) {
    return { ok: false, reason: `cniVersion "${text}" is older than ${OLDEST_CNI_VERSION}, the oldest vmlet supports` };
  }
  if (!isSupportedVersion(text)) {
    return {
      ok: false,
      reason: `cniVersion "${text}" is not supported (vmlet supports ${SUPPORTED_CNI_VERSIONS.join(', ')})`,
    };
  }
  return { ok: true, value: text };
}

function checkName(doc: Record<string, unknown>): Checked<string> {
  const name = doc.name;
  if (name === undefined || name === '') return { ok: false, reason: 'missing network name' };
  if (!isValidNetworkName(name)) {
    return {
      ok: false,
      reason: `network name ${JSON.stringify(name)} is invalid (letters, digits, "_", ".", "-"; 128 characters at most)`,
    };
  }
  return { ok: true, value: name };
}

function checkPlugin(p: unknown, where: string): Checked<PluginConfig> {
  if (!isObject(p)) return { ok: false, reason: `${where} is not a JSON object` };
  if (p.type === undefined || p.type === '') return { ok: false, reason: `${where}: missing "type"` };
  if (!isValidPluginType(p.type)) {
    return { ok: false, reason: `${where}: type ${JSON.stringify(p.type)} is not a plugin name` };
  }
  const caps = p.capabilities;
  if (caps !== undefined && (!isObject(caps) || !Object.values(caps).every((v) => typeof v === 'boolean'))) {
    return { ok: false, reason: `${where}: "capabilities" must map capability names to true/false` };
  }
  return { ok: true, value: p as PluginConfig };
}

function finish(
  doc: Record<string, unknown>,
  rawPlugins: unknown[],
  pluginWhere: (i: number) => string,
): ConfigParseResult {
  const version = checkVersion(doc);
  if (!version.ok) return version;
  const name = checkName(doc);
  if (!name.ok) return name;
  const plugins: PluginConfig[] = [];
  for (const [i, raw] of rawPlugins.entries()) {
    const p = checkPlugin(raw, pluginWhere(i));
    if (!p.ok) return p;
    plugins.push(p.value);
  }
  if (doc.disableCheck !== undefined && typeof doc.disableCheck !== 'boolean') {
    return { ok: false, reason: '"disableCheck" must be true or false' };
  }
  return {
    ok: true,
    config: { cniVersion: version.value, name: name.value, disableCheck: doc.disableCheck === true, plugins },
  };
}

/** Parses a network configuration list (`.conflist`). */
export function parseConfigList(doc: Record<string, unknown>): ConfigParseResult {
  const plugins = doc.plugins;
  if (plugins === undefined) return { ok: false, reason: 'no "plugins" list' };
  if (!Array.isArray(plugins)) return { ok: false, reason: '"plugins" is not a list' };
  if (plugins.length === 0) return { ok: false, reason: '"plugins" is empty' };
  return finish(doc, plugins, (i) => `plugins[${i}]`);
}

/** Parses a single-plugin network configuration (`.conf`) and wraps it as a one-plugin list. */
export function parseSingleConfig(doc: Record<string, unknown>): ConfigParseResult {
  if (doc.type === undefined && Array.isArray(doc.plugins)) {
    return { ok: false, reason: 'holds a "plugins" list but is not named .conflist' };
  }
  return finish(doc, [doc], () => 'plugin');
}

/**
 * Parses the text of one config file; the extension decides the shape (`.conflist` a list,
 * `.conf` a single plugin, `.json` either, told apart by a "plugins" key).
 */
export function parseConfigFile(fileName: string, text: string): ConfigParseResult {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `not valid JSON: ${(err as Error).message}` };
  }
  if (!isObject(doc)) return { ok: false, reason: 'not a JSON object' };
  const ext = extname(fileName);
  if (ext === '.conflist' || (ext === '.json' && doc.plugins !== undefined)) return parseConfigList(doc);
  return parseSingleConfig(doc);
}

/**
 * Reads `confDir` and returns the first valid network config in file-name order. Every file
 * refused on the way is listed in `skipped` with its reason, so the caller can log it.
 */
export async function loadNetworkConfig(confDir: string): Promise<ConfigLoadResult> {
  const all = await loadNetworkConfigs(confDir);
  if (!all.ok) return all;
  const [first] = all.configs;
  return { ok: true, config: first!.config, file: first!.file, skipped: all.skipped };
}

export type ConfigsLoadResult =
  | { ok: true; configs: { config: NetworkConfigList; file: string }[]; skipped: SkippedConfigFile[] }
  | { ok: false; reason: string; skipped: SkippedConfigFile[] };

/**
 * Every valid network config of `confDir`, in file-name order (the first is the default network),
 * for pods that name networks (pod_networks.ts). Fails as loadNetworkConfig when none is valid.
 */
export async function loadNetworkConfigs(confDir: string): Promise<ConfigsLoadResult> {
  let names: string[];
  try {
    names = await readdir(confDir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? (err as Error).message})`;
    return { ok: false, reason: `no network config found in ${confDir}: the directory ${why}`, skipped: [] };
  }
  const skipped: SkippedConfigFile[] = [];
  const configs: { config: NetworkConfigList; file: string }[] = [];
  for (const name of selectConfigFiles(names)) {
    const file = join(confDir, name);
    const parsed = await readAndParse(file, name);
    if (parsed.ok) configs.push({ config: parsed.config, file });
    else skipped.push({ file, reason: parsed.reason });
  }
  if (configs.length > 0) return { ok: true, configs, skipped };
  if (skipped.length === 0) {
    return { ok: false, reason: `no network config found in ${confDir} (no .conf, .conflist or .json file)`, skipped };
  }
  const reasons = skipped.map((s) => `${s.file}: ${s.reason}`).join('; ');
  return { ok: false, reason: `no valid network config in ${confDir}: ${reasons}`, skipped };
}

/** The config named `name` among `configs` (the first by file name when several share it). */
export function configNamed(configs: readonly { config: NetworkConfigList }[], name: string): NetworkConfigList | undefined {
  return configs.find((c) => c.config.name === name)?.config;
}

async function readAndParse(file: string, name: string): Promise<ConfigParseResult> {
  try {
    const st = await stat(file);
    if (!st.isFile()) return { ok: false, reason: 'not a regular file' };
    if (st.size > MAX_CONFIG_BYTES) return { ok: false, reason: `larger than ${MAX_CONFIG_BYTES} bytes` };
    return parseConfigFile(name, await readFile(file, 'utf8'));
  } catch (err) {
    return { ok: false, reason: `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
  }
}
