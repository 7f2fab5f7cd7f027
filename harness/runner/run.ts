// Runs a plan: probes the driver once, runs every case (one failing case never
// stops the run), calls `onResult` after each so reporters can persist progress.
// `signal` stops the run between cases (and kills an isolated case in flight):
// the summary then holds the cases that finished.

import type { Driver } from '../drivers/driver.js';
import type { PlannedCase } from './plan.js';
import { runCase, skipReason, type RunCaseOptions } from './run-case.js';
import { runIsolated } from './isolate.js';
import type { CaseResult, RunSummary } from './results.js';

export async function runPlan(
  planned: PlannedCase[],
  driver: Driver,
  opts: RunCaseOptions & {
    seed?: string;
    onResult?: (r: CaseResult, done: CaseResult[]) => void;
    /** Run each case that is not skipped in a fresh child process. */
    isolate?: boolean;
    signal?: AbortSignal;
  } = {},
): Promise<RunSummary> {
  const caps = await driver.probe();
  const started = new Date();
  const t0 = performance.now();
  const results: CaseResult[] = [];
  for (const pc of planned) {
    if (opts.signal?.aborted) break;
    let r: CaseResult;
    try {
      const skip = opts.isolate ? skipReason(pc, caps) : undefined;
      if (opts.isolate && skip === undefined) r = await runIsolated(pc, driver.name, opts, undefined, opts.signal);
      else r = await runCase(pc, driver, caps, opts);
    } catch (e) {
      r = {
        id: pc.case.id, variant: pc.variant.name, name: pc.name, file: pc.case.file,
        description: pc.case.description, spec: pc.case.spec, status: 'error',
        message: `harness fault: ${(e as Error).message}`, durationMs: 0, steps: [],
      };
    }
    if (opts.signal?.aborted && r.status === 'error') break; // killed by the stop, not a result
    results.push(r);
    opts.onResult?.(r, results);
  }
  return {
    target: driver.name,
    seed: opts.seed ?? '0',
    capabilities: [...caps.has].sort(),
    missing: Object.fromEntries(caps.missing),
    properties: { ...caps.properties },
    results,
    startedAt: started.toISOString(),
    durationMs: performance.now() - t0,
  };
}
