// `xconf selfcheck`: does the harness catch real bugs? Every broken model of
// variants.ts is run through the suites and fuzzed against the real model; the
// fuzzer's YAML finding must then replay through the normal runner as a
// failure on the broken model and a pass on the real one.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelDriver } from '../drivers/model/model-driver.js';
import { loadPaths } from '../suite/loader.js';
import { plan } from '../runner/plan.js';
import { runPlan } from '../runner/run.js';
import { counts } from '../runner/results.js';
import type { ModelVariant } from '../model/variant.js';
import { buildTargets } from './targets.js';
import { runFuzzSession } from './run.js';
import { BROKEN_MODELS, type BrokenModel } from './variants.js';

export interface SelfcheckResult {
  name: string;
  bugClass: string;
  /** Suite cases failing on the broken model (undefined when suites were not run). */
  suiteFailures?: number;
  fuzzCaught: boolean;
  fuzzMs: number;
  signature?: string;
  /** The finding replayed: fails on the broken model, passes on the real one. */
  replayFailsOnVariant?: boolean;
  replayPassesOnModel?: boolean;
}

function driver(base: BrokenModel['base'], variant?: ModelVariant): ModelDriver {
  return new ModelDriver(base === 'model' ? 'xen' : 'kvm', variant);
}

/** Replay a finding file on a driver: 'fail' | 'pass' | other statuses. */
export async function replayStatus(file: string, d: ModelDriver): Promise<string> {
  const loaded = loadPaths([file]);
  if (loaded.problems.length) return `invalid (${loaded.problems[0].code}: ${loaded.problems[0].message})`;
  const run = await runPlan(plan(loaded.cases, {}), d);
  const c = counts(run.results);
  return c.fail + c.error > 0 ? 'fail' : c.pass === c.total ? 'pass' : 'skip';
}

export interface SelfcheckOptions {
  timeMs: number;
  seed: number;
  suites?: string[];
  only?: string;
  out: { write(s: string): unknown; isTTY?: boolean };
  stop: { requested: boolean };
}

export async function selfcheck(o: SelfcheckOptions): Promise<SelfcheckResult[]> {
  const results: SelfcheckResult[] = [];
  const cases = o.suites ? loadPaths(o.suites) : undefined;
  if (cases?.problems.length) throw new Error(`suites: ${cases.problems[0].file}:${cases.problems[0].line}: ${cases.problems[0].message}`);
  for (const b of BROKEN_MODELS) {
    if (o.only && b.variant.name !== o.only) continue;
    if (o.stop.requested) break;
    const r: SelfcheckResult = { name: b.variant.name, bugClass: b.bugClass, fuzzCaught: false, fuzzMs: 0 };
    if (cases) {
      const run = await runPlan(plan(cases.cases, {}), driver(b.base, b.variant));
      r.suiteFailures = counts(run.results).fail + counts(run.results).error;
    }
    const dir = mkdtempSync(join(tmpdir(), 'xconf-selfcheck-'));
    try {
      const targets = await buildTargets(b.base, b.base, b.variant);
      const rep = await runFuzzSession({
        target: b.base, reference: b.base, timeMs: o.timeMs, seed: o.seed, shard: { k: 1, n: 1 }, outDir: dir, targets,
        out: { write: () => true }, stop: o.stop, stopOnFinding: true, batchRuns: 50,
      });
      r.fuzzMs = Math.round(rep.elapsedMs);
      const f = rep.findings.find((x) => x.fresh);
      if (f) {
        r.fuzzCaught = true;
        r.signature = f.signature;
        r.replayFailsOnVariant = (await replayStatus(f.file, driver(b.base, b.variant))) === 'fail';
        r.replayPassesOnModel = (await replayStatus(f.file, driver(b.base))) === 'pass';
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    o.out.write(selfcheckLine(r) + '\n');
    results.push(r);
  }
  return results;
}

export function selfcheckLine(r: SelfcheckResult): string {
  const suites = r.suiteFailures === undefined ? '' : `suites ${r.suiteFailures ? `caught (${r.suiteFailures} cases fail)` : 'MISSED'}; `;
  const fuzz = r.fuzzCaught
    ? `fuzz caught in ${(r.fuzzMs / 1000).toFixed(1)}s [${r.signature}]; replay ${r.replayFailsOnVariant ? 'fails on variant' : 'DOES NOT fail on variant'}, ${r.replayPassesOnModel ? 'passes on model' : 'DOES NOT pass on model'}`
    : `fuzz MISSED in ${(r.fuzzMs / 1000).toFixed(1)}s`;
  return `${r.name.padEnd(28)} ${suites}${fuzz}  (${r.bugClass})`;
}

/** Whether a selfcheck passed: every variant caught by the fuzzer and its finding replayed both ways. */
export function selfcheckOk(rs: SelfcheckResult[]): boolean {
  return rs.length > 0 && rs.every((r) => r.fuzzCaught && r.replayFailsOnVariant && r.replayPassesOnModel);
}
