// JUnit XML via junit-report-builder: one testsuite per subsystem (first part
// of the case id), a <failure> for a mismatch, an <error> for a harness or
// driver fault, <skipped message> for an unmet requirement. Deterministic
// order; properties record target, seed and capabilities. A differential run
// adds the suite 'xconf.differential': one testcase per case compared with the
// reference target, a <failure> for a disagreement, <skipped> when not compared.
import junitModule, { type Builder } from 'junit-report-builder';
import type { RunSummary } from '../runner/results.js';
import { diffReason } from '../runner/differential.js';

const DIFF_SUITE = 'xconf.differential';

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
  const d = run.differential;
  if (d) {
    const suite = builder.testSuite().name(DIFF_SUITE);
    if (times) suite.timestamp(run.startedAt);
    suite.property('target', d.target).property('reference', d.reference).property('seed', run.seed);
    for (const e of [...d.entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const tc = suite.testCase().className(DIFF_SUITE).name(e.name).file(e.file);
      tc.property('reference', d.reference);
      if (e.verdict === 'disagree') {
        tc.failure(diffReason(e), 'disagreement');
        tc.standardOutput(e.reasons.join('\n'));
      } else if (e.verdict === 'not-compared') tc.skipped();
    }
  }
  // junit-report-builder writes <skipped/> without a message: add each reason
  // in one pass over the testcase elements (keyed by classname and name, as a
  // case appears both in its subsystem's suite and in the differential one).
  const esc = (x: string) => x.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
  const unesc = (x: string) => x.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
  const key = (cls: string, name: string) => `${cls}\0${name}`;
  const reasons = new Map(run.results.filter((r) => r.status === 'skip').map((r) => {
    const sub = r.id.includes('/') ? r.id.slice(0, r.id.indexOf('/')) : r.id;
    return [key(`xconf.${sub}`, r.name), esc(r.message ?? 'skipped')];
  }));
  for (const e of d?.entries ?? []) if (e.verdict === 'not-compared') reasons.set(key(DIFF_SUITE, e.name), esc(`not compared: ${e.reasons[0]}`));
  const xml = builder.build().replace(/<testcase classname="([^"]*)" name="([^"]*)"[^>]*?(?:\/>|>[\s\S]*?<\/testcase>)/g, (block, cls: string, name: string) => {
    const why = reasons.get(key(unesc(cls), unesc(name)));
    return why === undefined ? block : block.replace('<skipped/>', `<skipped message="${why}"/>`);
  });
  return xml;
}
