// A fuzz session: batches of sequences from the shard's seed stream until the
// time is up or a stop is requested (SIGINT/SIGTERM), findings written as they
// come, progress shown, and a report at the end. Memory stays flat: nothing
// per sequence outlives its batch; what grows is bounded by the op vocabulary
// and the number of distinct finding signatures.

import type { FuzzTargets, Finding } from './engine.js';
import { checkBatch } from './engine.js';
import { FindingStore, type FindingContext, type StoredFinding } from './findings.js';
import { Progress } from './progress.js';
import { batchSeed, type Shard } from './seeds.js';
import { Corpus, CoverageTimeline, type CoverageTotals } from './corpus.js';
import type { StepStats } from './session.js';
import { runSeeds, type SeedSequence } from './seed-corpus.js';

export interface FuzzRunOptions {
  target: string;
  reference?: string;
  timeMs: number;
  seed: number;
  shard: Shard;
  outDir: string;
  targets: FuzzTargets;
  /** Sequences per fast-check batch, and steps per sequence at most. */
  batchRuns?: number;
  maxCommands?: number;
  /** Where progress and findings are printed. */
  out: { write(s: string): unknown; isTTY?: boolean };
  /** Set by the caller's signal handlers: finish the batch, save, stop. */
  stop: { requested: boolean };
  /** Stop at the first new finding (selfcheck). */
  stopOnFinding?: boolean;
  /** Interval of plain progress lines when not on a TTY. */
  plainEveryMs?: number;
  /** How long shrinking may go on past timeMs (default min(SHRINK_GRACE_MS, timeMs)). */
  shrinkGraceMs?: number;
  /** A coverage-guided run's starting corpus (seed-corpus.ts), run first. */
  seeds?: SeedSequence[];
}

export interface FuzzReport {
  target: string;
  reference?: string;
  seed: number;
  shard?: string;
  startedAt: string;
  elapsedMs: number;
  steps: number;
  sequences: number;
  stepsPerSecond: number;
  /** Steps per second of CPU time used by this process (one core's worth). */
  stepsPerCpuSecond: number;
  opsCovered: number;
  opsTotal: number;
  /** Steps where the reference took held events KVM delivered at an exit no model foresees (session.ts). */
  adopted: number;
  findings: StoredFinding[];
  /** The shrunk findings of this session (new signatures only). */
  found: Finding[];
  /** With a coverage source (--kcov): what it reached, over time, and the corpus. */
  coverage?: {
    source: string;
    guided: boolean;
    totals: CoverageTotals;
    timeline: Array<{ ms: number; edges: number; pcs: number }>;
    corpus: number;
    corpusAdded: number;
    mutated: number;
  };
  stoppedBy: 'time' | 'signal' | 'finding';
}

/** How long shrinking may go on past --time (at most; never more than --time itself). */
export const SHRINK_GRACE_MS = 60_000;

const tick = () => new Promise<void>((r) => setImmediate(r));

