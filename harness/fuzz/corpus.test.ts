// Coverage guidance: what reaches new edges joins the corpus, later sequences
// start from corpus entries, the corpus stays bounded, and --kcov refuses to run
// without KCOV. The coverage source here stands in for KCOV on the model: an
// "edge" is a pair (op, return value) the target produced first.
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DriverError } from '../errors.js';
import { Corpus, CoverageTimeline, type CoverageSource, type CoverageTotals } from './corpus.js';
import { checkBatch } from './engine.js';
import { compile, type FuzzSession } from './exec.js';
import { sessionSetup } from './setup.js';
import { KCOV_DEVICE, openKcov } from './kcov.js';
import type { StepStats } from './session.js';
import type { FuzzStep } from './steps.js';
import { buildTargets } from './targets.js';

const totals = (newEdges: number, edges: number): CoverageTotals =>
  ({ newEdges, newPcs: newEdges, edges, pcs: edges, records: 0, overflows: 0, threads: 1, failedThreads: 0 });

const stepKey = (s: FuzzStep) => JSON.stringify(s, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v));

/** Model targets whose sessions record the steps they ran, with an (op, ret) coverage source. */
async function tracedModel(guide: boolean) {
  const t = await buildTargets('model', undefined);
  const seen = new Set<string>();
  let fresh = 0;
  const runs: string[][] = [];
  const open = t.openTarget;
  t.openTarget = (setup) => {
    const s = open(setup) as FuzzSession;
    const ran: string[] = [];
    runs.push(ran);
    return {
      ...s,
      apply: (c) => {
        const o = s.apply(c) as { ret?: bigint };
        const action = stepKey(c.action as never);
        ran.push(action);
        const edge = `${action.slice(0, 40)}/${String(o.ret)}`;
        if (!seen.has(edge)) { seen.add(edge); fresh++; }
        return o as ReturnType<FuzzSession['apply']>;
      },
    };
  };
  const source: CoverageSource = {
    name: 'test (op, ret) pairs', guide,
    collect: () => { const n = fresh; fresh = 0; return totals(n, seen.size); },
  };
  t.coverage = source;
  return { t, runs };
}

async function batches(guide: boolean, n: number) {
  const { t, runs } = await tracedModel(guide);
  const corpus = new Corpus(64);
  const stats: StepStats = { steps: 0, sequences: 0, ops: new Map() };
  const kept: string[][] = [];
  for (let b = 0; b < n; b++) {
    const f = await checkBatch(t, { seed: 1000 + b, runs: 30, maxCommands: 20, stats, corpus, compareMemory: false });
    expect(f).toBeUndefined();
    for (const e of corpus.entries) kept.push(e.steps.map((x) => stepKey(compile(x, sessionSetup(e.setup)).action as never)));
  }
  return { corpus, runs, kept, stats };
}

