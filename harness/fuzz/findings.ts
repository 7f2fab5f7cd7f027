// Findings as YAML cases in the normal format, and the store that keeps one
// file per signature. The failing sequence is written as soon as it is seen
// (`*.raw.yaml`), then replaced by the shrunk case; a signature already in the
// store is counted, not written again, so one bug does not fill the disk.

import { readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { Finding } from './engine.js';
import type { StepExpect } from './oracles.js';
import { yamlSetup } from './setup.js';
import type { ArgValue } from './steps.js';
import { makeDirs } from '../make-dirs.js';

function yamlInt(v: bigint): number | string {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : `0x${BigInt.asUintN(64, v).toString(16)}`;
}

function yamlArgs(a: Record<string, ArgValue>): Record<string, unknown> {
  const conv = (v: unknown): unknown => {
    if (typeof v === 'bigint') return yamlInt(v);
    if (Array.isArray(v)) return v.map(conv);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, conv(x)]));
    return v;
  };
  return conv(a) as Record<string, unknown>;
}

export interface FindingContext {
  target: string;
  reference?: string;
  /** The run's own seed and shard, for the `xconf fuzz` command that found it. */
  seed: number;
  shard?: string;
}

/** A file-name-safe slug of a signature (stable: the same bug, the same file). */
export function slug(signature: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < signature.length; i++) h = Math.imul(h ^ signature.charCodeAt(i), 0x01000193) >>> 0;
  const words = signature.split('|').slice(1, 3).join('-').replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);
  return `${words}-${h.toString(16).padStart(8, '0')}`;
}

/** The YAML case of a finding: replays as a failure on the target, passes on the reference. */
export function findingYaml(f: Finding, ctx: FindingContext, file: string): string {
  const d = f.disagreement;
  const failing = f.trace[f.index];
  const steps = f.trace.slice(0, f.index + 1).map((t, i) => {
    const s: Record<string, unknown> = { op: t.step.op, dom: t.step.dom };
    if (t.step.vcpu) s.vcpu = t.step.vcpu;
    if (t.step.cpl) s.cpl = t.step.cpl;
    if (Object.keys(t.step.args).length) s.args = yamlArgs(t.step.args);
    const e: StepExpect = {};
    if (t.outcome.ret !== undefined) e.ret = String(t.outcome.ret);
    if (t.outcome.fault !== undefined) e.fault = t.outcome.fault;
    if (i === f.index) Object.assign(e, d.expect);
    const { save, ...expect } = e;
    if (i === f.index && save) s.save = save;
    if (expect.fault === null) delete expect.fault;
    if (Object.keys(expect).length) s.expect = expect;
    return s;
  });
  const doc = {
    description: `fuzz finding on ${ctx.target}: ${failing.step.op} ${d.field}: expected ${d.expected}, got ${d.actual}`.replace(/\s+/g, ' ').slice(0, 300),
    spec: [
      `xconf fuzz --target=${ctx.target}${ctx.reference ? ` --against=${ctx.reference}` : ''} --seed=${ctx.seed}${ctx.shard ? ` --shard=${ctx.shard}` : ''}`,
      `fast-check seed ${f.fcSeed} path ${f.fcPath}${f.replayPath ? ` replayPath ${f.replayPath}` : ''}`,
    ],
    setup: yamlSetup(f.setup),
    steps,
  };
  const head = [
    f.shrinkCut ? '# Found by xconf fuzz; shrinking by fast-check stopped early (signal or shrink time), not minimal.' : '# Found by xconf fuzz; shrunk by fast-check.',
    `# signature: ${f.signature}`,
    `# ${d.kind}: ${d.field}: expected ${d.expected}, got ${d.actual}`.replace(/\n/g, ' '),
    `# replay: npx xconf run ${file} --target=${ctx.target}`,
    '',
  ].join('\n');
  return head + stringify(doc, { lineWidth: 0 });
}

export interface StoredFinding {
  signature: string;
  file: string;
  /** Found in this run (not in the store when the run started). */
  fresh: boolean;
  /** How often this run hit it. */
  hits: number;
}

/** The findings directory: one YAML case per signature. */
export class FindingStore {
  readonly bySignature = new Map<string, StoredFinding>();

  constructor(readonly dir: string) {
    makeDirs(dir);
    for (const name of readdirSync(dir)) {
      if (!name.endsWith('.yaml')) continue;
      const sig = /^# signature: (.*)$/m.exec(readFileSync(join(dir, name), 'utf8'))?.[1];
      if (sig && !this.bySignature.has(sig)) this.bySignature.set(sig, { signature: sig, file: join(dir, name), fresh: false, hits: 0 });
    }
  }

  /** Whether a signature is new to the store (then it is written). */
  isNew(signature: string): boolean {
    return !this.bySignature.has(signature);
  }

  /** Record a hit of a known signature. */
  hit(signature: string): StoredFinding | undefined {
    const s = this.bySignature.get(signature);
    if (s) s.hits++;
    return s;
  }

  /** Write the unshrunk sequence at once (survives a kill during shrinking). */
  writeRaw(f: Finding, ctx: FindingContext): string {
    const file = join(this.dir, `${slug(f.signature)}.raw.yaml`);
    writeFileSync(file, findingYaml(f, ctx, file));
    return file;
  }

  /** Write the shrunk case and drop the raw one. */
  writeShrunk(f: Finding, ctx: FindingContext): StoredFinding {
    const file = join(this.dir, `${slug(f.signature)}.yaml`);
    const tmp = `${file}.tmp`;
    writeFileSync(tmp, findingYaml(f, ctx, file));
    renameSync(tmp, file);
    rmSync(join(this.dir, `${slug(f.signature)}.raw.yaml`), { force: true });
    const s: StoredFinding = { signature: f.signature, file, fresh: true, hits: 1 };
    this.bySignature.set(f.signature, s);
    return s;
  }
}
