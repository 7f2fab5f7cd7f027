// The console summary: failures and errors in full, skips grouped by reason,
// a differential block when the run was compared with a reference target, and
// a closing counts line.
import { counts, type DiffSummary, type RunSummary } from '../runner/results.js';
import { diffCounts, diffReason } from '../runner/differential.js';

/** The differential block: a counts line, one line per disagreement, not-compared reasons grouped. */
export function differentialSummary(d: DiffSummary, opts: { verbose?: boolean } = {}): string[] {
  const out: string[] = [];
  for (const e of d.entries) {
    if (e.verdict === 'disagree') out.push(`DISAGREE ${e.name}: ${diffReason(e)}`);
    else if (e.verdict === 'agree' && opts.verbose) out.push(`AGREE ${e.name}`);
  }
  const why = new Map<string, number>();
  for (const e of d.entries) if (e.verdict === 'not-compared') why.set(e.reasons[0], (why.get(e.reasons[0]) ?? 0) + 1);
  for (const [r, n] of [...why].sort()) out.push(`NOT COMPARED x${n}: ${r}`);
  const c = diffCounts(d);
  out.push(`differential: ${d.target} vs ${d.reference}: ${c.compared} compared, ${c.agree} agree, ${c.disagree} disagree, ${c.notCompared} not compared`);
  return out;
}

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
  if (run.differential) out.push(...differentialSummary(run.differential, opts));
  const c = counts(run.results);
  out.push(`xconf: target=${run.target} cases=${c.total} (${(run.durationMs / 1000).toFixed(2)}s)`);
  out.push(`${c.pass} passed, ${c.fail + c.error} failed, ${c.skip} skipped`);
  return out.join('\n') + '\n';
}