export async function runFuzzSession(o: FuzzRunOptions): Promise<FuzzReport> {
  const store = new FindingStore(o.outDir);
  const stats: StepStats = { steps: 0, sequences: 0, ops: new Map() };
  const ctx: FindingContext = { target: o.target, reference: o.reference, seed: o.seed, shard: o.shard.n > 1 ? `${o.shard.k}/${o.shard.n}` : undefined };
  const opsTotal = o.targets.allowed?.size ?? 0;
  const progress = new Progress(o.out, !!o.out.isTTY, 250, o.plainEveryMs ?? 10_000);
  const seen = new Map<string, StoredFinding>();
  const cov = o.targets.coverage;
  const corpus = cov ? new Corpus() : undefined;
  const timeline = new CoverageTimeline();
  const found: Finding[] = [];
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  let rateFrom = { t: t0, steps: 0 };
  let rate = 0;
  let stoppedBy: FuzzReport['stoppedBy'] = 'time';
  const elapsed = () => performance.now() - t0;
  const timeUp = () => elapsed() >= o.timeMs;
  // Shrinking a finding may go on past the session's time by this much, then the smallest
  // failing sequence found so far is saved (a live replay takes seconds: a full shrink can take hours).
  const shrinkGraceMs = o.shrinkGraceMs ?? Math.min(SHRINK_GRACE_MS, o.timeMs);
  const show = (force = false) => {
    const now = performance.now();
    // The rate over the last second or more (a forced update right after one keeps the last rate).
    if (now - rateFrom.t >= 1000) {
      rate = ((stats.steps - rateFrom.steps) * 1000) / Math.max(1, now - rateFrom.t);
      rateFrom = { t: now, steps: stats.steps };
    }
    if (corpus?.last) timeline.observe(elapsed(), corpus.last);
    progress.update({
      steps: stats.steps, sequences: stats.sequences, opsCovered: stats.ops.size, opsTotal,
      findings: seen.size, elapsedMs: elapsed(), totalMs: o.timeMs, rate,
      edges: corpus ? corpus.last?.edges ?? 0 : undefined, corpus: corpus?.entries.length,
    }, now, force);
  };
  const say = (line: string) => {
    progress.clear();
    o.out.write(`${line}\n`);
  };
  if (o.seeds?.length && corpus) {
    // The seeds get half the run at most: the rest is for mutating them.
    const r = await runSeeds(o.targets, o.seeds, {
      stats, corpus, say, stop: () => o.stop.requested || elapsed() >= o.timeMs / 2, progress: () => show(),
    });
    say(`seed corpus: ${r.run} of ${o.seeds.length} sequences from the cases run, ${r.kept} reached new edges and were kept, ${r.disagreed} disagreed (not kept)`);
    show(true);
  }
  for (let batch = 0; ; batch++) {
    if (o.stop.requested) { stoppedBy = 'signal'; break; }
    if (timeUp()) break;
    const seed = batchSeed(o.seed, o.shard, batch);
    const f = await checkBatch(o.targets, {
      seed, runs: o.batchRuns ?? 100, maxCommands: o.maxCommands ?? 60, stats, corpus,
      interrupted: () => o.stop.requested || timeUp(),
      shrinkStopped: () => o.stop.requested || elapsed() >= o.timeMs + shrinkGraceMs,
      isKnown: (sig) => !store.isNew(sig),
      onKnown: (sig) => {
        const s = store.hit(sig)!;
        seen.set(sig, s);
      },
      onFirstFailure: (raw) => {
        const file = store.writeRaw({ ...raw, fcSeed: seed, fcPath: '' }, ctx);
        say(`finding: ${raw.signature} (unshrunk sequence of ${raw.trace.length} steps saved in ${file}; shrinking)`);
      },
    });
    if (f) {
      const s = store.writeShrunk(f, ctx);
      seen.set(f.signature, s);
      found.push(f);
      say(`finding: ${f.disagreement.kind} at step ${f.index + 1} of ${f.trace.length} (${f.trace[f.index].step.op}): ${f.disagreement.field}: expected ${f.disagreement.expected}, got ${f.disagreement.actual}`);
      if (f.shrinkCut) say(`  shrinking stopped (${o.stop.requested ? 'signal' : 'time'}): the smallest failing sequence so far is kept`);
      say(`  saved ${s.file}; replay: npx xconf run ${s.file} --target=${o.target}`);
      if (o.stopOnFinding) { stoppedBy = 'finding'; break; }
    }
    show();
    await tick(); // signals and timers run between batches
  }
  show(true);
  progress.clear();
  const ms = elapsed();
  const cpu = process.cpuUsage(c0);
  return {
    target: o.target, reference: o.reference, seed: o.seed, shard: ctx.shard, startedAt, elapsedMs: ms,
    steps: stats.steps, sequences: stats.sequences,
    stepsPerSecond: Math.round((stats.steps * 1000) / Math.max(1, ms)),
    stepsPerCpuSecond: Math.round((stats.steps * 1e6) / Math.max(1, cpu.user + cpu.system)),
    opsCovered: stats.ops.size, opsTotal, adopted: stats.adopted ?? 0, findings: [...seen.values()], found, stoppedBy,
    coverage: cov && corpus ? {
      source: cov.name, guided: cov.guide,
      totals: corpus.last ?? { newEdges: 0, newPcs: 0, edges: 0, pcs: 0, records: 0, overflows: 0, threads: 0, failedThreads: 0 },
      timeline: corpus.last && timeline.points.at(-1)?.edges !== corpus.last.edges
        ? [...timeline.points, { ms, edges: corpus.last.edges, pcs: corpus.last.pcs }] : timeline.points,
      corpus: corpus.entries.length, corpusAdded: corpus.added, mutated: corpus.mutated,
    } : undefined,
  };
}
