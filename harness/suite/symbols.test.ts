import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadPaths } from './loader.js';
import { plan } from '../runner/plan.js';
import { runPlan } from '../runner/run.js';
import { ModelDriver } from '../drivers/model/model-driver.js';
import { constants } from '../ops/constants.js';
import { parseExpr } from './expr.js';
import { describeValue, familyOf, nameOf } from './symbols.js';

async function runOne(body: string) {
  const root = join(mkdtempSync(join(tmpdir(), 'xconf-sym-')), 'suites');
  mkdirSync(root);
  writeFileSync(join(root, 'x.yaml'), body);
  const r = loadPaths([root]);
  expect(r.problems).toEqual([]);
  return (await runPlan(plan(r.cases, {}), new ModelDriver())).results[0];
}

describe('mismatch messages name values', () => {
  it('expected RUNSTATE_runnable (1), got RUNSTATE_running (0)', async () => {
    const r = await runOne('description: x\nrequires: [runstate]\nsteps:\n  - op: vcpu.register_runstate_phys\n    args: { gpa: 0x3fd0 }\n    expect: { ret: 0, memory: { "runstate[0].state": RUNSTATE_runnable } }\n');
    expect(r.status).toBe('fail');
    expect(r.message).toMatch(/runstate\[0\]\.state: expected RUNSTATE_runnable \(1\), got RUNSTATE_running \(0\)$/);
  });

  it('values and ret use the same names; errnos keep their form', async () => {
    const r = await runOne('description: x\nsteps:\n  - op: runstate.get\n    save: { s: state }\n    expect: { values: { $s: RUNSTATE_blocked } }\n');
    expect(r.message).toMatch(/\$s: expected RUNSTATE_blocked \(2\), got RUNSTATE_running \(0\)$/);
    const e = await runOne('description: x\nsteps:\n  - op: xen.version\n    args: { cmd: 99 }\n    expect: { ret: -EFAULT }\n');
    expect(e.message).toMatch(/ret: expected -14 \(-EFAULT\), got -\d+ \(-E[A-Z]+\)$/);
  });

  it('property: a value named in the family of the hint round-trips; others stay numbers', () => {
    const names = [...constants.keys()].filter((n) => familyOf(n));
    fc.assert(fc.property(fc.constantFrom(...names), fc.bigInt({ min: -5n, max: 1n << 40n }), (n, v) => {
      const hint = parseExpr(n);
      const name = nameOf(v, hint);
      if (name) {
        expect(constants.get(name)).toBe(v);
        expect(familyOf(name)).toBe(familyOf(n));
        expect(describeValue(v, hint).startsWith(`${name} (`)).toBe(true);
      } else expect(describeValue(v, hint)).not.toMatch(/[A-Z]_/);
      expect(nameOf(constants.get(n)!, hint)).toBeDefined();
    }));
  });
});
