// A coverage-guided run's starting corpus from the suites (as syzkaller starts from a
// corpus of programs): each case, matrix expanded, runs once on model-kvm to resolve
// its variables and saved values; its steps in the fuzz vocabulary become a fuzz
// sequence in the nearest fuzz setup. At the start of the run each such sequence runs
// on target and reference under the same oracles as any other; one that reaches new
// kernel edges joins the corpus that later sequences mutate. A seed that disagrees is
// reported (its case, run with `xconf run`, tells whether the case fails too) and not kept.

import type { Capabilities } from '../drivers/driver.js';
import { ModelDriver } from '../drivers/model/model-driver.js';
import { loadPaths } from '../suite/loader.js';
import { plan } from '../runner/plan.js';
import { DEFAULTS, runCase, skipReason, type ResolvedStep } from '../runner/run-case.js';
import type { Corpus } from './corpus.js';
import type { FuzzTargets } from './engine.js';
import { FindingError, FuzzSequence, type StepStats } from './session.js';
import { DOMS, sessionSetup, VCPUS, type FuzzSetup, type SetupShape } from './setup.js';
import { liveSteps } from './live-steps.js';
import type { ArgValue, FuzzStep } from './steps.js';

export interface SeedSequence {
  /** The case and variant it came from. */
  name: string;
  setup: FuzzSetup;
  steps: FuzzStep[];
}

export interface SeedLoad {
  seeds: SeedSequence[];
  /** Variants planned, and those without one step the fuzz targets both run. */
  variants: number;
  empty: number;
}

const PORT_LIMITS = [63, 1023];

/** The fuzz setup nearest a case's: its guest width and first domain's port limit. */
function fuzzSetupOf(r: ResolvedStep, shape: SetupShape): FuzzSetup {
  const limit = Number(r.setup.domains[0]?.limits?.max_evtchn_port ?? 1023);
  let s: FuzzSetup = { mode: r.setup.mode, portLimit: PORT_LIMITS.includes(limit) ? limit : 1023, maptrackFrames: 1 };
  if (!shape.multi) s = { ...s, single: true };
  if (shape.oneVcpu) s = { ...s, vcpus: 1 };
  return s;
}

/** Resolved argument values as fuzz step arguments (integers as bigints). */
function argValue(v: unknown): ArgValue | undefined {
  if (typeof v === 'bigint' || typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === 'bigint' || typeof x === 'number')) return v.map((x) => BigInt(x as bigint));
    const recs = v.map((x) => (x && typeof x === 'object' ? argRecord(x as Record<string, unknown>) : undefined));
    if (recs.every((r) => r !== undefined)) return recs as Array<Record<string, bigint>>;
  }
  return undefined;
}

function argRecord(o: Record<string, unknown>): Record<string, bigint> | undefined {
  const out: Record<string, bigint> = {};
  for (const [k, x] of Object.entries(o)) {
    if (typeof x === 'bigint') out[k] = x;
    else if (typeof x === 'number' && Number.isInteger(x)) out[k] = BigInt(x);
    else return undefined;
  }
  return out;
}

/**
 * An MSR write that points the hypercall page at the one the guest calls: with a blob
 * configured it would overwrite the guest's own stubs with the blob's bytes. The fuzz
 * vocabulary aims the MSR elsewhere (steps-kvm.ts); a seed keeps to it.
 */
function rewritesOwnPage(r: ResolvedStep): boolean {
  if (r.op !== 'msr.write') return false;
  const value = (r.args as { value?: bigint } | undefined)?.value;
  return typeof value === 'bigint' && Number(value & ~0xfffn) === DEFAULTS.hypercallPage;
}

