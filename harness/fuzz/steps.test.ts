// The generated vocabulary: every step encodes under its op's own schema, and
// every sequence becomes a YAML case the loader accepts unchanged.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPaths } from '../suite/loader.js';
import { compile } from './exec.js';
import { findingYaml } from './findings.js';
import { sessionSetup, setupArb, stepContext } from './setup.js';
import { stepArb, vocabulary } from './steps.js';
import { ops } from '../ops/index.js';

describe('fuzz step vocabulary', () => {
  it('covers every subsystem and names only real ops', () => {
    const v = vocabulary();
    for (const op of v) expect(ops.has(op), op).toBe(true);
    for (const sub of ['evtchn', 'gnttab', 'sched', 'timer', 'time', 'runstate', 'vcpu', 'xen']) expect(v.some((o) => o.startsWith(`${sub}.`)), sub).toBe(true);
  });

  it('every generated step passes its op schema and encodes', () => {
    fc.assert(fc.property(setupArb.chain((s) => fc.tuple(fc.constant(s), fc.array(stepArb(stepContext(s)), { maxLength: 40 }))), ([s, steps]) => {
      const ss = sessionSetup(s);
      for (const st of steps) expect(() => compile(st, ss)).not.toThrow();
    }), { numRuns: 200, seed: 11 });
  });

  it('every generated sequence is a valid YAML case', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-fuzz-yaml-'));
    let n = 0;
    fc.assert(fc.property(setupArb.chain((s) => fc.tuple(fc.constant(s), fc.array(stepArb(stepContext(s)), { minLength: 1, maxLength: 30 }))), ([s, steps]) => {
      const trace = steps.map((step) => ({ step, outcome: { ret: -22n, out: { port: 3n, frames: [1n, 2n] } } }));
      const file = join(dir, `c${n++}.yaml`);
      const f = {
        signature: 'differential|x|ret|a->b', setup: s, trace, index: trace.length - 1, fcSeed: 1, fcPath: '0:1',
        disagreement: { kind: 'differential' as const, field: 'ret', expected: '0', actual: '-22', classes: ['zero', '-EINVAL'] as [string, string], expect: { ret: '0', memory: { 'dom1.bytes@0x80800:8': '00 00 00 00 00 00 00 00' } } },
      };
      writeFileSync(file, findingYaml(f, { target: 'model', seed: 1 }, file));
      const r = loadPaths([file]);
      expect(r.problems).toEqual([]);
      expect(r.cases[0].steps).toHaveLength(steps.length);
    }), { numRuns: 60, seed: 5 });
  });
});
