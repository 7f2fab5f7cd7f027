import { describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { compareRuns, diffCounts, diffReason, runDifferential } from './differential.js';
import { loadPaths } from '../suite/loader.js';
import { plan } from './plan.js';
import { runPlan } from './run.js';
import { ModelDriver } from '../drivers/model/model-driver.js';
import type { CaseResult, StepRecord } from './results.js';

const step = (index: number, over: Partial<StepRecord> = {}): StepRecord => ({
  index, label: index === 0 ? 'xen.version' : 'sched.poll', line: 3 + index * 4, status: 'pass', observed: { ret: '0' }, ...over,
});
const result = (over: Partial<CaseResult> = {}): CaseResult => ({
  id: 'x/a', variant: '', name: 'x/a', file: 'suites/x/a.yaml', description: 'd', spec: [], status: 'pass', durationMs: 1,
  steps: [step(0), step(1)], ...over,
});
const one = (t: CaseResult, r: CaseResult) => compareRuns('kvm', 'model-kvm', [t], [r]).entries[0];

describe('differential comparison', () => {
  it('identical results agree', () => {
    const e = one(result(), result());
    expect(e.verdict).toBe('agree');
    expect(e.reasons).toEqual([]);
  });

  it('a different status disagrees, naming both statuses and the failure', () => {
    const e = one(result(), result({ status: 'error', message: 'open: no room', steps: [] }));
    expect(e.verdict).toBe('disagree');
    expect(diffReason(e)).toBe('status kvm=pass model-kvm=error (model-kvm: open: no room)');
  });

  it('a different ret disagrees with one precise line, errno named', () => {
    const e = one(result(), result({ steps: [step(0), step(1, { observed: { ret: '-22' } })] }));
    expect(e.verdict).toBe('disagree');
    expect(e.reasons).toEqual(['step 2 (sched.poll, line 7): ret kvm=0 model-kvm=-22 (-EINVAL)']);
  });

  it('a different fault disagrees', () => {
    const e = one(result({ steps: [step(0), step(1, { observed: { fault: '#UD' } })] }), result());
    expect(e.reasons).toEqual(['step 2 (sched.poll, line 7): ret kvm=none model-kvm=0, fault kvm=#UD model-kvm=none']);
  });

  it('a different named OUT value disagrees', () => {
    const t = result({ steps: [step(0, { observed: { ret: '0', out: { port: '3' } } }), step(1)] });
    const r = result({ steps: [step(0, { observed: { ret: '0', out: { port: '4' } } }), step(1)] });
    expect(one(t, r).reasons).toEqual(['step 1 (xen.version, line 3): out.port kvm=3 model-kvm=4']);
  });

  it('ignores who served a step', () => {
    const t = result({ steps: [step(0, { servedBy: 'kernel' }), step(1, { servedBy: 'vmm' })] });
    const r = result({ steps: [step(0, { servedBy: 'model' }), step(1, { servedBy: 'model' })] });
    expect(one(t, r).verdict).toBe('agree');
  });

  it('a step verdict that differs on equal observations disagrees (e.g. a memory expectation)', () => {
    const r = result({ status: 'fail', message: 'step 2: flags', steps: [step(0), step(1, { status: 'fail', message: 'flags: expected 0, got 1' })] });
    expect(one(result(), r).reasons).toEqual([
      'step 2 (sched.poll, line 7): kvm=pass model-kvm=fail (model-kvm: flags: expected 0, got 1)',
      'status kvm=pass model-kvm=fail',
    ]);
  });

  it('a case skipped on the reference is not compared, with the reason; one skipped on the target is left out', () => {
    const d = compareRuns('kvm', 'model-kvm', [result(), result({ name: 'x/b', status: 'skip', message: 'no' })], [
      result({ status: 'skip', message: 'Requirement not met: flavor.xen (why)', steps: [] }),
    ]);
    expect(d.entries).toEqual([{ name: 'x/a', id: 'x/a', file: 'suites/x/a.yaml', verdict: 'not-compared', reasons: ['Requirement not met: flavor.xen (why)'] }]);
    expect(diffCounts(d)).toEqual({ compared: 0, agree: 0, disagree: 0, known: 0, notCompared: 1 });
  });

  it('spells out at most three differences in the one-line reason', () => {
    const steps = [0, 1, 2, 3, 4].map((i) => step(i, { label: 'op', observed: { ret: String(i) } }));
    const e = one(result({ steps }), result({ steps: steps.map((s) => ({ ...s, observed: { ret: '-1' } })) }));
    expect(e.reasons).toHaveLength(5);
    expect(diffReason(e).split('; ')).toHaveLength(3);
    expect(diffReason(e)).toMatch(/ \(\+2 more\)$/);
  });

  it('observations survive JSON (the isolated runner passes results between processes)', async () => {
    const root = join(mkdtempSync(join(tmpdir(), 'xconf-diff-')), 'suites');
    mkdirSync(root);
    writeFileSync(join(root, 'a.yaml'), 'description: d\nrequires: [timer]\nsteps:\n  - op: timer.set_singleshot\n    args: { timeout: 1000, vcpuid: 7 }\n');
    const planned = plan(loadPaths([root]).cases, {});
    const run = await runPlan(planned, new ModelDriver('xen'));
    const through = JSON.parse(JSON.stringify(run.results)) as CaseResult[];
    expect(through[0].steps[0].observed).toEqual({ ret: '-2' });
    const d = await runDifferential(planned, through, 'model', new ModelDriver('kvm'));
    expect(d.entries.map((e) => [e.verdict, diffReason(e)])).toEqual([
      ['disagree', 'step 1 (timer.set_singleshot, line 4): ret model=-2 (-ENOENT) model-kvm=-22 (-EINVAL)'],
    ]);
  });
});

describe('observations', () => {
  it('records ret, fault and OUT keys fixed by the case, not those expected relative to a value saved at run time', async () => {
    const { observe } = await import('./run-case.js');
    const step = { expect: { out: [['state', { src: 'RUNSTATE_runnable' }], ['time_running', { src: '$a1 + 5' }], ['flips', { src: '$n' }]] } };
    const obs = observe(step as never, { ret: -22n, out: { state: 1n, time_running: 99n, flips: 7n } }, new Set(['a1']));
    expect(obs).toEqual({ ret: '-22', out: { state: '1', flips: '7' } });
  });
});
