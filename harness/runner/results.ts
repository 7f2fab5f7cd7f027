// Results as plain data: what reporters consume.

/**
 * 'xfail': a known divergence. The case failed or errored on a real
 * implementation exactly as an expectations file says (harness/expect/).
 */
export type Status = 'pass' | 'fail' | 'skip' | 'error' | 'xfail';

/** The expectations entry that turned a failure into a known divergence. */
export interface Divergence {
  /** What the case did: the status the entry expected. */
  expected: 'fail' | 'error';
  reason: string;
  /** Source file and function of the implementation that diverges. */
  where: string;
  /** Version that fixes it, when known. */
  until?: string;
  /** The expectations file and line of the entry. */
  source: string;
}

export interface StepRecord {
  index: number;
  label: string;
  line: number;
  status: 'pass' | 'fail' | 'error' | 'not-run';
  servedBy?: string;
  /** Events the VMM layer had the kernel deliver while serving the step (Outcome.kernelDeliveries). */
  kernelDeliveries?: number;
  /** What the step did: a guest 'hypercall', a 'host' action, a 'wrmsr', a guest 'write', a 'check'. */
  kind?: string;
  message?: string;
  /** What the target observed, as strings (JSON- and IPC-safe): compared by differential runs. */
  observed?: StepObservation;
}

/**
 * A step's observation: the return value (decimal), the fault, and the OUT
 * values the step's expectation fixes (not those expected relative to a value
 * saved at run time; see observe() in run-case.ts).
 * `servedBy` is deliberately not here: who answered may differ between targets.
 */
export interface StepObservation {
  ret?: string;
  fault?: string;
  out?: Record<string, string>;
}

export interface CaseResult {
  id: string;
  /** Matrix variant, e.g. "mode=32"; '' when the case has no matrix. */
  variant: string;
  /** id plus [variant]. */
  name: string;
  file: string;
  description: string;
  spec: string[];
  status: Status;
  /** One line: why it failed / was skipped / errored. */
  message?: string;
  /** Multi-line detail: expected vs actual, step trace. */
  detail?: string;
  durationMs: number;
  steps: StepRecord[];
  /** Skips: the capabilities the target lacks, in the order the case needs them. */
  missing?: string[];
  /** Known divergences: the expectations entry, and the failure message it covers in `message`. */
  divergence?: Divergence;
}

export interface RunSummary {
  target: string;
  seed: string;
  capabilities: string[];
  /** Capabilities the target lacks, with the reason (skips are grouped by it). */
  missing?: Record<string, string>;
  properties: Record<string, string>;
  results: CaseResult[];
  startedAt: string;
  durationMs: number;
  /** Present when the run was compared against a reference target (--diff-against). */
  differential?: DiffSummary;
  /** Cases the plan held (more than results when the run was interrupted or bailed out). */
  planned?: number;
  /** Set when the run stopped early: 'SIGINT', 'SIGTERM', 'parent exited', '--bail'. */
  interrupted?: string;
  /** Problems with the expectations files (entries that now pass or match nothing): each fails the run. */
  expectationProblems?: string[];
}

/** One case of a differential run: how its run on the target compares with the reference's. */
export interface DiffEntry {
  name: string;
  id: string;
  file: string;
  /** known: the case is a known divergence of the target, and disagrees with the reference because of it. */
  verdict: 'agree' | 'disagree' | 'not-compared' | 'known';
  /** disagree and known: every difference, one line each; not-compared: the reference's skip reason. */
  reasons: string[];
}

export interface DiffSummary {
  target: string;
  reference: string;
  entries: DiffEntry[];
}

export function counts(results: CaseResult[]) {
  const c = { total: results.length, pass: 0, fail: 0, skip: 0, error: 0, xfail: 0 };
  for (const r of results) c[r.status]++;
  return c;
}
