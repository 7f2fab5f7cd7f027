// KTAP version 1 (Documentation/dev-tools/ktap.rst) for kselftest-style runners
// and the kernel's own parser (tools/testing/kunit/kunit.py parse): one subtest
// group per case with variants (two-space indentation, variants in matrix
// order), one line per case otherwise. Directives: SKIP with the reason, XFAIL
// for a known divergence (`ok`, as kselftest's ksft_test_result_xfail prints
// it), ERROR for a harness or driver fault (`not ok`). An interrupted run keeps
// the plan it announced and ends with `Bail out!`, so a parser sees tests
// missing. Stale expectations entries add a last failing test. The
// differential of a run is not here: it is no test of the target (it has its
// own JUnit file).
import type { CaseResult, RunSummary } from '../runner/results.js';
import { oneLine } from '../runner/differential.js';

/** KTAP has no escape for '#' in a directive's text, and a line must stay one line. */
const text = (s: string) => oneLine(s).replace(/#/g, 'No.');

function line(i: number, r: CaseResult, name: string, indent: string): string[] {
  const msg = text(r.message ?? '');
  switch (r.status) {
    case 'pass': return [`${indent}ok ${i} ${name}`];
    case 'skip': return [`${indent}ok ${i} ${name} # SKIP ${msg}`];
    case 'xfail': return [`${indent}# known divergence: ${msg}`, `${indent}ok ${i} ${name} # XFAIL ${text(`${r.divergence!.reason} (${r.divergence!.where})`)}`];
    case 'error': return [`${indent}not ok ${i} ${name} # ERROR ${msg}`];
    case 'fail': return [`${indent}# FAIL: ${msg}`, `${indent}not ok ${i} ${name}`];
  }
}

function groupStatus(rs: CaseResult[]): { ok: boolean; directive: string } {
  if (rs.some((r) => r.status === 'fail' || r.status === 'error')) {
    return { ok: false, directive: rs.every((r) => r.status === 'error') ? ` # ERROR ${text(rs[0].message ?? '')}` : '' };
  }
  if (rs.every((r) => r.status === 'skip')) return { ok: true, directive: ` # SKIP ${text(rs[0].message ?? '')}` };
  return { ok: true, directive: '' };
}

/**
 * KTAP of a run. Results are written in the order given (the plan's order);
 * `plannedGroups` is the number of top-level tests the plan held, which an
 * interrupted run announces although it did not reach them all.
 */
export function ktap(run: RunSummary, opts: { plannedGroups?: number } = {}): string {
  const groups = new Map<string, CaseResult[]>();
  for (const r of run.results) {
    if (!groups.has(r.id)) groups.set(r.id, []);
    groups.get(r.id)!.push(r);
  }
  const problems = run.expectationProblems ?? [];
  const planned = Math.max(opts.plannedGroups ?? groups.size, groups.size) + (problems.length ? 1 : 0);
  const out = ['KTAP version 1', `# xconf target=${run.target} seed=${run.seed}`, `1..${planned}`];
  let i = 0;
  for (const [id, rs] of groups) {
    i++;
    if (rs.length === 1 && !rs[0].variant) {
      out.push(...line(i, rs[0], id, ''));
      continue;
    }
    out.push(`  KTAP version 1`, `  # Subtest: ${id}`, `  1..${rs.length}`);
    rs.forEach((r, j) => out.push(...line(j + 1, r, r.variant, '  ')));
    const g = groupStatus(rs);
    out.push(`${g.ok ? 'ok' : 'not ok'} ${i} ${id}${g.directive}`);
  }
  if (problems.length && !run.interrupted) {
    for (const p of problems) out.push(`# ${text(p)}`);
    out.push(`not ok ${i + 1} xconf.expectations`);
  }
  const c = { pass: 0, fail: 0, skip: 0, error: 0, xfail: 0 };
  for (const r of run.results) c[r.status]++;
  out.push(`# Totals: pass:${c.pass} fail:${c.fail} xfail:${c.xfail} xpass:0 skip:${c.skip} error:${c.error}`);
  if (run.interrupted) out.push(`Bail out! ${text(`run interrupted (${run.interrupted}) after ${run.results.length} of ${run.planned ?? run.results.length} cases`)}`);
  return out.join('\n') + '\n';
}
