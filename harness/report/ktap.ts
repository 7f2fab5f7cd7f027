// KTAP version 1 for kselftest-style runners: one subtest group per case with
// variants, one line per case otherwise; SKIP directives carry the reason.
// A differential run adds one last subtest group, xconf.differential: one line
// per case compared with the reference (not ok = disagreement, SKIP = not compared).
import type { CaseResult, DiffSummary, RunSummary } from '../runner/results.js';
import { diffCounts, diffReason, oneLine } from '../runner/differential.js';

function line(i: number, r: CaseResult, name: string, indent: string): string[] {
  const ok = r.status === 'pass' || r.status === 'skip';
  const out = [`${indent}${ok ? 'ok' : 'not ok'} ${i} ${name}${r.status === 'skip' ? ` # SKIP ${oneLine(r.message ?? '')}` : ''}`];
  if (r.status === 'fail' || r.status === 'error') {
    out.splice(0, 0, `${indent}# ${r.status === 'error' ? 'ERROR' : 'FAIL'}: ${oneLine(r.message ?? '')}`);
  }
  return out;
}

function differential(i: number, d: DiffSummary): string[] {
  const entries = [...d.entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out = [`    KTAP version 1`, `    # Subtest: xconf.differential`, `    # ${d.target} vs reference ${d.reference}`, `    1..${entries.length}`];
  entries.forEach((e, j) => {
    if (e.verdict === 'disagree') out.push(`    # DISAGREE: ${oneLine(diffReason(e))}`, `    not ok ${j + 1} ${e.name}`);
    else out.push(`    ok ${j + 1} ${e.name}${e.verdict === 'not-compared' ? ` # SKIP not compared: ${oneLine(e.reasons[0])}` : ''}`);
  });
  const c = diffCounts(d);
  out.push(`${c.disagree ? 'not ok' : 'ok'} ${i} xconf.differential${entries.length && !c.compared ? ' # SKIP nothing compared' : ''}`);
  return out;
}

export function ktap(run: RunSummary): string {
  const groups = new Map<string, CaseResult[]>();
  for (const r of [...run.results].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (!groups.has(r.id)) groups.set(r.id, []);
    groups.get(r.id)!.push(r);
  }
  const out = ['KTAP version 1', `# xconf target=${run.target} seed=${run.seed}`, `1..${groups.size + (run.differential ? 1 : 0)}`];
  let i = 0;
  for (const [id, rs] of groups) {
    i++;
    if (rs.length === 1 && !rs[0].variant) {
      out.push(...line(i, rs[0], id, ''));
      continue;
    }
    out.push(`    KTAP version 1`, `    # Subtest: ${id}`, `    1..${rs.length}`);
    rs.forEach((r, j) => out.push(...line(j + 1, r, r.variant, '    ')));
    const failed = rs.some((r) => r.status === 'fail' || r.status === 'error');
    const allSkip = rs.every((r) => r.status === 'skip');
    out.push(`${failed ? 'not ok' : 'ok'} ${i} ${id}${allSkip ? ` # SKIP ${oneLine(rs[0].message ?? '')}` : ''}`);
  }
  if (run.differential) out.push(...differential(i + 1, run.differential));
  const c = { pass: 0, fail: 0, skip: 0, error: 0 };
  for (const r of run.results) c[r.status]++;
  out.push(`# Totals: pass:${c.pass} fail:${c.fail + c.error} xfail:0 xpass:0 skip:${c.skip} error:0`);
  return out.join('\n') + '\n';
}
