// JUnit XML that validates against the strict schema Jenkins' xunit plugin
// uses (junit-10.xsd), so every common consumer reads it. Built with
// xmlbuilder (the XML layer junit-report-builder itself uses), because that
// package cannot write a skip reason, omit the `skipped` attribute the schema
// refuses on <testsuites>, or keep per-case data out of <testcase>.
//
// One testsuite per subsystem (first part of the case id), named
// `<target>/<subsystem>`; deterministic order. Per case: <failure> for a
// mismatch, <error> for a harness or driver fault, <skipped message> for an
// unmet requirement, and <skipped type="pytest.xfail"> for a known divergence
// (as pytest reports xfail). Per-case data (served_by, variant, spec) goes in
// <system-out> as `key: value` lines; run-wide data (target, seed) in every
// suite's <properties>, the capabilities and driver facts in the first suite
// only. An interrupted run, or expectations entries gone stale, add a suite
// `xconf.run` whose error test says so, so no dashboard shows such a run green.
// The differential of a run has its own file (differentialJunitXml).

import xmlbuilder from 'xmlbuilder';
import type { CaseResult, RunSummary } from '../runner/results.js';
import { diffReason } from '../runner/differential.js';

type El = ReturnType<typeof xmlbuilder.create>;

const byName = <T extends { name: string }>(a: T, b: T) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
const secs = (ms: number) => (ms / 1000).toFixed(3);
/** XML 1.0 cannot carry most control characters, even escaped: show them as \xNN. */
const clean = (s: string) => s.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);

export function subsystemOf(id: string): string {
  const i = id.indexOf('/');
  return i < 0 ? id : id.slice(0, i);
}

/** Who served the case's steps; `kernel-delivery` where the kernel delivered events for the VMM layer. */
export function servedBy(r: CaseResult): string[] {
  const who = new Set(r.steps.map((s) => s.servedBy).filter((x): x is string => !!x));
  if (r.steps.some((s) => s.kernelDeliveries)) who.add('kernel-delivery');
  return [...who].sort();
}

/** The `key: value` lines a case carries in <system-out>, then its detail. */
function caseOutput(r: CaseResult): string {
  const lines: string[] = [];
  const served = servedBy(r);
  if (served.length) lines.push(`served_by: ${served.join(' ')}`);
  if (r.variant) lines.push(`variant: ${r.variant}`);
  if (r.spec.length) lines.push(`spec: ${r.spec.join('; ')}`);
  lines.push(`description: ${r.description}`);
  if (r.divergence) {
    lines.push(`known_divergence: ${r.divergence.where}${r.divergence.until ? ` (fixed in ${r.divergence.until})` : ''}`);
    lines.push(`expectation: ${r.divergence.source}`);
    if (r.message) lines.push(`failure: ${r.message}`);
  }
  return lines.join('\n') + (r.detail ? `\n\n${r.detail}` : '');
}

function suiteCounts(results: CaseResult[]) {
  let failures = 0, errors = 0, skipped = 0, ms = 0;
  for (const r of results) {
    if (r.status === 'fail') failures++;
    else if (r.status === 'error') errors++;
    else if (r.status === 'skip' || r.status === 'xfail') skipped++;
    ms += r.durationMs;
  }
  return { tests: results.length, failures, errors, skipped, ms };
}

function addCase(suite: El, r: CaseResult, times: boolean): void {
  const failing = r.steps.find((s) => s.status === 'fail' || s.status === 'error');
  const tc = suite.ele('testcase', {
    classname: `xconf.${subsystemOf(r.id)}`, name: r.name, file: r.file, line: String(failing?.line ?? 1),
    ...(times ? { time: secs(r.durationMs) } : {}),
  });
  const message = clean(r.message ?? r.status);
  if (r.status === 'fail') tc.ele('failure', { message, type: 'mismatch' }, clean(r.detail ?? message));
  else if (r.status === 'error') tc.ele('error', { message, type: 'harness' }, clean(r.detail ?? message));
  else if (r.status === 'skip') tc.ele('skipped', { message });
  else if (r.status === 'xfail') {
    const d = r.divergence!;
    tc.ele('skipped', { type: 'pytest.xfail', message: clean(`known divergence: ${d.reason} (${d.where})`) });
  }
  tc.ele('system-out', {}, clean(caseOutput(r)));
}

/** The `xconf.run` suite: one error test per reason the run as a whole cannot be trusted, or none. */
function runProblems(run: RunSummary): Array<{ name: string; message: string }> {
  const out: Array<{ name: string; message: string }> = [];
  if (run.interrupted) {
    const planned = run.planned ?? run.results.length;
    out.push({ name: 'interrupted', message: `run interrupted (${run.interrupted}) after ${run.results.length} of ${planned} cases; the results are partial` });
  }
  for (const p of run.expectationProblems ?? []) out.push({ name: `expectations: ${p.split(': ')[0]}`, message: p });
  return out;
}

