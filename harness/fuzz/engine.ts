// The fuzz property on fast-check's model-based testing: a setup, then a
// sequence of step commands (fc.commands: its generation, shrinking, seeds and
// replay paths). One `checkBatch` is one fc.check over a batch of sequences
// from one seed; the failing sequence is reported at once (onFirstFailure)
// and then shrunk, keeping the same finding signature while shrinking.

import fc from 'fast-check';
import type { SessionSetup } from '../drivers/driver.js';
import type { FuzzSession } from './exec.js';
import { FindingError, FuzzSequence, type StepStats, type TraceEntry } from './session.js';
import { sessionSetup, setupArbFor, stepContext, type FuzzSetup, type SetupShape } from './setup.js';
import { stepArb, type FuzzStep } from './steps.js';
import { liveSteps } from './live-steps.js';
import type { Disagreement } from './oracles.js';
import type { Corpus, CoverageSource } from './corpus.js';

type Real = FuzzSequence;
type Model = Record<string, never>;

class StepCommand implements fc.Command<Model, Real> {
  constructor(readonly step: FuzzStep) {}
  check(): boolean { return true; }
  run(_m: Model, r: Real): void { r.exec(this.step); }
  toString(): string { return stepLabel(this.step); }
}

class AsyncStepCommand implements fc.AsyncCommand<Model, Real> {
  constructor(readonly step: FuzzStep) {}
  check(): boolean { return true; }
  run(_m: Model, r: Real): Promise<void> { return r.execAsync(this.step); }
  toString(): string { return stepLabel(this.step); }
}

export function stepLabel(s: FuzzStep): string {
  const args = Object.entries(s.args).map(([k, v]) => `${k}=${Array.isArray(v) ? `[${v.length}]` : String(v)}`).join(',');
  return `${s.op}(${args})@${s.dom}.${s.vcpu}${s.cpl ? `/cpl${s.cpl}` : ''}`;
}

/** Where a fuzz run's targets come from. `sync` targets are the in-process model. */
export interface FuzzTargets {
  sync: boolean;
  openTarget(setup: SessionSetup): FuzzSession | Promise<FuzzSession>;
  openReference?(setup: SessionSetup): FuzzSession | Promise<FuzzSession>;
  /** Ops both can run (all when absent). */
  allowed?: ReadonlySet<string>;
  /** What setups both can build (default: two domains, both widths). */
  shape?: SetupShape;
  /**
   * The target's clock is its own (no time.control): what the clock writes is not
   * compared, and no step may block a vCPU for good (a poll with no timeout, a block).
   */
  liveClock?: boolean;
  /** The target's own Xen version (the xen target), used for both sides' setup. */
  xenVersion?: SessionSetup['xenVersion'];
  /** Coverage of the target after each sequence (KCOV on a live kernel): guides generation. */
  coverage?: CoverageSource;
}

export interface Finding {
  signature: string;
  disagreement: Disagreement;
  setup: FuzzSetup;
  trace: TraceEntry[];
  /** The failing step's index in the trace. */
  index: number;
  /** fast-check seed and path of the (shrunk) counterexample. */
  fcSeed: number;
  fcPath: string;
  replayPath?: string;
  /** Shrinking was stopped (signal, shrink time up) before fast-check finished it. */
  shrinkCut?: boolean;
}

/**
 * A finding's dedup key: kind, op, field, and the classes of both sides. An argument that
 * names what the op acts on (kvm.xen_get_attr's `attr`: a string, never a number) is part
 * of the op, so a 6.1 difference in one attribute does not count another's as known.
 */
export function signature(trace: TraceEntry[], index: number, d: Disagreement): string {
  const step = trace[index].step;
  const named = Object.entries(step.args).filter(([, v]) => typeof v === 'string').map(([k, v]) => `${k}=${v}`);
  const op = named.length ? `${step.op}(${named.join(',')})` : step.op;
  return `${d.kind}|${op}|${d.field}|${d.classes[0]}->${d.classes[1]}`;
}

export interface BatchOptions {
  seed: number;
  runs: number;
  maxCommands: number;
  stats: StepStats;
  /** Called with the first failing (unshrunk) sequence of the batch, before shrinking starts. */
  onFirstFailure?: (f: Omit<Finding, 'fcSeed' | 'fcPath'>) => void;
  /** Compare area bytes with the reference after each step. */
  compareMemory?: boolean;
  /** Stop generating more sequences (SIGINT/SIGTERM, time up). */
  interrupted?: () => boolean;
  /**
   * Stop shrinking (SIGINT/SIGTERM, shrink time up): the smallest failing sequence found
   * so far is the finding. On a live target a replay takes seconds, and fast-check's
   * shrinking of a long sequence can take hours.
   */
  shrinkStopped?: () => boolean;
  /** Replay one counterexample (seed and path of an earlier batch). */
  path?: string;
  /** A signature already in the findings store: counted (onKnown), not shrunk again. */
  isKnown?: (signature: string) => boolean;
  onKnown?: (signature: string) => void;
  /** Sequences that reached new coverage (targets.coverage), kept across batches and mutated. */
  corpus?: Corpus;
}

