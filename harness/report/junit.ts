// JUnit XML via junit-report-builder: one testsuite per subsystem (first part
// of the case id), a <failure> for a mismatch, an <error> for a harness or
// driver fault, <skipped message> for an unmet requirement. Deterministic
// order; properties record target, seed and capabilities.
import junitModule, { type Builder } from 'junit-report-builder';
import type { RunSummary } from '../runner/results.js';

export function junitXml(run: RunSummary, opts: { times?: boolean } = {}): string {
  const times = opts.times ?? true;
  // The package's CommonJS export is the builder itself (its typings claim a default export).
  const root = ((junitModule as unknown as { default?: Builder }).default ?? junitModule) as unknown as Builder;
  const builder = root.newBuilder();
  const bySuite = new Map<string, typeof run.results>();
  for (const r of [...run.results].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const suite = r.id.includes('/') ? r.id.slice(0, r.id.indexOf('/')) : r.id;
    if (!bySuite.has(suite)) bySuite.set(suite, []);
    bySuite.get(suite)!.push(r);
  }
  for (const [name, results] of [...bySuite].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const suite = builder.testSuite().name(`${run.target}/${name}`);
    if (times) suite.timestamp(run.startedAt);
    suite.property('target', run.target).property('seed', run.seed).property('capabilities', run.capabilities.join(' '));
    for (const [k, v] of Object.entries(run.properties).sort()) if (k !== 'target') suite.property(k, v);
    for (const r of results) {
      const tc = suite.testCase().className(`xconf.${name}`).name(r.name).file(r.file);
      if (times) tc.time(r.durationMs / 1000);
      if (r.spec.length) tc.property('spec', r.spec.join('; '));
      tc.property('description', r.description);
      const served = [...new Set(r.steps.map((s) => s.servedBy).filter(Boolean))];
      if (served.length) tc.property('served_by', served.join(' '));
      if (r.status === 'fail') tc.failure(r.message ?? 'failed', 'mismatch');
      else if (r.status === 'error') tc.error(r.message ?? 'error', 'harness');
      else if (r.status === 'skip') tc.skipped();
      if (r.detail) tc.standardOutput(r.detail);
    }
  }
  // junit-report-builder writes <skipped/> without a message: add each reason
  // in one pass over the testcase elements.
  const esc = (x: string) => x.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
  const reasons = new Map(run.results.filter((r) => r.status === 'skip').map((r) => [esc(r.name), esc(r.message ?? 'skipped')]));
  const xml = builder.build().replace(/<testcase [^>]*? name="([^"]*)"[\s\S]*?<\/testcase>|<testcase [^>]*? name="([^"]*)"[^>]*\/>/g, (block, n1?: string, n2?: string) => {
    const why = reasons.get(n1 ?? n2 ?? '');
    return why === undefined ? block : block.replace('<skipped/>', `<skipped message="${why}"/>`);
  });
  return xml;
}
