/** What every bench pod carries, whichever benchmark made it. Pure. */

export const BENCH_NAMESPACE = 'vmlet-bench';
/** Every bench sandbox carries this label with the run's tag; cleanup removes exactly those. */
export const RUN_LABEL = 'bench.vmlet.io/run';
