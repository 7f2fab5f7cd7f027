// KTAP version 1 for kselftest-style runners: one subtest group per case with
// variants, one line per case otherwise; SKIP directives carry the reason.
import type { CaseResult, RunSummary } from '../runner/results.js';

const oneLine = (s: string) => s.replace(/\s*\n\s*/g, ' | ');

function line(i: number, r: CaseResult, name: string, indent: string): string[] {
  const ok = r.status === 'pass' || r.status === 'skip';
  const out = [`${indent}${ok ? 'ok' : 'not ok'} ${i} ${name}${r.status === 'skip' ? ` # SKIP ${oneLine(r.message ?? '')}` : ''}`];
  if (r.status === 'fail' || r.status === 'error') {
    out.splice(0, 0, `${indent}# ${r.status === 'error' ? 'ERROR' : 'FAIL'}: ${oneLine(r.message ?? '')}`);
  }
  return out;
}

export function ktap(run: RunSummary): string {
  const groups = new Map<string, CaseResult[]>();
  for (const r of [...run.results].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (!groups.has(r.id)) groups.set(r.id, []);
    groups.get(r.id)!.push(r);
  }
  const out = ['KTAP version 1', `# xconf target=${run.target} seed=${run.seed}`, `1..${groups.size}`];
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
  const c = { pass: 0, fail: 0, skip: 0, error: 0 };
  for (const r of run.results) c[r.status]++;
  out.push(`# Totals: pass:${c.pass} fail:${c.fail + c.error} xfail:0 xpass:0 skip:${c.skip} error:0`);
  return out.join('\n') + '\n';
}
