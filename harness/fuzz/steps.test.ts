// The generated vocabulary: every step encodes under its op's own schema, and
// every sequence becomes a YAML case the loader accepts unchanged.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPaths } from '../suite/loader.js';
import { clockRanges, compile, withoutClock, type AreaSpan } from './exec.js';
import { compareOutcomes } from './oracles.js';
import { SHARED_INFO } from '../model/memory-layout.js';
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

  it('on a live clock no step holds a vCPU for good: polls time out at once, no block', () => {
    fc.assert(fc.property(setupArb.chain((s) => fc.array(stepArb({ ...stepContext(s), liveClock: true }), { minLength: 50, maxLength: 50 })), (steps) => {
      for (const st of steps) {
        expect(st.op).not.toBe('sched.block');
        if (st.op === 'sched.poll') expect(st.args.timeout).toBe(1000n);
        // Deadlines that mean the same on the model's clock and a live one.
        // Far-future deadlines stay under 2^50 ns ahead: set_timer_op fires those after 100 ms (Xen's Linux workaround).
        if (st.op === 'timer.set_singleshot' || st.op === 'timer.set_timer_op') expect([0n, 1n << 49n, 3n << 48n]).toContain(st.args.timeout);
      }
    }), { numRuns: 100, seed: 5 });
    // The model's own fuzzing keeps both.
    const ops = new Set(fc.sample(setupArb.chain((s) => stepArb(stepContext(s))), { numRuns: 3000, seed: 5 }).map((st) => st.op));
    expect(ops.has('sched.block')).toBe(true);
  });

  it('names no domain 0 where the target has a dom0 of its own (ownDom0)', () => {
    const steps = fc.sample(setupArb.chain((s) => stepArb({ ...stepContext(s), ownDom0: true })), { numRuns: 3000, seed: 9 });
    const dom0 = (st: { args: Record<string, unknown> }) => ['dom', 'remote_dom'].some((k) => st.args[k] === 0n);
    expect(steps.some(dom0)).toBe(false);
    expect(fc.sample(setupArb.chain((s) => stepArb(stepContext(s))), { numRuns: 3000, seed: 9 }).some(dom0)).toBe(true);
  });

  it('never runs a call at CPL 3 where the target cannot (cpl3: false)', () => {
    const steps = fc.sample(setupArb.chain((s) => stepArb({ ...stepContext(s), cpl3: false })), { numRuns: 2000, seed: 3 });
    expect(steps.every((st) => st.cpl === 0)).toBe(true);
    expect(fc.sample(setupArb.chain((s) => stepArb(stepContext(s))), { numRuns: 2000, seed: 3 }).some((st) => st.cpl === 3)).toBe(true);
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

describe('live-clock comparison', () => {
  it('leaves clock readings out of the OUT comparison, and nothing else', () => {
    const a = { ret: 0n, out: { state: 0n, state_entry_time: 5n, time_running: 5n } };
    const b = { ret: 0n, out: { state: 0n, state_entry_time: 9n, time_running: 9n } };
    expect(compareOutcomes(a, b, true)).toBeUndefined();
    expect(compareOutcomes(a, b)?.field).toBe('out.state_entry_time');
    expect(compareOutcomes({ ...a, out: { ...a.out, state: 2n } }, b, true)?.field).toBe('out.state');
    // A runstate op's state is the live scheduler's to decide; any other op's state is compared.
    expect(compareOutcomes({ ...a, out: { ...a.out, state: 2n } }, b, true, 'vcpu.get_runstate_info')).toBeUndefined();
    expect(compareOutcomes({ ...a, out: { ...a.out, state: 2n } }, b, false, 'vcpu.get_runstate_info')?.field).toBe('out.state');
  });
});

describe('live-clock byte mask', () => {
  const si: AreaSpan = { dom: 1, name: 'shared_info', gpa: 0x80000, size: 4096 };
  it('zeroes every vcpu_time_info and the wallclock of shared_info, and nothing an event or a mask sets', () => {
    for (const width of [64, 32] as const) {
      const f = SHARED_INFO[width].fields;
      const ranges = clockRanges([si], [width]);
      fc.assert(fc.property(fc.uint8Array({ minLength: 4096, maxLength: 4096 }), fc.integer({ min: 0, max: 4095 }), (bytes, at) => {
        const masked = withoutClock(bytes, si, ranges);
        const clock = ranges.some((r) => si.gpa + at >= r.from && si.gpa + at < r.to);
        expect(masked[at]).toBe(clock ? 0 : bytes[at]);
      }), { numRuns: 300, seed: width });
      // Spot checks from public/xen.h: vcpu_info[3].time.version, the wallclock, a pending word.
      const inside = (o: number) => ranges.some((r) => si.gpa + o >= r.from && si.gpa + o < r.to);
      expect(inside(3 * 64 + 32)).toBe(true);
      expect(inside(f.wc_version.offset) && inside(f.wc_nsec.offset + 3) && inside(f.wc_sec_hi.offset)).toBe(true);
      expect(inside(f.evtchn_pending.offset) || inside(f.evtchn_mask.offset) || inside(3 * 64) || inside(3 * 64 + 8)).toBe(false);
    }
  });
  it('masks the wallclock where the area\'s own layout has it: KVM told another width by the VMM (long_mode)', () => {
    // A 64-bit guest whose VMM set KVM_XEN_ATTR_TYPE_LONG_MODE to 0: KVM writes the 32-bit layout's wallclock.
    const ranges = clockRanges([si], [32]);
    const inside = (o: number) => ranges.some((r) => si.gpa + o >= r.from && si.gpa + o < r.to);
    const f32 = SHARED_INFO[32].fields;
    const f64 = SHARED_INFO[64].fields;
    expect(inside(f32.wc_version.offset) && inside(f32.wc_sec.offset) && inside(f32.wc_sec_hi.offset)).toBe(true);
    expect(inside(f64.wc_version.offset)).toBe(false);
  });
    it('masks a clock field inside another area that overlaps it, in its own domain only', () => {
    // The fuzzer's finding: a runstate area placed over the last 8 bytes of vcpu_info[1] (its time).
    const vi: AreaSpan = { dom: 1, name: 'vcpu_info[1]', gpa: 0x5fc0, size: 64 };
    const rs: AreaSpan = { dom: 1, name: 'runstate[1]', gpa: 0x5ff8, size: 48 };
    const ranges = clockRanges([vi, rs], [64]);
    const masked = withoutClock(new Uint8Array(48).fill(0xaa), rs, ranges);
    expect([...masked.subarray(0, 8)]).toEqual(Array(8).fill(0)); // vcpu_info[1].time's tail
    expect([...masked.subarray(8)]).toEqual(Array(40).fill(0)); // the runstate's own times
    const other = withoutClock(new Uint8Array(48).fill(0xaa), { ...rs, name: 'fifo_control[0]', gpa: 0x7000 }, ranges);
    expect([...other]).toEqual(Array(48).fill(0xaa)); // bytes of no clock area elsewhere stay
    expect([...withoutClock(new Uint8Array(64).fill(1), { ...vi, dom: 2 }, ranges)]).toEqual(Array(64).fill(1));
  });
});

describe('VMM steps', () => {
  it('use only the KVM features every target has (6.1: no *_hva attributes, no runstate flag or page-crossing area)', () => {
    const uses = (features?: string[]) => {
      const steps = fc.sample(setupArb.chain((s) => stepArb({ ...stepContext(s), kvmFeatures: features })), { numRuns: 6000, seed: 11 });
      return {
        hva: steps.some((st) => typeof st.args.attr === 'string' && st.args.attr.endsWith('_hva')),
        flag: steps.some((st) => st.args.attr === 'runstate_update_flag'),
        crossing: steps.some((st) => st.op === 'runstate.host_set_addr' && (st.args.gpa as bigint) < 1n << 40n && (st.args.gpa as bigint) % 4096n > 4096n - 48n),
      };
    };
    expect(uses([])).toEqual({ hva: false, flag: false, crossing: false });
    expect(uses(['kvm.shared_info_hva', 'runstate.update_flag'])).toEqual({ hva: true, flag: true, crossing: true });
  });
});
