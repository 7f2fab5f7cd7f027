// Merging the JUnit files of one run's shards (`xconf run --shard=K/N`) into
// the report one unsharded run would have written: suites of the same name
// joined, their cases in name order, counts recomputed from the cases, each
// suite's properties the union of the shards' (first value wins), times
// summed, the earliest timestamp kept. A case present in two files means the
// files are not shards of one run: refused, naming both files.
import xmlbuilder from 'xmlbuilder';
import { UsageError } from '../errors.js';
import type { ReadCase, ReadReport } from './junit-read.js';

interface MergedSuite {
  name: string;
  properties: Record<string, string>;
  timestamp?: string;
  time: number;
  cases: Map<string, { c: ReadCase; file: string }>;
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const clean = (s: string) => s.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '');

export interface Totals { tests: number; failures: number; errors: number; skipped: number; xfail: number }

export function totals(cases: ReadCase[]): Totals {
  const t = { tests: cases.length, failures: 0, errors: 0, skipped: 0, xfail: 0 };
  for (const c of cases) {
    if (c.status === 'fail') t.failures++;
    else if (c.status === 'error') t.errors++;
    else if (c.status === 'skip') t.skipped++;
    else if (c.status === 'xfail') { t.skipped++; t.xfail++; }
  }
  return t;
}

export function mergeReports(reports: ReadReport[]): { suites: MergedSuite[]; name: string } {
  const suites = new Map<string, MergedSuite>();
  for (const r of reports) {
    for (const s of r.suites) {
      let m = suites.get(s.name);
      if (!m) suites.set(s.name, (m = { name: s.name, properties: {}, timestamp: s.timestamp, time: 0, cases: new Map() }));
      for (const [k, v] of Object.entries(s.properties)) if (!(k in m.properties)) m.properties[k] = v;
      if (s.timestamp && (!m.timestamp || s.timestamp < m.timestamp)) m.timestamp = s.timestamp;
      m.time += s.time;
      for (const c of s.cases) {
        const key = `${c.classname}\0${c.name}`;
        const before = m.cases.get(key);
        if (before) throw new UsageError(`${r.file}: case ${c.name} of suite ${s.name} is also in ${before.file}: these are not shards of one run`);
        m.cases.set(key, { c, file: r.file });
      }
    }
  }
  const names = [...new Set(reports.map((r) => r.name).filter((n): n is string => !!n))];
  return { suites: [...suites.values()].sort((a, b) => cmp(a.name, b.name)), name: names.length === 1 ? names[0] : 'xconf' };
}

function addCase(suite: ReturnType<typeof xmlbuilder.create>, c: ReadCase): void {
  const tc = suite.ele('testcase', {
    classname: c.classname, name: c.name, ...(c.file ? { file: c.file } : {}), ...(c.line ? { line: String(c.line) } : {}), time: c.time.toFixed(3),
  });
  const message = clean(c.message ?? c.status);
  if (c.status === 'fail') tc.ele('failure', { message, type: 'mismatch' }, clean(c.detail ?? message));
  else if (c.status === 'error') tc.ele('error', { message, type: 'harness' }, clean(c.detail ?? message));
  else if (c.status === 'skip') tc.ele('skipped', { message });
  else if (c.status === 'xfail') tc.ele('skipped', { type: 'pytest.xfail', message });
  if (c.output !== undefined) tc.ele('system-out', {}, clean(c.output));
}

/** The merged JUnit document (valid against junit-10.xsd: no `skipped` on <testsuites>). */
export function mergedJunitXml(reports: ReadReport[]): string {
  const { suites, name } = mergeReports(reports);
  const all = totals(suites.flatMap((s) => [...s.cases.values()].map((x) => x.c)));
  const time = suites.reduce((n, s) => n + s.time, 0);
  const root = xmlbuilder.create('testsuites', { version: '1.0', encoding: 'UTF-8' });
  root.att('name', name).att('tests', String(all.tests)).att('failures', String(all.failures)).att('errors', String(all.errors)).att('time', time.toFixed(3));
  for (const s of suites) {
    const cases = [...s.cases.values()].map((x) => x.c).sort((a, b) => cmp(a.name, b.name) || cmp(a.classname, b.classname));
    const t = totals(cases);
    const el = root.ele('testsuite', {
      name: s.name, tests: String(t.tests), failures: String(t.failures), errors: String(t.errors), skipped: String(t.skipped),
      time: s.time.toFixed(3), ...(s.timestamp ? { timestamp: s.timestamp } : {}),
    });
    const props = Object.entries(s.properties);
    if (props.length) {
      const p = el.ele('properties');
      for (const [k, v] of props) p.ele('property', { name: k, value: clean(v) });
    }
    for (const c of cases) addCase(el, c);
  }
  return root.end({ pretty: true }) + '\n';
}