export function junitXml(run: RunSummary, opts: { times?: boolean } = {}): string {
  const times = opts.times ?? true;
  const bySuite = new Map<string, CaseResult[]>();
  for (const r of [...run.results].sort(byName)) {
    const s = subsystemOf(r.id);
    if (!bySuite.has(s)) bySuite.set(s, []);
    bySuite.get(s)!.push(r);
  }
  const problems = runProblems(run);
  const all = suiteCounts(run.results);
  const root = xmlbuilder.create('testsuites', { version: '1.0', encoding: 'UTF-8' }, undefined, { headless: false });
  root.att('name', `xconf ${run.target}`).att('tests', String(all.tests + problems.length))
    .att('failures', String(all.failures)).att('errors', String(all.errors + problems.length));
  if (times) root.att('time', secs(run.durationMs));
  let first = true;
  const properties = (suite: El) => {
    const p = suite.ele('properties');
    p.ele('property', { name: 'target', value: run.target });
    p.ele('property', { name: 'seed', value: run.seed });
    if (!first) return;
    first = false;
    p.ele('property', { name: 'capabilities', value: run.capabilities.join(' ') });
    for (const [k, v] of Object.entries(run.properties).sort()) if (k !== 'target') p.ele('property', { name: k, value: clean(v) });
  };
  for (const [name, results] of [...bySuite].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const c = suiteCounts(results);
    const suite = root.ele('testsuite', {
      name: `${run.target}/${name}`, tests: String(c.tests), failures: String(c.failures), errors: String(c.errors),
      skipped: String(c.skipped), ...(times ? { time: secs(c.ms), timestamp: run.startedAt.replace(/\.\d+Z$/, '') } : {}),
    });
    properties(suite);
    for (const r of results) addCase(suite, r, times);
  }
  if (problems.length) {
    const suite = root.ele('testsuite', { name: 'xconf.run', tests: String(problems.length), failures: '0', errors: String(problems.length), skipped: '0' });
    properties(suite);
    for (const p of problems) suite.ele('testcase', { classname: 'xconf.run', name: p.name }).ele('error', { message: clean(p.message), type: 'run' }, clean(p.message));
  }
  return root.end({ pretty: true }) + '\n';
}

/**
 * The differential of a run against its reference target, as its own JUnit
 * file: one test per case that ran on the target; <failure> for a disagreement,
 * <skipped> when the reference could not run it, <skipped type="pytest.xfail">
 * when the disagreement is the case's known divergence.
 */
export function differentialJunitXml(run: RunSummary, opts: { times?: boolean } = {}): string {
  const d = run.differential;
  if (!d) throw new Error('differentialJunitXml: the run has no differential');
  const entries = [...d.entries].sort(byName);
  const failures = entries.filter((e) => e.verdict === 'disagree').length;
  const skipped = entries.filter((e) => e.verdict === 'not-compared' || e.verdict === 'known').length;
  const root = xmlbuilder.create('testsuites', { version: '1.0', encoding: 'UTF-8' });
  root.att('name', `xconf differential ${d.target} vs ${d.reference}`).att('tests', String(entries.length))
    .att('failures', String(failures)).att('errors', run.interrupted ? '1' : '0');
  const suite = root.ele('testsuite', {
    name: 'xconf.differential', tests: String(entries.length + (run.interrupted ? 1 : 0)), failures: String(failures),
    errors: run.interrupted ? '1' : '0', skipped: String(skipped), ...(opts.times ?? true ? { timestamp: run.startedAt.replace(/\.\d+Z$/, '') } : {}),
  });
  const p = suite.ele('properties');
  p.ele('property', { name: 'target', value: d.target });
  p.ele('property', { name: 'reference', value: d.reference });
  p.ele('property', { name: 'seed', value: run.seed });
  for (const e of entries) {
    const tc = suite.ele('testcase', { classname: 'xconf.differential', name: e.name, file: e.file });
    if (e.verdict === 'disagree') {
      tc.ele('failure', { message: clean(diffReason(e)), type: 'disagreement' }, clean(e.reasons.join('\n')));
    } else if (e.verdict === 'not-compared') tc.ele('skipped', { message: clean(`not compared: ${e.reasons[0]}`) });
    else if (e.verdict === 'known') {
      tc.ele('skipped', { type: 'pytest.xfail', message: clean(`known divergence: ${diffReason(e)}`) });
    }
  }
  if (run.interrupted) {
    suite.ele('testcase', { classname: 'xconf.run', name: 'interrupted' })
      .ele('error', { message: `run interrupted (${run.interrupted}); the comparison is partial`, type: 'run' });
  }
  return root.end({ pretty: true }) + '\n';
}
