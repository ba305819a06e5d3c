#!/usr/bin/env node
/** The `vmlet` command. Every subcommand has --help; serve's options come from the config table. */
import { Command, Option } from 'commander';
import { CONFIG_TABLE, ConfigError, type Config } from './config/table.js';
import { loadConfig } from './config/load.js';
import { VMLET_VERSION, CRI_API_VERSION } from './version.js';

function buildProgram(): Command {
  const program = new Command('vmlet')
    .description('Kubernetes CRI runtime that runs every pod as a libvirt/QEMU virtual machine')
    .version(VMLET_VERSION, '-V, --version-flag', 'print the version number');

  const serve = program
    .command('serve')
    .description('serve the CRI (RuntimeService and ImageService) on a unix socket, in the foreground')
    .option('--config <file>', 'YAML or JSON file whose keys are the option names below (env: VMLET_CONFIG)');
  for (const row of CONFIG_TABLE) {
    serve.addOption(new Option(`--${row.flag} <value>`, `${row.description} (default: ${row.defaultText}; env: ${row.env})`));
  }
  serve.action(async (opts: Record<string, string | undefined>) => {
    const flags: Record<string, string | undefined> = {};
    for (const row of CONFIG_TABLE) flags[row.flag] = opts[camel(row.flag)];
    const config = loadConfig({ flags, env: process.env, file: opts.config ?? process.env.VMLET_CONFIG });
    const { runServe } = await import('./daemon/serve.js');
    await runServe(config);
  });

  program
    .command('netd')
    .description('the network process (netns, CNI, TAP wiring, DHCP); started by `vmlet serve`, not by hand')
    .requiredOption('--config-json <json>', 'the effective configuration of the serve process that starts it')
    .action(async (opts: { configJson: string }) => {
      const config = parseConfigJson(opts.configJson);
      const { runNetd } = await import('./netd/main.js');
      await runNetd(config);
    });

  const diag = program
    .command('diag <id>')
    .description('print one JSON document about a sandbox or container: records, netns links/addresses/routes/rules, domain XML and state, last log lines')
    .option('--config <file>', 'the config file serve uses (env: VMLET_CONFIG)');
  for (const row of CONFIG_TABLE.filter((r) => ['stateDir', 'libvirtUri'].includes(r.key))) {
    diag.addOption(new Option(`--${row.flag} <value>`, `${row.description} (default: ${row.defaultText}; env: ${row.env})`));
  }
  diag.action(async (id: string, opts: Record<string, string | undefined>) => {
    const config = loadConfig({ flags: { 'state-dir': opts.stateDir, 'libvirt-uri': opts.libvirtUri }, env: process.env, file: opts.config ?? process.env.VMLET_CONFIG });
    const { diagnose } = await import('./diag/diag.js');
    process.stdout.write(`${JSON.stringify(await diagnose(config, id), null, 2)}\n`);
  });

  program
    .command('version')
    .description('print the vmlet version and the CRI API version it serves')
    .action(() => {
      process.stdout.write(`vmlet ${VMLET_VERSION} (CRI ${CRI_API_VERSION})\n`);
    });
  return program;
}

/** netd receives serve's effective config; it is re-validated row by row like any other input. */
function parseConfigJson(json: string): Config {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(json) as Record<string, unknown>;
  } catch {
    throw new ConfigError('config-json', 'is not valid JSON');
  }
  const flags: Record<string, string | undefined> = {};
  for (const row of CONFIG_TABLE) {
    const v = raw[row.key];
    if (v === undefined) continue;
    flags[row.flag] = Array.isArray(v) ? v.join(':') : String(v);
  }
  return loadConfig({ flags });
}

function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
}

buildProgram()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`vmlet: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`vmlet: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
