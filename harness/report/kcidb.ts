// KCIDB (KernelCI's report database) I/O JSON, schema v5.3: one `tests` entry
// per case, with a dotted path (xconf.evtchn.bind_ipi.mode_32), PASS / FAIL /
// SKIP / ERROR, and the run's facts in `misc`. A known divergence is a FAIL
// (the implementation does diverge) whose `misc.known_divergence` says it is
// expected. Built from the cases read back from JUnit (harness/report/junit-read.ts),
// so `xconf run --kcidb` and `xconf report --kcidb FILE.xml` give the same entries.
import { basename, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { UsageError } from '../errors.js';
import { checkKcidbOptions, type KcidbOptions } from './kcidb-options.js';
import type { RunSummary } from '../runner/results.js';
import { junitXml } from './junit.js';
import { parseJunit, reportCases, type ReadCase, type ReadReport } from './junit-read.js';

export interface KcidbTest {
  id: string;
  build_id: string;
  origin: string;
  path: string;
  status: 'PASS' | 'FAIL' | 'SKIP' | 'ERROR';
  start_time?: string;
  duration: number;
  comment?: string;
  log_excerpt?: string;
  output_files?: Array<{ name: string; url: string }>;
  misc: Record<string, unknown>;
}

export interface KcidbDoc {
  version: { major: 5; minor: 3 };
  tests: KcidbTest[];
}

const STATUS = { pass: 'PASS', fail: 'FAIL', xfail: 'FAIL', error: 'ERROR', skip: 'SKIP' } as const;
const LOG_MAX = 16384;

/** One path component: what the KCIDB path pattern allows; '-', '=' and the like made '_' as in xconf.evtchn.bind_ipi.mode_32. */
export function pathPart(s: string): string {
  return s.replace(/[^A-Za-z0-9_]/g, '_') || '_';
}

/** The dotted KCIDB path of a case: xconf, the case id's parts, the variant. */
export function kcidbPath(id: string, variant: string): string {
  return ['xconf', ...id.split('/').map(pathPart), ...(variant ? [pathPart(variant)] : [])].join('.');
}

/** RFC 3339 with a zone: JUnit timestamps are written in UTC without one. */
function startTime(ts: string | undefined): string | undefined {
  if (!ts || Number.isNaN(Date.parse(ts.endsWith('Z') || /[+-]\d\d:\d\d$/.test(ts) ? ts : `${ts}Z`))) return undefined;
  return /Z$|[+-]\d\d:\d\d$/.test(ts) ? ts : `${ts}Z`;
}

function testOf(c: ReadCase, o: KcidbOptions, buildId: string, reportFile: string): KcidbTest {
  const path = kcidbPath(c.id, c.variant);
  // The id names the case exactly (ids allow any character but NUL); the path
  // is a node of KCIDB's test tree, which near-identical names may share.
  const run = [c.target, c.kernel ?? '', c.label].join(':');
  const misc: Record<string, unknown> = { target: c.target, xconf_status: c.status, case: c.name };
  if (c.kernel) misc.kernel = c.kernel;
  if (c.properties.capabilities !== undefined) misc.capabilities = c.properties.capabilities.split(/\s+/).filter(Boolean);
  if (c.servedBy.length) misc.served_by = c.servedBy;
  if (c.properties.seed !== undefined) misc.seed = c.properties.seed;
  if (c.variant) misc.variant = c.variant;
  if (c.file) misc.file = c.line ? `${c.file}:${c.line}` : c.file;
  if (c.message) misc.message = c.message;
  if (c.status === 'xfail') misc.known_divergence = c.divergence ?? { reason: c.message ?? '' };
  const t: KcidbTest = {
    id: `${o.origin}:${buildId.slice(buildId.indexOf(':') + 1)}:${run}:${c.name}`.replace(/\0/g, ''),
    build_id: buildId, origin: o.origin, path, status: STATUS[c.status], duration: c.time, misc,
  };
  const st = startTime(c.timestamp);
  if (st) t.start_time = st;
  if (c.status === 'xfail') t.comment = `known divergence: ${c.divergence ? `${c.divergence.reason} (${c.divergence.where})` : c.message}`;
  const log = [c.message, c.detail].filter(Boolean).join('\n\n');
  if (log && (c.status === 'fail' || c.status === 'error' || c.status === 'xfail')) t.log_excerpt = log.replace(/\0/g, '').slice(0, LOG_MAX);
  const name = basename(reportFile);
  const url = o.artifactsUrl ? `${o.artifactsUrl.replace(/\/?$/, '/')}${encodeURIComponent(name)}` : pathToFileURL(resolve(reportFile)).href;
  t.output_files = [{ name, url }];
  return t;
}

/** KCIDB tests of the cases of JUnit reports (differential suites left out: they repeat cases). */
export function kcidbFromReports(reports: ReadReport[], opts: KcidbOptions): KcidbDoc {
  const o = { ...checkKcidbOptions(opts), artifactsUrl: opts.artifactsUrl };
  const buildId = /^[a-z0-9_]+:/.test(o.buildId) ? o.buildId : `${o.origin}:${o.buildId}`;
  const tests: KcidbTest[] = [];
  const seen = new Map<string, string>();
  for (const r of reports) {
    for (const c of reportCases(r)) {
      const t = testOf(c, o, buildId, r.file);
      const before = seen.get(t.id);
      if (before !== undefined) {
        throw new UsageError(`${r.file}: case ${c.name} of ${c.suite} is also in ${before}: give each run once (merge shards, not copies)`);
      }
      seen.set(t.id, r.file);
      tests.push(t);
    }
  }
  return { version: { major: 5, minor: 3 }, tests };
}

/** KCIDB of a finished run (`xconf run --kcidb=PATH`); `junitFile` is where its JUnit report is. */
export function kcidbFromRun(run: RunSummary, opts: KcidbOptions, junitFile: string): KcidbDoc {
  return kcidbFromReports([parseJunit(junitXml(run), junitFile)], opts);
}

/** Merges KCIDB documents (e.g. of shards): tests concatenated, the same id twice refused. */
export function mergeKcidb(docs: Array<{ file: string; doc: unknown }>): KcidbDoc {
  const tests: KcidbTest[] = [];
  const seen = new Map<string, string>();
  for (const { file, doc } of docs) {
    const d = doc as Partial<KcidbDoc>;
    if (!d || typeof d !== 'object' || d.version?.major !== 5 || !Array.isArray(d.tests)) {
      throw new UsageError(`${file}: not a KCIDB v5 document (needs "version": {"major": 5} and a "tests" list)`);
    }
    for (const t of d.tests) {
      const before = seen.get(t.id);
      if (before !== undefined) throw new UsageError(`${file}: test ${t.id} is also in ${before}: the files overlap`);
      seen.set(t.id, file);
      tests.push(t);
    }
  }
  return { version: { major: 5, minor: 3 }, tests };
}

/** One test a line: diffable, and a third of the size of indented JSON. */
export function kcidbJson(doc: KcidbDoc): string {
  return `{"version":${JSON.stringify(doc.version)},"tests":[\n${doc.tests.map((t) => JSON.stringify(t)).join(',\n')}\n]}\n`;
}

export { checkKcidbOptions, type KcidbOptions };
