// --json: the run as one JSON document for scripts: counts, then every case
// with its status, message, location, who served its steps and, for known
// divergences, the expectations entry.
import { counts, type RunSummary } from '../runner/results.js';
import { diffCounts } from '../runner/differential.js';
import { servedBy } from './junit.js';
import { location, servedCounts } from './console.js';

export function runJson(run: RunSummary): string {
  const c = counts(run.results);
  return JSON.stringify({
    target: run.target, seed: run.seed, startedAt: run.startedAt, durationMs: Math.round(run.durationMs),
    properties: run.properties, capabilities: run.capabilities,
    counts: { cases: c.total, passed: c.pass, failed: c.fail + c.error, failures: c.fail, errors: c.error, skipped: c.skip, knownDivergences: c.xfail },
    planned: run.planned ?? c.total,
    ...(run.interrupted ? { interrupted: run.interrupted } : {}),
    ...(run.expectationProblems ? { expectationProblems: run.expectationProblems } : {}),
    ...(servedCounts(run.results) ? { served: servedCounts(run.results) } : {}),
    results: run.results.map((r) => ({
      name: r.name, id: r.id, variant: r.variant, file: r.file, location: location(r), status: r.status,
      ...(r.message ? { message: r.message } : {}), durationMs: Math.round(r.durationMs * 1000) / 1000,
      servedBy: servedBy(r), ...(r.missing ? { missing: r.missing } : {}), ...(r.divergence ? { divergence: r.divergence } : {}),
    })),
    ...(run.differential ? { differential: { target: run.differential.target, reference: run.differential.reference, counts: diffCounts(run.differential), entries: run.differential.entries } } : {}),
  }, null, 2) + '\n';
}
