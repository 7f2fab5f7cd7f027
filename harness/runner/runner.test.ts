import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { loadPaths, type LoadedCase } from '../suite/loader.js';
import { plan, parseShard } from './plan.js';
import { runPlan } from './run.js';
import { ModelDriver } from '../drivers/model/model-driver.js';
import type { Driver, Session } from '../drivers/driver.js';
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

function suite(files: Record<string, string>): LoadedCase[] {
  const root = join(mkdtempSync(join(tmpdir(), 'xconf-run-')), 'suites');
  mkdirSync(root);
  for (const [n, b] of Object.entries(files)) writeFileSync(join(root, n), b);
  const r = loadPaths([root]);
  expect(r.problems).toEqual([]);
  return r.cases;
}

const PASS = 'description: ok\nsteps:\n  - op: xen.version\n    args: { cmd: XENVER_version }\n    expect: { ret: 0x40013 }\n';
const FAIL = 'description: wrong\nsteps:\n  - op: xen.version\n    args: { cmd: XENVER_version }\n    expect: { ret: 0x40014 }\n  - op: memory.check\n';
const SKIP = 'description: needs kvm\nrequires: [kvm.plain]\nsteps:\n  - op: memory.check\n';

describe('runner', () => {
  it('passes, fails with expected vs actual, skips with the reason, and never stops early', async () => {
    const cases = suite({ 'a.yaml': FAIL, 'b.yaml': PASS, 'c.yaml': SKIP });
    const run = await runPlan(plan(cases, {}), new ModelDriver());
    expect(run.results.map((r) => [r.id, r.status])).toEqual([['a', 'fail'], ['b', 'pass'], ['c', 'skip']]);
    expect(run.results[0].message).toBe('step 1 (xen.version, line 3): ret: expected 0x40014, got 0x40013');
    expect(run.results[0].steps.map((s) => s.status)).toEqual(['fail', 'not-run']);
    expect(run.results[2].message).toBe('Requirement not met: kvm.plain (plain-KVM checks need the kvm target)');
  });

  it('expands a matrix into named variants and carries saved variables', async () => {
    const cases = suite({
      'm.yaml': 'description: m\nmatrix:\n  mode: [64, 32]\nsetup:\n  mode: $mode\nsteps:\n  - op: xen.version\n    args: { cmd: XENVER_version }\n    save: { v: ret }\n  - op: xen.version\n    args: { cmd: XENVER_version }\n    expect: { ret: $v }\n',
    });
    const run = await runPlan(plan(cases, {}), new ModelDriver());
    expect(run.results.map((r) => [r.name, r.status])).toEqual([['m[mode=64]', 'pass'], ['m[mode=32]', 'pass']]);
  });

  it('a step its arguments make a no-op needs nothing: the 2-level variant of a fifo matrix runs where FIFO is missing', async () => {
    const cases = suite({
      'f.yaml': 'description: f\nmatrix:\n  fifo: [0, 1]\nsteps:\n  - { op: evtchn.use_fifo, args: { enable: $fifo }, expect: { ret: 0 } }\n  - { op: evtchn.bind_ipi, expect: { ret: 0 } }\n',
    });
    const model = new ModelDriver();
    const noFifo: Driver = {
      name: 'model',
      async probe() {
        const c = await model.probe();
        const has = new Set([...c.has].filter((x) => x !== 'evtchn.fifo' && x !== 'host-op:evtchn.use_fifo'));
        return { ...c, has, missing: new Map([...c.missing, ['evtchn.fifo', 'no FIFO here'], ['host-op:evtchn.use_fifo', 'no FIFO here']]) };
      },
      // Like the kvm driver, it has no FIFO switch at all: the no-op step must not reach it.
      async open(setup) {
        const inner = await model.open(setup);
        return Object.assign(Object.create(inner) as Session, {
          apply: (a: Parameters<Session['apply']>[0], at: Parameters<Session['apply']>[1]) => {
            if (a.kind === 'host' && a.op === 'evtchn.use_fifo') throw new Error('use_fifo reached a driver without FIFO');
            return inner.apply(a, at);
          },
        });
      },
    };
    const run = await runPlan(plan(cases, {}), noFifo);
    expect(run.results.map((r) => [r.name, r.status])).toEqual([['f[fifo=0]', 'pass'], ['f[fifo=1]', 'skip']]);
    expect(run.results[1].message).toMatch(/evtchn\.fifo \(no FIFO here\)/);
  });

  it('turns a case that never finishes into a timeout error and goes on', async () => {
    const cases = suite({ 'a.yaml': 'description: slow\ntimeout: 0.2\nsteps:\n  - op: memory.check\n', 'b.yaml': 'description: fast\nsteps:\n  - op: memory.check\n' });
    const model = new ModelDriver();
    const hanging: Driver = {
      name: 'hang',
      probe: () => model.probe(),
      async open(setup) {
        const s = await model.open(setup);
        // While `hang.on`, every check step never returns, like a guest spinning forever.
        const never: Session = {
          apply: (a, p) => (a.kind === 'check' && hang.on ? new Promise(() => {}) : s.apply(a, p)),
          read: s.read.bind(s),
          areas: s.areas.bind(s),
          [Symbol.asyncDispose]: async () => {},
        };
        return never;
      },
    };
    const hang = { on: true };
    const run = await runPlan(plan(cases, { filter: 'a' }), hanging);
    expect(run.results[0].status).toBe('error');
    expect(run.results[0].message).toMatch(/^timeout: case did not finish within 0.2s/);
    hang.on = false;
    const run2 = await runPlan(plan(cases, {}), hanging);
    expect(run2.results.map((r) => r.status)).toEqual(['pass', 'pass']);
  });

  it('reports a driver fault as an error, not a failure', async () => {
    const cases = suite({ 'a.yaml': 'description: d\nsteps:\n  - op: memory.check\n    dom: 7\n' });
    const run = await runPlan(plan(cases, {}), new ModelDriver());
    expect(run.results[0].status).toBe('error');
    expect(run.results[0].message).toMatch(/domain 7/);
  });

  it('shards deterministically: shards are disjoint and together cover the plan', () => {
    const cases = loadPaths(['suites']).cases;
    const all = plan(cases, {}).map((p) => p.name);
    fc.assert(fc.property(fc.integer({ min: 1, max: 9 }), (n) => {
      const parts = Array.from({ length: n }, (_, i) => plan(cases, { shard: { k: i + 1, n } }).map((p) => p.name));
      expect(parts.flat().sort()).toEqual([...all].sort());
      expect(new Set(parts.flat()).size).toBe(all.length);
    }), { numRuns: 20 });
    expect(() => parseShard('0/3')).toThrow();
    expect(() => parseShard('4/3')).toThrow();
    expect(parseShard('2/3')).toEqual({ k: 2, n: 3 });
  });

  it('filters by glob over ids', () => {
    const cases = loadPaths(['suites']).cases;
    const names = plan(cases, { filter: 'hypercall/version-*' }).map((p) => p.case.id);
    expect(names.length).toBeGreaterThan(3);
    expect(names.every((n) => n.startsWith('hypercall/version-'))).toBe(true);
  });
});
