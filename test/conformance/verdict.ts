/**
 * Pure parts of the conformance run: the specs of a Ginkgo v2 JSON report (critest
 * --ginkgo.json-report), the applicable list (applicable.txt), and the verdict printed at the end.
 */

export type SpecState = 'passed' | 'failed' | 'skipped' | 'pending' | 'panicked' | 'interrupted' | 'aborted' | 'timedout';

export interface SpecResult {
  /** Container texts and the leaf text joined by spaces, as Ginkgo prints a spec's full name. */
  name: string;
  state: SpecState;
  seconds: number;
  /** First line of the failure (or skip) message, '' when there is none. */
  message: string;
}

interface GinkgoSpecReport {
  ContainerHierarchyTexts?: string[] | null;
  LeafNodeText?: string;
  LeafNodeType?: string;
  State?: string;
  RunTime?: number;
  Failure?: { Message?: string };
}

/** The `It` specs of a Ginkgo JSON report (suite set-up nodes are not specs). */
export function specsFromReport(json: string): SpecResult[] {
  const suites = JSON.parse(json) as { SpecReports?: GinkgoSpecReport[] | null }[];
  if (!Array.isArray(suites)) throw new Error('not a Ginkgo JSON report: expected an array of suite reports');
  const specs: SpecResult[] = [];
  for (const suite of suites) {
    for (const r of suite.SpecReports ?? []) {
      if (r.LeafNodeType !== 'It') continue;
      specs.push({
        name: [...(r.ContainerHierarchyTexts ?? []), r.LeafNodeText ?? ''].join(' '),
        state: (r.State ?? 'failed') as SpecState,
        seconds: (r.RunTime ?? 0) / 1e9,
        message: firstLine(r.Failure?.Message ?? ''),
      });
    }
  }
  return specs;
}

/**
 * Suite-level failures (BeforeSuite/AfterSuite nodes that failed), which fail or skip every spec
 * without saying so in the specs' own reports.
 */
export function suiteFailures(json: string): string[] {
  const suites = JSON.parse(json) as { SpecReports?: GinkgoSpecReport[] | null }[];
  return suites.flatMap((suite) =>
    (suite.SpecReports ?? [])
      .filter((r) => r.LeafNodeType !== 'It' && r.State !== undefined && r.State !== 'passed')
      .map((r) => `${r.LeafNodeType}: ${r.State}: ${firstLine(r.Failure?.Message ?? '')}`),
  );
}

function firstLine(text: string): string {
  return text.trim().split('\n')[0]!.trim();
}

/** A Go (RE2) regexp matching `text` literally, as regexp.QuoteMeta makes it. */
export function quoteMeta(text: string): string {
  return text.replace(/[\\.+*?()|[\]{}^$]/g, '\\$&');
}

/**
 * The --ginkgo.focus that selects exactly the spec with this full name. Ginkgo matches the focus
 * against the suite's description, a space and the spec's full name ("CRI validation [k8s.io] …").
 */
export function focusFor(name: string): string {
  return `(^|\\s)${quoteMeta(name)}$`;
}

/** Spec names, one a line; blank lines and lines starting with '#' are comments. */
export function parseApplicable(text: string): string[] {
  const names = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) throw new Error(`applicable list names ${JSON.stringify(name)} twice`);
    seen.add(name);
  }
  return names;
}

export interface Verdict {
  /** One line per spec, applicable ones first, in list order, then the others in report order. */
  lines: string[];
  passed: number;
  failed: number;
  /** Applicable specs the report does not contain (critest renamed or dropped them). */
  missing: string[];
  /** Specs outside the applicable list that passed: candidates to move into it. */
  newlyPassing: string[];
  /** Exactly `N passed, M failed` over the applicable set. */
  summary: string;
}

const MARK: Record<SpecState, string> = {
  passed: 'pass',
  failed: 'FAIL',
  skipped: 'skip',
  pending: 'pend',
  panicked: 'FAIL',
  interrupted: 'FAIL',
  aborted: 'FAIL',
  timedout: 'FAIL',
};

export function specLine(spec: SpecResult): string {
  const time = `${spec.seconds.toFixed(1)}s`.padStart(7);
  const why = spec.state === 'passed' || spec.message === '' ? '' : `  -- ${spec.message}`;
  return `  ${MARK[spec.state]} ${time}  ${spec.name}${why}`;
}

/**
 * An applicable spec counts as passed only when it ran and passed; a failed, skipped or missing
 * one counts as failed. The other specs are listed for information and decide nothing.
 */
export function verdict(specs: readonly SpecResult[], applicable: readonly string[]): Verdict {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const wanted = new Set(applicable);
  const lines = [`applicable to a VM runtime (${applicable.length}, test/conformance/applicable.txt):`];
  let passed = 0;
  const missing: string[] = [];
  for (const name of applicable) {
    const spec = byName.get(name);
    if (!spec) {
      missing.push(name);
      lines.push(`  FAIL      -   ${name}  -- did not run (not in critest's report)`);
      continue;
    }
    if (spec.state === 'passed') passed++;
    lines.push(specLine(spec));
  }
  const others = specs.filter((s) => !wanted.has(s.name));
  lines.push(`not applicable (${others.length}, docs/conformance.md says why; informational):`);
  for (const spec of others) lines.push(specLine(spec));
  const failed = applicable.length - passed;
  return {
    lines,
    passed,
    failed,
    missing,
    newlyPassing: others.filter((s) => s.state === 'passed').map((s) => s.name),
    summary: `${passed} passed, ${failed} failed`,
  };
}
