// Reading JUnit back (junit-read.ts), merging shards (merge.ts), KCIDB (kcidb.ts):
// round trips through xconf's own JUnit writer hold for every run fast-check makes.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { junitXml } from './junit.js';
import { parseJunit, readJunit, reportCases, type MatrixStatus } from './junit-read.js';
import { mergedJunitXml, totals } from './merge.js';
import { kcidbFromReports, kcidbFromRun, kcidbPath, mergeKcidb } from './kcidb.js';
import type { CaseResult, RunSummary } from '../runner/results.js';

const STATUSES: MatrixStatus[] = ['pass', 'fail', 'error', 'skip', 'xfail'];
const word = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/);
const text = fc.string({ minLength: 1, maxLength: 30 }).filter((s) => s.trim() === s && s.length > 0 && !/[()]/.test(s));

const caseArb = fc.record({
  sub: fc.constantFrom('evtchn', 'gnttab', 'sched'), id: word, variant: fc.constantFrom('', 'mode=32', 'mode=64'),
  status: fc.constantFrom(...STATUSES), message: text, reason: text, where: fc.constantFrom('arch/x86/kvm/xen.c kvm_xen_schedop_poll', 'xen/common/event_channel.c'),
  served: fc.constantFrom(undefined, 'kernel', 'vmm'),
});
type CaseInput = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;
function result(c: CaseInput): CaseResult {
  const id = `${c.sub}/${c.id}`;
  return {
    id, variant: c.variant, name: c.variant ? `${id}[${c.variant}]` : id, file: `suites/${id}.yaml`, description: 'd', spec: [],
    status: c.status, message: c.status === 'pass' ? undefined : c.message, durationMs: 1,
    steps: c.served ? [{ index: 0, label: 's', line: 3, status: 'pass', servedBy: c.served }] : [],
    divergence: c.status === 'xfail' ? { expected: 'fail', reason: c.reason, where: c.where, source: 'expectations/kvm.yaml:1' } : undefined,
  };
}
const runArb = fc.uniqueArray(caseArb, { selector: (c) => `${c.sub}/${c.id}[${c.variant}]`, minLength: 1, maxLength: 40 }).map((cs): RunSummary => ({
  target: 'kvm', seed: '0', capabilities: ['evtchn.2l'], properties: { kernel: '6.12.118' }, results: cs.map(result),
  startedAt: '2026-01-02T03:04:05.678Z', durationMs: 10,
}));

describe('junit-read', () => {
  it('reads back every case of an xconf JUnit file with its status, variant, served_by and divergence', () => {
    fc.assert(fc.property(runArb, (run) => {
      const cases = reportCases(parseJunit(junitXml(run), 'run.xml'));
      expect(cases.length).toBe(run.results.length);
      const byName = new Map(cases.map((c) => [c.name, c]));
      for (const r of run.results) {
        const c = byName.get(r.name)!;
        expect(c.status).toBe(r.status);
        expect(c.target).toBe('kvm');
        expect(c.kernel).toBe('6.12.118');
        expect(c.variant).toBe(r.variant);
        expect(c.id).toBe(r.id);
        expect(c.servedBy).toEqual(r.steps[0]?.servedBy ? [r.steps[0].servedBy] : []);
        if (r.status === 'xfail') expect(c.divergence).toEqual({ reason: r.divergence!.reason, where: r.divergence!.where });
      }
    }), { numRuns: 60 });
  });
  it('reads the live format: labelled suites, kernel from properties, the boot suite under its label', () => {
    const r = readJunit('fixtures/reports/live-kvm-6.1.xml');
    const cases = reportCases(r);
    expect(new Set(cases.map((c) => `${c.target} ${c.kernel} ${c.label}`))).toEqual(new Set(['kvm 6.1.192 linux-6.1']));
    const t = totals(cases);
    expect([t.tests, t.failures, t.xfail, t.skipped - t.xfail]).toEqual([208, 1, 3, 5]);
    expect(cases.find((c) => c.name === 'boot-and-run')?.subsystem).toBe('live-kvm');
  });
  it("derives statuses from the child elements, whatever the counts, properties or producer say", () => {
    const xml = `<testsuite name="other" tests="9" failures="0"><testcase name="a"><failure/></testcase><testcase name="b"><error>boom</error></testcase>
      <testcase name="c"><skipped/></testcase><testcase name="d"><skipped>why</skipped></testcase><testcase name="e"/>
      <testcase name="f"><skipped message="known divergence: r (w.c f)"/></testcase><testcase name="g"><failure message="m">text</failure></testcase></testsuite>`;
    const cs = reportCases(parseJunit(xml, 'o.xml'));
    expect(cs.map((c) => `${c.name}:${c.status}:${c.message ?? ''}:${c.detail ?? ''}`)).toEqual([
      'a:fail:failed:', 'b:error:error:boom', 'c:skip:skipped:', 'd:skip:why:', 'e:pass::', 'f:xfail:known divergence: r (w.c f):', 'g:fail:m:text',
    ]);
    expect(cs[5].divergence).toEqual({ reason: 'r', where: 'w.c f' });
  });
  it('refuses a broken file with one line naming the file and line', () => {
    expect(() => parseJunit('<testsuites>\n<testsuite name="a">\n</testsuites>', 'x.xml')).toThrow(/^x\.xml:\d+: not well-formed XML/);
    expect(() => parseJunit('<html/>', 'y.xml')).toThrow(/^y\.xml:1: no <testsuites> or <testsuite> root/);
    expect(() => readJunit('no/such.xml')).toThrow(/^no\/such\.xml: cannot read: ENOENT/);
  });
});