describe('coverage-guided fuzzing', () => {
  it('keeps the sequences that reached new edges and starts later sequences from them', async () => {
    const { corpus, runs, kept } = await batches(true, 4);
    expect(corpus.entries.length).toBeGreaterThan(0);
    expect(corpus.entries.every((e) => e.newEdges > 0 && e.steps.length > 0)).toBe(true);
    expect(corpus.mutated).toBeGreaterThan(0);
    // A mutated sequence mostly starts with an entry's first steps, in order (the actions with
    // their arguments: a fresh sequence repeating an entry's first three is rare, dozens are not).
    const prefixes = new Set(kept.filter((s) => s.length >= 3).map((s) => s.slice(0, 3).join('|')));
    const fromCorpus = runs.filter((r) => r.length >= 3 && prefixes.has(r.slice(0, 3).join('|'))).length;
    expect(fromCorpus).toBeGreaterThan(runs.length / 10);
  });

  it('entries are the steps a sequence ran, with their arguments, in order', async () => {
    const { corpus, runs, kept } = await batches(true, 2);
    expect(corpus.entries.length).toBeGreaterThan(0);
    const ran = new Set(runs.map((r) => r.join('|')));
    for (const e of kept) expect(ran.has(e.join('|'))).toBe(true);
  });

  it('observing only never mutates', async () => {
    const { corpus } = await batches(false, 2);
    expect(corpus.mutated).toBe(0);
    expect(corpus.added).toBeGreaterThan(0);
  });

  it('on a live clock, a mutation never parts a bogus set_timer_op timeout from the stop after it', async () => {
    const { t, runs } = await tracedModel(true);
    t.liveClock = true;
    const st = (op: string, args: FuzzStep['args']): FuzzStep => ({ op, args, dom: 1, vcpu: 0, cpl: 0 });
    const bogus = st('timer.set_timer_op', { timeout: -1n });
    const stop = st('timer.set_timer_op', { timeout: 0n });
    const setup = { mode: 64 as const, portLimit: 1023, maptrackFrames: 1 };
    const corpus = new Corpus(4);
    corpus.add({ setup, steps: [bogus, stop, st('xen.version', { cmd: 0n }), bogus, stop], newEdges: 1 });
    const stats: StepStats = { steps: 0, sequences: 0, ops: new Map() };
    const f = await checkBatch(t, { seed: 7, runs: 60, maxCommands: 6, stats, corpus, compareMemory: false });
    console.log("FINDING", f && JSON.stringify(f, (_k, v) => (typeof v === "bigint" ? String(v) : v)).slice(0, 600));
    const key = (s: FuzzStep) => stepKey(compile(s, sessionSetup(setup)).action as never);
    const [b, s0] = [key(bogus), key(stop)];
    const withBogus = runs.filter((r) => r.includes(b));
    console.log("RUNS", runs.length, withBogus.length, runs.map((r) => r.length).join(","));
    expect(withBogus.length).toBeGreaterThan(0);
    // Prefixes cut after a bogus timeout were run too, with it as 2^49 ns.
    expect(runs.some((r) => r[0] === key(st('timer.set_timer_op', { timeout: 1n << 49n })))).toBe(true);
    for (const r of withBogus) r.forEach((a, i) => { if (a === b && r[i + 1] !== s0) console.log(runs.indexOf(r), r.length, r.map((x) => x.slice(0, 60)).join("\n")); if (a === b) expect(r[i + 1]).toBe(s0); });
  });

  it('the corpus is bounded and keeps the entries that found the most', () => {
    const c = new Corpus(3);
    const setup = { mode: 64 } as never;
    const step: FuzzStep = { op: 'xen.version', args: {}, dom: 1, vcpu: 0, cpl: 0 };
    for (const n of [5, 1, 7, 3, 9, 0]) c.add({ setup, steps: [step], newEdges: n });
    expect(c.entries.map((e) => e.newEdges).sort((a, b) => a - b)).toEqual([5, 7, 9]);
    expect(c.added).toBe(5); // the one with no new edge is not a candidate
  });

  it('the timeline records one point per checkpoint passed', () => {
    const t = new CoverageTimeline();
    for (const [ms, e] of [[5_000, 1], [10_500, 2], [11_000, 3], [65_000, 4], [700_000, 5], [3_700_000, 6]] as const) t.observe(ms, totals(0, e));
    expect(t.points.map((p) => p.edges)).toEqual([2, 4, 5, 6]);
  });

  it('--kcov without the kcov device stops with one line naming it', () => {
    if (existsSync(KCOV_DEVICE)) return; // a KCOV kernel: nothing to refuse
    let err: unknown;
    try {
      openKcov(true);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DriverError);
    expect((err as Error).message).toMatch(/^--kcov: (.*native|\/sys\/kernel\/debug\/kcov is missing: )/);
    expect((err as Error).message).not.toMatch(/\n/);
  });
});

describe('a KCOV run that saw nothing', () => {
  const report = (edges: number, failedThreads = 0, steps = 100) => ({
    steps, coverage: { totals: totals(0, edges), source: 'x', guided: true, timeline: [], corpus: 0, corpusAdded: 0, mutated: 0 },
  }) as never;
  it('is an environment error: no instrumented code reached, or untraced threads', async () => {
    const { kcovBlind } = await import('../cli/fuzz-command.js');
    expect(kcovBlind(report(0))).toMatch(/not built with KCOV/);
    expect(kcovBlind({ ...(report(5) as object), coverage: { ...(report(5) as { coverage: object }).coverage, totals: { ...totals(0, 5), failedThreads: 2 } } } as never)).toMatch(/2 thread\(s\)/);
    expect(kcovBlind(report(5))).toBeUndefined();
    expect(kcovBlind(report(0, 0, 0))).toBeUndefined();
  });
});
