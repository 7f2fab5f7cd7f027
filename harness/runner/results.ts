// Results as plain data: what reporters consume.

export type Status = 'pass' | 'fail' | 'skip' | 'error';

export interface StepRecord {
  index: number;
  label: string;
  line: number;
  status: 'pass' | 'fail' | 'error' | 'not-run';
  servedBy?: string;
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
}

export interface RunSummary {
  target: string;
  seed: string;
  capabilities: string[];
  properties: Record<string, string>;
  results: CaseResult[];
  startedAt: string;
  durationMs: number;
  /** Present when the run was compared against a reference target (--diff-against). */
  differential?: DiffSummary;
}

/** One case of a differential run: how its run on the target compares with the reference's. */
export interface DiffEntry {
  name: string;
  id: string;
  file: string;
  verdict: 'agree' | 'disagree' | 'not-compared';
  /** disagree: every difference, one line each; not-compared: the reference's skip reason. */
  reasons: string[];
}

export interface DiffSummary {
  target: string;
  reference: string;
  entries: DiffEntry[];
}

export function counts(results: CaseResult[]) {
  const c = { total: results.length, pass: 0, fail: 0, skip: 0, error: 0 };
  for (const r of results) c[r.status]++;
  return c;
}
