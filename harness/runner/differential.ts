// Differential runs: every case that ran on the target runs again, same variant
// and seed, on a reference target, and the two are compared: the case status
// and, step by step, what each target observed (ret, fault, the OUT values the
// expectation names). Who served a step (kernel, VMM, model) is not compared.

import type { Driver } from '../drivers/driver.js';
import { describeRet } from '../model/errno.js';
import type { PlannedCase } from './plan.js';
import { runPlan } from './run.js';
import type { RunCaseOptions } from './run-case.js';
import type { CaseResult, DiffEntry, DiffSummary, StepObservation, StepRecord } from './results.js';

/** At most this many differences are spelled out in a disagreement's one-line reason. */
const REASON_LIMIT = 3;

/** A multi-line message on one line (console, JUnit message, KTAP directive). */
export const oneLine = (s: string) => s.replace(/\s*\n\s*/g, ' | ');

function showRet(v: string | undefined): string {
  if (v === undefined) return 'none';
  try {
    return describeRet(BigInt(v));
  } catch {
    return v;
  }
}

function showStatus(s: StepRecord | undefined): string {
  if (!s || s.status === 'not-run') return 'not reached';
  return s.status;
}

/** Differences between two observations of the same step, as "what t=X r=Y" fragments. */
function observationDiffs(a: StepObservation, b: StepObservation, tl: string, rl: string): string[] {
  const out: string[] = [];
  if (a.ret !== b.ret) out.push(`ret ${tl}=${showRet(a.ret)} ${rl}=${showRet(b.ret)}`);
  if (a.fault !== b.fault) out.push(`fault ${tl}=${a.fault ?? 'none'} ${rl}=${b.fault ?? 'none'}`);
  const keys = [...new Set([...Object.keys(a.out ?? {}), ...Object.keys(b.out ?? {})])].sort();
  for (const k of keys) {
    const x = a.out?.[k];
    const y = b.out?.[k];
    if (x !== y) out.push(`out.${k} ${tl}=${x ?? 'none'} ${rl}=${y ?? 'none'}`);
  }
  return out;
}

/**
 * Every difference between a case's result on the target (`t`) and on the
 * reference (`r`), one line each; empty when they agree. Labels name the two
 * targets in the lines.
 */
export function caseDifferences(t: CaseResult, r: CaseResult, tl: string, rl: string): string[] {
  const diffs: string[] = [];
  if (t.steps.length && r.steps.length) {
    const n = Math.max(t.steps.length, r.steps.length);
    for (let i = 0; i < n; i++) {
      const a = t.steps[i];
      const b = r.steps[i];
      const s = a ?? b;
      const where = `step ${s.index + 1} (${s.label}, line ${s.line})`;
      const obs = a?.observed && b?.observed ? observationDiffs(a.observed, b.observed, tl, rl) : [];
      if (obs.length) {
        diffs.push(`${where}: ${obs.join(', ')}`);
        continue;
      }
      // Same observations (or one side never got one): the step's own verdict may still differ.
      const sa = showStatus(a);
      const sb = showStatus(b);
      if (sa !== sb) {
        const why = [a, b].map((x, j) => (x?.message ? `${j ? rl : tl}: ${oneLine(x.message)}` : '')).filter(Boolean);
        diffs.push(`${where}: ${tl}=${sa} ${rl}=${sb}${why.length ? ` (${why.join('; ')})` : ''}`);
      }
    }
  }
  if (t.status !== r.status) {
    const why = diffs.length ? [] : [t, r].map((x, j) => (x.status !== 'pass' && x.message ? `${j ? rl : tl}: ${oneLine(x.message)}` : '')).filter(Boolean);
    diffs.push(`status ${tl}=${t.status} ${rl}=${r.status}${why.length ? ` (${why.join('; ')})` : ''}`);
  }
  return diffs;
}

/** The one-line reason of a disagreement. */
export function diffReason(entry: DiffEntry): string {
  const shown = entry.reasons.slice(0, REASON_LIMIT).join('; ');
  const more = entry.reasons.length - REASON_LIMIT;
  return more > 0 ? `${shown} (+${more} more)` : shown;
}

/** Labels for the two sides; a target compared with itself gets "(reference)" on the second. */
export function diffLabels(target: string, reference: string): [string, string] {
  return [target, reference === target ? `${reference}(reference)` : reference];
}

/**
 * Compares a run's results with the reference's, matched by case name. Cases
 * skipped on the target are not part of the comparison; cases skipped on (or
 * absent from) the reference are "not compared", with the reason.
 */
export function compareRuns(target: string, reference: string, results: CaseResult[], refResults: CaseResult[]): DiffSummary {
  const [tl, rl] = diffLabels(target, reference);
  const byName = new Map(refResults.map((r) => [r.name, r]));
  const entries: DiffEntry[] = [];
  for (const t of results) {
    if (t.status === 'skip') continue;
    const r = byName.get(t.name);
    const base = { name: t.name, id: t.id, file: t.file };
    if (!r) continue; // not run on the reference (yet)
    if (r.status === 'skip') {
      entries.push({ ...base, verdict: 'not-compared', reasons: [r.message ?? 'skipped'] });
      continue;
    }
    // A known divergence is compared as the failure it is, and a disagreement it explains is 'known'.
    const reasons = caseDifferences(t.status === 'xfail' ? { ...t, status: t.divergence!.expected } : t, r, tl, rl);
    const verdict = !reasons.length ? 'agree' : t.status === 'xfail' ? 'known' : 'disagree';
    entries.push({ ...base, verdict, reasons });
  }
  return { target, reference, entries };
}

export function diffCounts(d: DiffSummary) {
  const c = { compared: 0, agree: 0, disagree: 0, known: 0, notCompared: 0 };
  for (const e of d.entries) {
    if (e.verdict === 'not-compared') c.notCompared++;
    else {
      c.compared++;
      if (e.verdict === 'agree') c.agree++;
      else if (e.verdict === 'known') c.known++;
      else c.disagree++;
    }
  }
  return c;
}

/**
 * Runs, on the reference driver, every planned case that ran (was not skipped)
 * on the target, and compares. After each reference case `onProgress` gets a
 * function computing the comparison so far, so reports can be persisted as the
 * run goes without comparing everything again after every case.
 */
export async function runDifferential(
  planned: PlannedCase[],
  results: CaseResult[],
  target: string,
  reference: Driver,
  opts: RunCaseOptions & { seed?: string; isolate?: boolean; onProgress?: (soFar: () => DiffSummary) => void } = {},
): Promise<DiffSummary> {
  const ran = new Set(results.filter((r) => r.status !== 'skip').map((r) => r.name));
  const again = planned.filter((pc) => ran.has(pc.name));
  const ref = await runPlan(again, reference, {
    timeoutSeconds: opts.timeoutSeconds, seed: opts.seed, isolate: opts.isolate, xenVersion: opts.xenVersion,
    onResult: (_r, done) => opts.onProgress?.(() => compareRuns(target, reference.name, results, done)),
  });
  return compareRuns(target, reference.name, results, ref.results);
}
