/**
 * `npm run bench -- <name> [options]`: the project's benchmarks. Each one is a module loaded on
 * demand, so a benchmark's imports cost nothing to the others. Add a benchmark by adding a row.
 */
interface Benchmark {
  summary: string;
  /** Runs the benchmark with the arguments after its name; resolves with the exit code. */
  load(): Promise<(argv: readonly string[]) => Promise<number>>;
}

const BENCHMARKS: Record<string, Benchmark> = {
  sandbox: {
    summary: 'RunPodSandbox/StopPodSandbox/RemovePodSandbox against the CNI floor, ListPodSandbox over 500 records, RSS',
    load: async () => (await import('./sandbox/run.js')).runSandboxBench,
  },
  peer: {
    summary: 'vmlet against containerd (Debian) on the same conflist and client: Run/Stop/Remove, Version, ListPodSandbox, crictl version/pods',
    load: async () => (await import('./peer/run.js')).runPeerBench,
  },
  vm: {
    summary: "VM pods: Run/Create/Start (vmlet's share) and guest boot to its DHCP ACK, daemon RSS per running VM",
    load: async () => (await import('./vm/run.js')).runVmBench,
  },
  faults: {
    summary: 'SIGKILL of serve/netd at every fault point, restart, remove: leftovers, health, fds and RSS over N cycles',
    load: async () => (await import('./faults/run.js')).runFaultsBench,
  },
  soak: {
    summary: 'N minutes of pod cycles beside two running VMs: serve/netd fds and RSS flat, no leftovers',
    load: async () => (await import('./soak/run.js')).runSoakBench,
  },
  registry: {
    summary: 'containerDisk pull throughput from a loopback registry against skopeo copy, CPU seconds per GiB',
    load: async () => (await import('./registry/run.js')).runRegistryBench,
  },
  pull: {
    summary: 'PullImage of an http URL (digest pinned) against raw loopback HTTP by curl (+fsync, +sha256), MB/s and CPU seconds per GiB',
    load: async () => (await import('./pull/run.js')).runPullBench,
  },
};

function usage(): string {
  const rows = Object.entries(BENCHMARKS).map(([name, b]) => `  ${name.padEnd(10)} ${b.summary}`);
  return `usage: npm run bench -- <benchmark> [options]   (<benchmark> --help for its options)\n\n${rows.join('\n')}\n`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const bench = BENCHMARKS[name];
  if (!bench) {
    process.stderr.write(`unknown benchmark ${JSON.stringify(name)}\n\n${usage()}`);
    return 2;
  }
  return (await bench.load())(rest);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
