// The seed corpus from the cases: values resolved (saved ports, matrix variables),
// only ops both fuzz targets run, run under the oracles, kept when they reach new edges.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelDriver } from '../drivers/model/model-driver.js';
import { Corpus, type CoverageTotals } from './corpus.js';
import { runSeeds, seedsFromSuites } from './seed-corpus.js';
import { liveSteps } from './live-steps.js';
import type { StepStats } from './session.js';
import { buildTargets } from './targets.js';
import { BROKEN_MODELS } from './variants.js';

const totals = (newEdges: number): CoverageTotals =>
  ({ newEdges, newPcs: newEdges, edges: newEdges, pcs: newEdges, records: 0, overflows: 0, threads: 1, failedThreads: 0 });
const stats = (): StepStats => ({ steps: 0, sequences: 0, ops: new Map() });

describe('seed corpus from the suites', () => {
  it('turns a case into a sequence with its saved values and matrix resolved, in its guest width', async () => {
    const t = await buildTargets('model-kvm', undefined);
    const l = await seedsFromSuites(['suites/evtchn/2l-already-pending-stops.yaml'], t.allowed, t.shape ?? { multi: true, mode32: true });
    expect(l.variants).toBe(2);
    expect(l.seeds.map((s) => s.setup.mode).sort()).toEqual([32, 64]);
    for (const s of l.seeds) {
      // memory.write and evtchn.upcall_count are not fuzz ops: the bind and both sends remain.
      expect(s.steps.map((x) => x.op)).toEqual(['evtchn.bind_ipi', 'evtchn.send', 'evtchn.send']);
      expect(typeof s.steps[1].args.port).toBe('bigint');
      expect(s.steps[1].args.port).toBeGreaterThan(0n); // $p, the port bind_ipi returned on model-kvm
    }
  });

  it('leaves out the cases a target would skip', async () => {
    const t = await buildTargets('model-kvm', undefined);
    const shape = t.shape ?? { multi: true, mode32: true };
    const all = await seedsFromSuites(['suites/hypercall/cpl-nonzero-eperm.yaml'], t.allowed, shape);
    expect(all.seeds.some((s) => /cpl=1/.test(s.name))).toBe(true);
    const caps = await new ModelDriver('kvm').probe();
    const has = new Set(caps.has);
    has.delete('hypercall.cpl12');
    const cut = await seedsFromSuites(['suites/hypercall/cpl-nonzero-eperm.yaml'], t.allowed, shape, [{ ...caps, has }]);
    expect(cut.seeds.length).toBeGreaterThan(0);
    expect(cut.seeds.some((s) => /cpl=[12]\]/.test(s.name))).toBe(false);
  });

  it('keeps the seeds that reach new edges, and reports and drops those that disagree', async () => {
    const t = await buildTargets('model-kvm', undefined);
    const l = await seedsFromSuites(['suites/evtchn'], t.allowed, t.shape ?? { multi: true, mode32: true });
    expect(l.seeds.length).toBeGreaterThan(20);
    // Every third sequence "reaches new edges".
    let n = 0;
    t.coverage = { name: 'test', guide: true, collect: () => totals(n++ % 3 === 0 ? 1 : 0) };
    const corpus = new Corpus();
    const lines: string[] = [];
    const r = await runSeeds(t, l.seeds, { stats: stats(), corpus, say: (x) => lines.push(x), stop: () => false });
    expect(r).toEqual({ run: l.seeds.length, kept: Math.ceil(l.seeds.length / 3), disagreed: 0 });
    expect(corpus.entries.length).toBe(r.kept);

    // Against a broken model, seeds disagree: reported, not kept.
    const b = BROKEN_MODELS.find((x) => x.variant.name === 'evtchn-limit-off-by-one')!;
    const broken = await buildTargets('model', 'model', b.variant);
    broken.coverage = { name: 'test', guide: true, collect: () => totals(1) };
    const l2 = await seedsFromSuites(['suites/evtchn'], broken.allowed, broken.shape ?? { multi: true, mode32: true });
    const c2 = new Corpus();
    const r2 = await runSeeds(broken, l2.seeds, { stats: stats(), corpus: c2, say: (x) => lines.push(x), stop: () => false });
    expect(r2.disagreed).toBeGreaterThan(0);
    expect(c2.entries.length).toBe(r2.run - r2.disagreed);
    expect(lines.some((x) => /^seed evtchn\/.*: step \d+ \(.*\) .*expected .*, got .* \(not kept\)$/.test(x))).toBe(true);
  });

  it('on a live clock, leaves out SCHEDOP_block, gives polls a timeout already past and timers times both clocks agree on', () => {
    const st = (op: string, args = {}) => ({ op, args, dom: 1, vcpu: 0, cpl: 0 });
    expect(liveSteps([st('sched.block'), st('sched.poll', { ports: [1n], timeout: 0n }), st('xen.version', { cmd: 0n })]))
      .toEqual([st('sched.poll', { ports: [1n], timeout: 1000n }), st('xen.version', { cmd: 0n })]);
    // Timer times both clocks agree on stay; others become 2^49 ns (found on 6.12: a seeded
    // one-shot at 1000 ns fired on KVM's clock, not on the model's).
    expect(liveSteps([
      st('timer.set_singleshot', { timeout: 1000n, vcpuid: 1n }), st('timer.set_timer_op', { timeout: 0n }),
      st('kvm.xen_set_timer', { port: 2n, expires_ns: 1n << 49n }), st('timer.set_periodic', { period_ns: 10_000_000n, vcpuid: 0n }),
    ])).toEqual([
      st('timer.set_singleshot', { timeout: 1n << 49n, vcpuid: 1n }), st('timer.set_timer_op', { timeout: 0n }),
      st('kvm.xen_set_timer', { port: 2n, expires_ns: 1n << 49n }), st('timer.set_periodic', { period_ns: 1n << 49n, vcpuid: 0n }),
    ]);
  });

  it('on a live clock, keeps a bogus set_timer_op timeout only right before the step that stops it', () => {
    const st = (op: string, args = {}, vcpu = 0) => ({ op, args, dom: 1, vcpu, cpl: 0 });
    const stop = st('timer.set_timer_op', { timeout: 0n });
    for (const bogus of [-1n, (1n << 64n) - 1n, 1n << 62n, 1n << 51n]) {
      const b = st('timer.set_timer_op', { timeout: bogus });
      expect(liveSteps([b, stop])).toEqual([b, stop]);
      // Alone, last, with a step between, or stopped from another vCPU: 2^49 ns like any other time.
      const far = st('timer.set_timer_op', { timeout: 1n << 49n });
      expect(liveSteps([b])).toEqual([far]);
      expect(liveSteps([b, st('xen.version', { cmd: 0n }), stop])).toEqual([far, st('xen.version', { cmd: 0n }), stop]);
      expect(liveSteps([b, st('timer.set_timer_op', { timeout: 0n }, 1)])).toEqual([far, st('timer.set_timer_op', { timeout: 0n }, 1)]);
      // A SCHEDOP_block between them goes, and with it what parted them.
      expect(liveSteps([b, st('sched.block'), stop])).toEqual([b, stop]);
    }
    // Under 2^51 ns it is not taken for bogus (the live clock's uptime could tip it): 2^49.
    expect(liveSteps([st('timer.set_timer_op', { timeout: 1n << 50n }), stop])[0].args.timeout).toBe(1n << 49n);
    // The one-shot VCPUOP has no workaround: all ones is a deadline already past, kept.
    const shot = st('timer.set_singleshot', { timeout: (1n << 64n) - 1n, vcpuid: 0n });
    expect(liveSteps([shot])).toEqual([shot]);
  });

  it('on a live clock, keeps a hypercall configuration without the MSR only right before one that gives it back', () => {
    const st = (op: string, args = {}, dom = 1) => ({ op, args, dom, vcpu: 0, cpl: 0 });
    const flags = 2n | 32n;
    const off = st('kvm.xen_hvm_config', { flags, msr: 0n });
    const back = st('kvm.xen_hvm_config', { flags });
    const kept = st('kvm.xen_hvm_config', { flags, msr: 0x40000000n });
    expect(liveSteps([off, back])).toEqual([off, back]);
    expect(liveSteps([off, st('kvm.xen_hvm_config', { flags, msr: 0x40000000n })])[0]).toEqual(off);
    // Alone, parted from it, given back on another domain, or by a configuration KVM refuses
    // (a blob with INTERCEPT_HCALL, an unknown flag): it keeps the MSR.
    expect(liveSteps([off])).toEqual([kept]);
    expect(liveSteps([off, st('xen.version', { cmd: 0n }), back])[0]).toEqual(kept);
    expect(liveSteps([off, st('kvm.xen_hvm_config', { flags }, 2)])[0]).toEqual(kept);
    expect(liveSteps([off, st('kvm.xen_hvm_config', { flags: 2n, blob_gpa: 0x300000n, blob_pages: 1n })])[0]).toEqual(kept);
    expect(liveSteps([off, st('kvm.xen_hvm_config', { flags: 1n << 9n })])[0]).toEqual(kept);
    // Another MSR is as time-dependent as none.
    expect(liveSteps([st('kvm.xen_hvm_config', { flags, msr: 0x40000200n })])).toEqual([kept]);
  });

  it('on a live target, a callback vector becomes vector 0 (the test guest would take it forever)', () => {
    const st = (op: string, args = {}) => ({ op, args, dom: 1, vcpu: 0, cpl: 0 });
    const cb = (value: bigint) => st('hvm.set_param', { index: 0n, value });
    expect(liveSteps([cb((2n << 56n) | 0xf3n)])).toEqual([cb(2n << 56n)]);
    // Vector 0, no callback, a GSI or another parameter: as they are.
    for (const keep of [cb(2n << 56n), cb(0n), cb(5n), st('hvm.set_param', { index: 1n, value: (2n << 56n) | 0xf3n })]) {
      expect(liveSteps([keep])).toEqual([keep]);
    }
  });

  it('keeps in the corpus the steps that ran: on a live clock, the polls with their past timeout', async () => {
    const t = await buildTargets('model-kvm', undefined);
    t.liveClock = true;
    t.coverage = { name: 'test', guide: true, collect: () => totals(1) };
    const l = await seedsFromSuites(['suites/sched/poll-timeout-relative-kvm.yaml'], t.allowed, t.shape ?? { multi: true, mode32: true });
    const polls = l.seeds.flatMap((s) => s.steps).filter((x) => x.op === 'sched.poll');
    expect(polls.some((x) => x.args.timeout !== 1000n)).toBe(true);
    const corpus = new Corpus();
    await runSeeds(t, l.seeds, { stats: stats(), corpus, say: () => {}, stop: () => false });
    const kept = corpus.entries.flatMap((e) => e.steps).filter((x) => x.op === 'sched.poll');
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.every((x) => x.args.timeout === 1000n)).toBe(true);
  });

  it('keeps a hypercall configuration without INTERCEPT_HCALL and its MSR writes, which agree on model-kvm', async () => {
    const t = await buildTargets('model-kvm', undefined);
    t.coverage = { name: 'test', guide: true, collect: () => totals(1) };
    const l = await seedsFromSuites(['suites/kvm-xen/hypercall-blob.yaml'], t.allowed, t.shape ?? { multi: true, mode32: true });
    expect(l.seeds.length).toBe(2);
    for (const s of l.seeds) {
      const ops = s.steps.map((x) => x.op);
      expect(ops.filter((op) => op === 'msr.write').length).toBe(4);
      expect(s.steps.some((x) => x.op === 'kvm.xen_hvm_config' && x.args.flags === 0n && x.args.blob_pages === 2n)).toBe(true);
      // The moment without the hypercall MSR stays, the MSR given back right after it:
      // on a live clock too (live-steps.ts), as KVM takes its static key back before the drop.
      const configs = s.steps.filter((x) => x.op === 'kvm.xen_hvm_config');
      expect(configs.map((x) => x.args.msr)).toContain(0n);
      expect(configs.length).toBe(5);
      expect(liveSteps(s.steps)).toEqual(s.steps);
    }
    const corpus = new Corpus();
    const r = await runSeeds(t, l.seeds, { stats: stats(), corpus, say: () => {}, stop: () => false });
    expect(r).toEqual({ run: 2, kept: 2, disagreed: 0 });
  });

  it('drops an MSR write aimed at the hypercall page the guest calls', async () => {
    const t = await buildTargets('model-kvm', undefined);
    const dir = mkdtempSync(join(tmpdir(), 'xconf-seed-'));
    try {
      writeFileSync(join(dir, 'msr.yaml'), [
        'description: the MSR aimed at the guest\'s own hypercall page, then elsewhere',
        'steps:',
        '  - { op: msr.write, args: { value: 0x81000 } }',
        '  - { op: msr.write, args: { value: 0x90000 } }',
        '',
      ].join('\n'));
      const l = await seedsFromSuites([dir], t.allowed, t.shape ?? { multi: true, mode32: true });
      expect(l.seeds.map((s) => s.steps.map((x) => x.args.value))).toEqual([[0x90000n]]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
