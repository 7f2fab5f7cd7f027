// JUnit XML of a fuzz session (junit-report-builder): suite `xconf.fuzz`, one
// testcase per finding signature (a <failure> for one found in this session,
// with the YAML case as its system-out; a passing case for a known one seen
// again) and one summary testcase.
import { readFileSync } from 'node:fs';
import junitModule, { type Builder } from 'junit-report-builder';
import type { FuzzReport } from './run.js';

export function fuzzJunit(r: FuzzReport): string {
  const root = ((junitModule as unknown as { default?: Builder }).default ?? junitModule) as unknown as Builder;
  const b = root.newBuilder();
  const suite = b.testSuite().name('xconf.fuzz').timestamp(r.startedAt);
  suite.property('target', r.target).property('reference', r.reference ?? 'none').property('seed', String(r.seed));
  if (r.shard) suite.property('shard', r.shard);
  for (const f of r.findings) {
    const tc = suite.testCase().className('xconf.fuzz.finding').name(f.signature).file(f.file);
    tc.property('hits', String(f.hits));
    if (f.fresh) {
      tc.failure(`new finding: ${f.signature}; replay: npx xconf run ${f.file} --target=${r.target}`, 'finding');
      // The case itself travels with the report (a live VM's findings come back in its JUnit).
      try {
        tc.standardOutput(readFileSync(f.file, 'utf8'));
      } catch {
        // the file was removed meanwhile: the failure message still names it
      }
    }
  }
  const sum = suite.testCase().className('xconf.fuzz').name('summary').time(r.elapsedMs / 1000);
  sum.standardOutput(
    `${r.steps} steps, ${r.sequences} sequences, ${r.stepsPerSecond} steps/s, op coverage ${r.opsCovered}/${r.opsTotal}, ` +
    `${r.findings.filter((f) => f.fresh).length} new findings, ${r.findings.filter((f) => !f.fresh).length} known seen again`,
  );
  if (r.coverage) {
    const c = r.coverage;
    sum.property('coverage.guided', String(c.guided)).property('coverage.edges', String(c.totals.edges)).property('coverage.pcs', String(c.totals.pcs))
      .property('coverage.corpus', String(c.corpus))
      .property('coverage.timeline', c.timeline.map((p) => `${Math.round(p.ms / 1000)}s:${p.edges}`).join(' '));
  }
  if (r.findings.some((f) => f.fresh)) sum.failure(`${r.findings.filter((f) => f.fresh).length} new finding(s)`, 'findings');
  return b.build();
}