function fuzzStep(r: ResolvedStep, setup: FuzzSetup): FuzzStep | undefined {
  if (rewritesOwnPage(r)) return undefined;
  const vcpus = setup.vcpus ?? VCPUS;
  const dom = r.place.dom;
  if (!(DOMS as readonly number[]).includes(dom) || (setup.single && dom !== DOMS[0])) return undefined;
  if (r.place.vcpu >= (dom === DOMS[0] ? vcpus : 1)) return undefined;
  const args: Record<string, ArgValue> = {};
  for (const [k, v] of Object.entries((r.args ?? {}) as Record<string, unknown>)) {
    if (v === undefined) continue;
    const a = argValue(v);
    if (a === undefined) return undefined;
    args[k] = a;
  }
  return { op: r.op, args, dom, vcpu: r.place.vcpu, cpl: r.place.cpl };
}

/**
 * Seed sequences from the cases under `paths`, cut to the ops both fuzz targets run; a case
 * any of `caps` (the targets' capabilities) would skip is left out.
 */
export async function seedsFromSuites(
  paths: string[], allowed: ReadonlySet<string> | undefined, shape: SetupShape, caps: readonly Capabilities[] = [],
): Promise<SeedLoad> {
  const { cases } = loadPaths(paths, { cache: null });
  const driver = new ModelDriver('kvm');
  const own = await driver.probe();
  const seeds: SeedSequence[] = [];
  let variants = 0;
  let empty = 0;
  for (const pc of plan(cases, {})) {
    if ([own, ...caps].some((c) => skipReason(pc, c))) continue;
    variants++;
    const resolved: ResolvedStep[] = [];
    await runCase(pc, driver, own, { onResolved: (r) => resolved.push(r) });
    if (!resolved.length) { empty++; continue; }
    const setup = fuzzSetupOf(resolved[0], shape);
    if (setup.mode === 32 && !shape.mode32) { empty++; continue; }
    const steps = resolved.filter((r) => !allowed || allowed.has(r.op)).map((r) => fuzzStep(r, setup)).filter((x): x is FuzzStep => x !== undefined);
    if (!steps.length) { empty++; continue; }
    seeds.push({ name: pc.name, setup, steps });
  }
  return { seeds, variants, empty };
}

export interface SeedRun {
  run: number;
  kept: number;
  disagreed: number;
}

/**
 * Run each seed on target and reference (with the fuzz oracles) and keep in the corpus
 * those that reach new edges. `say` gets one line per disagreeing seed (the first 10).
 */
export async function runSeeds(
  targets: FuzzTargets, seeds: SeedSequence[],
  o: { stats: StepStats; corpus: Corpus; say: (line: string) => void; stop: () => boolean; progress?: () => void },
): Promise<SeedRun> {
  const r: SeedRun = { run: 0, kept: 0, disagreed: 0 };
  const cov = targets.coverage;
  for (const seed of seeds) {
    if (o.stop()) break;
    r.run++;
    // What runs is what the corpus keeps, so its mutations block no vCPU either.
    const steps = targets.liveClock ? liveSteps(seed.steps) : seed.steps;
    const ss = sessionSetup(seed.setup, targets.xenVersion);
    const t = await targets.openTarget(ss);
    const ref = targets.openReference ? await targets.openReference(ss) : undefined;
    const seq = new FuzzSequence(ss, t, ref, o.stats, true, targets.liveClock);
    let passed = false;
    try {
      for (const step of steps) {
        if (targets.sync) seq.exec(step);
        else await seq.execAsync(step);
      }
      passed = true;
    } catch (e) {
      if (!(e instanceof FindingError)) throw e;
      r.disagreed++;
      const d = e.disagreement;
      if (r.disagreed <= 10) o.say(`seed ${seed.name}: step ${e.index + 1} (${e.trace[e.index].step.op}) ${d.field}: expected ${d.expected}, got ${d.actual} (not kept)`);
    } finally {
      await t.close();
      await ref?.close();
    }
    if (!cov) {
      o.progress?.();
      continue;
    }
    const totals = cov.collect();
    o.corpus.last = totals;
    if (passed && o.corpus.add({ setup: seed.setup, steps, newEdges: totals.newEdges })) r.kept++;
    o.progress?.();
  }
  return r;
}