type Seq = [FuzzSetup, Iterable<fc.Command<Model, Real>>];
const cmdCache = new Map<string, fc.Arbitrary<fc.Command<Model, Real>>>();

interface ArbOptions {
  sync: boolean;
  maxCommands: number;
  allowed?: ReadonlySet<string>;
  shape: SetupShape;
  liveClock: boolean;
  /** The part of a cache key that is the same for every setup of a batch. */
  key: string;
}

function command(sync: boolean, step: FuzzStep): fc.Command<Model, Real> {
  return (sync ? new StepCommand(step) : new AsyncStepCommand(step)) as fc.Command<Model, Real>;
}

/** The step command arbitrary of one setup; built once per setup and shape. */
function commandArb(s: FuzzSetup, o: ArbOptions): fc.Arbitrary<fc.Command<Model, Real>> {
  const { shape } = o;
  const key = `${o.key}/${JSON.stringify(s)}`;
  let arb = cmdCache.get(key);
  if (!arb) {
    const cpl3 = !shape.cpl3 || (s.mode === 64 ? shape.cpl3.mode64 : shape.cpl3.mode32);
    const step = stepArb({ ...stepContext(s), allowed: o.allowed, liveClock: o.liveClock, cpl3, ownDom0: shape.ownDom0, kvmFeatures: shape.kvmFeatures });
    arb = step.map((x) => command(o.sync, x));
    cmdCache.set(key, arb);
  }
  return arb;
}

const seqCache = new Map<string, fc.Arbitrary<Seq>>();

/** A setup and its command sequence; the sequence arbitrary is built once per setup. */
function sequenceArb(o: ArbOptions): fc.Arbitrary<Seq> {
  return setupArbFor(o.shape).chain((s) => {
    const key = `${o.maxCommands}/${o.key}/${JSON.stringify(s)}`;
    let arb = seqCache.get(key);
    if (!arb) {
      arb = fc.tuple(fc.constant(s), fc.commands([commandArb(s, o)], { maxCommands: o.maxCommands, size: 'max' }));
      seqCache.set(key, arb);
    }
    return arb;
  });
}

/**
 * A mutation of a corpus entry: its first n steps (3 in 4) or an ordered subset of
 * them, then fresh steps, at most maxCommands of them beyond 8 when the kept part
 * is long. The kept steps are fixed commands; shrinking cuts the kept part and the
 * fresh steps.
 */
function mutationArb(corpus: Corpus, o: ArbOptions): fc.Arbitrary<Seq> {
  return fc.nat().chain((i) => {
    const e = corpus.entries[i % corpus.entries.length];
    // On a live clock a cut can part a step from the one that undoes it (live-steps.ts).
    const cut = (steps: FuzzStep[]) => (o.liveClock ? liveSteps(steps) : steps);
    const kept = fc.oneof(
      { weight: 3, arbitrary: fc.integer({ min: 1, max: e.steps.length }).map((n) => cut(e.steps.slice(0, n))) },
      { weight: 1, arbitrary: fc.subarray(e.steps, { minLength: 1 }).map(cut) },
    );
    return kept.chain((prefix) => fc.commands([commandArb(e.setup, o)], { maxCommands: Math.max(8, o.maxCommands - prefix.length), size: 'max' })
      .map((fresh): Seq => {
        corpus.mutated++;
        return [e.setup, [...prefix.map((x) => command(o.sync, x)), ...fresh]];
      }));
  });
}

/** Fresh sequences, and with a guiding corpus, mutations of its entries (2 in 3 once it has any). */
function guidedArb(o: ArbOptions, corpus?: Corpus): fc.Arbitrary<Seq> {
  const fresh = sequenceArb(o);
  if (!corpus) return fresh;
  return fc.nat({ max: 2 }).chain((pick) => (pick === 0 || corpus.entries.length === 0 ? fresh : mutationArb(corpus, o)));
}

