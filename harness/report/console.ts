// The console summary: failures and errors in full, skips grouped by reason,
// and a closing counts line.
import { counts, type RunSummary } from '../runner/results.js';

export function consoleSummary(run: RunSummary, opts: { verbose?: boolean } = {}): string {
  const out: string[] = [];
  for (const r of run.results) {
    if (r.status === 'fail' || r.status === 'error') {
      out.push(`${r.status.toUpperCase()} ${r.name}: ${r.message ?? ''}`);
      if (r.detail) out.push(...r.detail.split('\n').map((l) => `    ${l}`));
    } else if (opts.verbose) {
      out.push(`${r.status.toUpperCase()} ${r.name}${r.message ? `: ${r.message}` : ''}`);
    }
  }
  const skips = new Map<string, number>();
  for (const r of run.results) if (r.status === 'skip') skips.set(r.message ?? '', (skips.get(r.message ?? '') ?? 0) + 1);
  for (const [why, n] of [...skips].sort()) out.push(`SKIP x${n}: ${why}`);
  const c = counts(run.results);
  out.push(`xconf: target=${run.target} cases=${c.total} (${(run.durationMs / 1000).toFixed(2)}s)`);
  out.push(`${c.pass} passed, ${c.fail + c.error} failed, ${c.skip} skipped`);
  return out.join('\n') + '\n';
}