describe('merge', () => {
  it('shards of any run merge to the totals and statuses of the unsharded run', () => {
    fc.assert(fc.property(runArb, fc.integer({ min: 1, max: 4 }), (run, n) => {
      const shards = Array.from({ length: n }, (_, k) => ({ ...run, results: run.results.filter((_, i) => i % n === k) }))
        .filter((s) => s.results.length > 0)
        .map((s, k) => parseJunit(junitXml(s), `shard${k}.xml`));
      const merged = parseJunit(mergedJunitXml(shards), 'all.xml');
      const whole = parseJunit(junitXml(run), 'whole.xml');
      expect(totals(reportCases(merged))).toEqual(totals(reportCases(whole)));
      const st = (r: typeof merged) => reportCases(r).map((c) => `${c.suite} ${c.name} ${c.status}`).sort();
      expect(st(merged)).toEqual(st(whole));
      expect(merged.suites.map((s) => s.name)).toEqual(whole.suites.map((s) => s.name));
    }), { numRuns: 60 });
  });
  it('refuses files that share a case: they are not shards of one run', () => {
    const a = readJunit('fixtures/reports/model.xml');
    expect(() => mergedJunitXml([a, { ...a, file: 'copy.xml' }])).toThrow(/^copy\.xml: case \S+ of suite model\/\w+ is also in fixtures\/reports\/model\.xml/);
  });
});

describe('kcidb', () => {
  const opts = { origin: 'xconf_ci', buildId: 'xconf_ci:6.12-abc' };
  it('paths are dotted and schema-safe; ids are distinct for distinct cases', () => {
    expect(kcidbPath('evtchn/bind-ipi', 'mode=32')).toBe('xconf.evtchn.bind_ipi.mode_32');
    fc.assert(fc.property(runArb, (run) => {
      const doc = kcidbFromRun(run, opts, 'reports/junit.xml');
      for (const t of doc.tests) expect(t.path).toMatch(/^([a-zA-Z0-9_-]+(\.[a-zA-Z0-9_-]+)*)?$/);
      expect(new Set(doc.tests.map((t) => t.id)).size).toBe(run.results.length);
      const want = { pass: 'PASS', fail: 'FAIL', xfail: 'FAIL', error: 'ERROR', skip: 'SKIP' };
      for (const [i, t] of doc.tests.entries()) {
        const r = run.results.find((x) => x.name === t.misc.case)!;
        expect(t.status).toBe(want[r.status]);
        expect(!!t.misc.known_divergence).toBe(r.status === 'xfail');
        expect(i >= 0 && t.misc.kernel).toBe('6.12.118');
      }
    }), { numRuns: 40 });
  });
  it('KCIDB of merged shards equals KCIDB of the whole', () => {
    const whole = readJunit('fixtures/reports/model.xml');
    const cases = reportCases(whole);
    const parts = [0, 1, 2].map((k) => ({ ...whole, file: 'reports/model.xml', suites: whole.suites.map((s) => ({ ...s, cases: s.cases.filter((_, i) => i % 3 === k) })) }));
    const merged = mergeKcidb(parts.map((p, k) => ({ file: `s${k}.json`, doc: kcidbFromReports([p], opts) })));
    const one = kcidbFromReports([{ ...whole, file: 'reports/model.xml' }], opts);
    const key = (t: { id: string; status: string }) => `${t.id} ${t.status}`;
    expect(merged.tests.map(key).sort()).toEqual(one.tests.map(key).sort());
    expect(one.tests.length).toBe(cases.length);
    expect(() => mergeKcidb([{ file: 'a.json', doc: one }, { file: 'b.json', doc: one }])).toThrow(/^b\.json: test \S+ is also in a\.json/);
    expect(() => mergeKcidb([{ file: 'c.json', doc: { tests: [] } }])).toThrow(/^c\.json: not a KCIDB v5 document/);
  });
  it('refuses origins KCIDB would refuse', () => {
    expect(() => kcidbFromReports([], { origin: 'Xconf-CI', buildId: 'b' })).toThrow(/--origin: 'Xconf-CI' is not a KCIDB origin/);
    expect(() => kcidbFromReports([], { origin: 'x', buildId: '' })).toThrow(/--build-id/);
  });
});
