import { DocumentLimitError, parseYamlBounded, readTextFileBoundedSync } from '../documents/bounded.js';
import { CONFIG_TABLE, ConfigError, defaultRaw, WARM_POOL_MAX_FLOOR, type Config, type ConfigRow } from './table.js';

export interface ConfigSources {
  /** Flag values by flag name (kebab case), as given on the command line. */
  flags?: Record<string, string | undefined>;
  env?: NodeJS.ProcessEnv;
  /** Path of a YAML or JSON file whose keys are flag names. */
  file?: string;
}

/** Precedence, lowest first: defaults, config file, VMLET_* environment, flags. */
export function loadConfig(sources: ConfigSources = {}): Config {
  const fileValues = sources.file ? readConfigFile(sources.file) : {};
  const env = sources.env ?? {};
  const flags = sources.flags ?? {};
  const rawOf = (row: ConfigRow): string | undefined => flags[row.flag] ?? env[row.env] ?? fileValues[row.flag];

  const stateRow = CONFIG_TABLE.find((r) => r.key === 'stateDir')!;
  const stateDir = stateRow.parse(rawOf(stateRow) ?? stateRow.defaultText) as string;
  const out: Record<string, unknown> = {};
  for (const row of CONFIG_TABLE) {
    out[row.key] = row.parse(rawOf(row) ?? defaultRaw(row, stateDir));
  }
  const config = out as unknown as Config;
  // The warm pool's ceiling defaults to its floor (a fixed size) and cannot be below it.
  if (config.vmWarmPoolMax === WARM_POOL_MAX_FLOOR) config.vmWarmPoolMax = config.vmWarmPool;
  else if (config.vmWarmPool === 0 && config.vmWarmPoolMax > 0) {
    throw new ConfigError('vm-warm-pool-max', `needs a warm pool (--vm-warm-pool 1 or more): with --vm-warm-pool 0 no VM is kept warm, got ${config.vmWarmPoolMax}`);
  } else if (config.vmWarmPoolMax < config.vmWarmPool) {
    throw new ConfigError('vm-warm-pool-max', `must be at least --vm-warm-pool (${config.vmWarmPool}), got ${config.vmWarmPoolMax}`);
  }
  return config;
}

function readConfigFile(path: string): Record<string, string> {
  let doc: unknown;
  try {
    // Bounded like every user document: a config file of 60000 nested lists must not crash the start.
    const field = `config file ${path}`;
    doc = parseYamlBounded(readTextFileBoundedSync(path, field), field);
  } catch (err) {
    if (err instanceof DocumentLimitError) throw new ConfigError('config', err.message);
    throw new ConfigError('config', `cannot read ${path}: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError('config', `${path} must hold a mapping of option names to values`);
  const known = new Set(CONFIG_TABLE.map((r) => r.flag));
  const values: Record<string, string> = {};
  for (const [key, value] of Object.entries(doc)) {
    if (!known.has(key)) throw new ConfigError(key, `unknown key in ${path} (known: ${[...known].join(', ')})`);
    if (Array.isArray(value)) values[key] = value.map(String).join(':');
    else if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') values[key] = String(value);
    else throw new ConfigError(key, `in ${path} must be a string, number or list`);
  }
  return values;
}

/** The README's configuration table, generated from the same rows. */
export function configMarkdownTable(): string {
  const lines = ['| flag | environment | default | meaning |', '| --- | --- | --- | --- |'];
  for (const row of CONFIG_TABLE) {
    lines.push(`| \`--${row.flag}\` | \`${row.env}\` | \`${row.defaultText}\` | ${row.description} |`);
  }
  return lines.join('\n');
}