/** Run one batch of sequences; returns the shrunk finding, if any. */
export async function checkBatch(targets: FuzzTargets, o: BatchOptions): Promise<Finding | undefined> {
  let first: string | undefined;
  let last: { f: FindingError; setup: FuzzSetup } | undefined;
  let shrinkCut = false;
  const skip = (): boolean => {
    if (first === undefined) return o.interrupted?.() ?? false;
    if (o.shrinkStopped?.()) shrinkCut = true;
    return shrinkCut;
  };
  const onError = (e: unknown, setup: FuzzSetup): boolean => {
    if (!(e instanceof FindingError)) throw e;
    const sig = signature(e.trace, e.index, e.disagreement);
    // While shrinking, only the same finding counts: the case stays about one bug.
    if (first !== undefined && sig !== first) return true;
    if (first === undefined && o.isKnown?.(sig)) {
      o.onKnown?.(sig);
      return true;
    }
    if (first === undefined) {
      first = sig;
      o.onFirstFailure?.({ signature: sig, disagreement: e.disagreement, setup, trace: e.trace, index: e.index });
    }
    last = { f: e, setup };
    return false;
  };
  const open = async (setup: FuzzSetup) => {
    const ss = sessionSetup(setup, targets.xenVersion);
    const t = await targets.openTarget(ss);
    const r = targets.openReference ? await targets.openReference(ss) : undefined;
    return new FuzzSequence(ss, t, r, o.stats, o.compareMemory ?? true, targets.liveClock);
  };
  const params = { seed: o.seed, numRuns: o.runs, path: o.path };
  const arbOptions = (sync: boolean): ArbOptions => {
    const shape = targets.shape ?? { multi: true, mode32: true };
    const liveClock = targets.liveClock ?? false;
    const ops = targets.allowed ? [...targets.allowed].sort().join(',') : '*';
    return { sync, maxCommands: o.maxCommands, allowed: targets.allowed, shape, liveClock, key: `${sync}/${liveClock}/${JSON.stringify(shape)}/${ops}` };
  };
  const cov = targets.coverage;
  const corpus = cov?.guide ? o.corpus : undefined;
  // After each sequence: what it reached; a passing sequence that reached new edges joins the corpus.
  const observe = (setup: FuzzSetup, seq: FuzzSequence, passed: boolean) => {
    if (!cov) return;
    const t = cov.collect();
    if (o.corpus) o.corpus.last = t;
    if (passed && t.newEdges > 0) o.corpus?.add({ setup, steps: seq.trace.map((x) => x.step), newEdges: t.newEdges });
  };
  let result;
  if (targets.sync) {
    const prop = fc.property(guidedArb(arbOptions(true), corpus), ([setup, cmds]) => {
      if (skip()) return true;
      o.stats.sequences++;
      const ss = sessionSetup(setup, targets.xenVersion);
      const t = targets.openTarget(ss) as FuzzSession;
      const r = targets.openReference?.(ss) as FuzzSession | undefined;
      const seq = new FuzzSequence(ss, t, r, o.stats, o.compareMemory ?? true, targets.liveClock);
      let passed = false;
      try {
        fc.modelRun(() => ({ model: {}, real: seq }), cmds);
        passed = true;
        return true;
      } catch (e) {
        return onError(e, setup);
      } finally {
        observe(setup, seq, passed);
      }
    });
    result = fc.check(prop, params);
  } else {
    const prop = fc.asyncProperty(guidedArb(arbOptions(false), corpus), async ([setup, cmds]) => {
      if (skip()) return true;
      o.stats.sequences++;
      const seq = await open(setup);
      let passed = false;
      try {
        await fc.asyncModelRun(() => ({ model: {}, real: seq }), cmds as Iterable<fc.AsyncCommand<Model, Real>>);
        passed = true;
        return true;
      } catch (e) {
        return onError(e, setup);
      } finally {
        await seq.target.close();
        await seq.reference?.close();
        observe(setup, seq, passed);
      }
    });
    result = await fc.check(prop, params);
  }
  if (!result.failed) return undefined;
  if (!last) {
    // Not a finding: an error of the fuzzer itself (a vocabulary or driver fault).
    throw result.errorInstance ?? new Error('fuzz property failed without a finding');
  }
  const { f, setup } = last as { f: FindingError; setup: FuzzSetup };
  const replay = /replayPath="([^"]*)"/.exec(String(result.counterexample?.[0]?.[1] ?? ''))?.[1];
  return {
    signature: signature(f.trace, f.index, f.disagreement), disagreement: f.disagreement, setup, trace: f.trace, index: f.index,
    fcSeed: result.seed, fcPath: result.counterexamplePath ?? '', replayPath: replay, shrinkCut,
  };
}
