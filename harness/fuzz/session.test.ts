// On a live clock, bytes the clock wrote stay out of the comparison after the area
// that held them moves (found on 6.12: a runstate area moved away left KVM's times
// under a vcpu_info registered there later).
import { describe, expect, it } from 'vitest';
import '../model/runstate.js'; // registers the runstate area
import type { Compiled, FuzzSession } from './exec.js';
import { FindingError, FuzzSequence, type StepStats } from './session.js';
import { sessionSetup } from './setup.js';
import type { FuzzStep } from './steps.js';

const A = 0x5fc0;
const B = 0x5800;

/** A session over 64 KiB of memory whose areas are whatever `place` says now. */
function fake(place: Map<string, number>, width: 32 | 64 = 64): FuzzSession & { mem: Uint8Array } {
  const mem = new Uint8Array(0x10000);
  return {
    mem,
    apply: async () => ({ ret: 0n }),
    read: async (_d, gpa, len) => mem.slice(gpa, gpa + len),
    areas: () => ({ width, get: (k: string) => place.get(k) }),
    close: () => {},
  };
}

/** `wasAtA`: the runstate area was at A for the first step (else at B throughout). */
async function run(wasAtA: boolean): Promise<unknown> {
  const setup = sessionSetup({ mode: 64, portLimit: 63, maptrackFrames: 1, single: true, vcpus: 1 });
  const place = new Map<string, number>([['runstate/0', wasAtA ? A : B]]);
  const target = fake(place);
  const reference = fake(place);
  const stats: StepStats = { steps: 0, sequences: 0, ops: new Map() };
  const seq = new FuzzSequence(setup, target, reference, stats, true, true);
  const step: FuzzStep = { op: 'xen.version', args: { cmd: 0n }, dom: 1, vcpu: 0, cpl: 0 };
  // The target's clock wrote its runstate times at A; the reference's (the model) others.
  target.mem.fill(0xaa, A, A + 48);
  reference.mem.fill(0x11, A, A + 48);
  await seq.execAsync(step);
  // The runstate area moves to B; a vcpu_info is placed over A, where the old times remain.
  place.set('runstate/0', B);
  place.set('vcpu_info/0', A);
  try {
    await seq.execAsync(step);
    return undefined;
  } catch (e) {
    return e;
  }
}

describe('live-clock comparison across steps', () => {
  it('keeps a moved runstate area\'s old clock bytes out of the comparison', async () => {
    expect(await run(true)).toBeUndefined();
  });
  it('bytes that differ where no clock-written area ever was are a finding', async () => {
    const e = await run(false);
    expect(e).toBeInstanceOf(FindingError);
  });
});

describe('live-clock comparison after KVM is told another width', () => {
  /** A 64-bit guest's shared_info at 0x8000; the target's clock wrote the 32-bit layout's wallclock (0x900..). */
  async function run(first: FuzzStep): Promise<unknown> {
    const setup = sessionSetup({ mode: 64, portLimit: 63, maptrackFrames: 1, single: true, vcpus: 1 });
    const place = new Map<string, number>([['shared_info', 0x8000]]);
    const target = fake(place);
    const reference = fake(place);
    const seq = new FuzzSequence(setup, target, reference, { steps: 0, sequences: 0, ops: new Map() }, true, true);
    target.mem.fill(0xaa, 0x8000 + 0x904, 0x8000 + 0x90c); // wc_sec, wc_nsec of the 32-bit layout
    try {
      await seq.execAsync(first);
      return undefined;
    } catch (e) {
      return e;
    }
  }
  it('leaves out both widths\' wallclock once the sequence set KVM\'s long_mode', async () => {
    expect(await run({ op: 'kvm.xen_set_attr', args: { attr: 'long_mode', value: 0n }, dom: 1, vcpu: 0, cpl: 0 })).toBeUndefined();
  });
  it('compares those bytes when no step changed the width', async () => {
    expect(await run({ op: 'xen.version', args: { cmd: 0n }, dom: 1, vcpu: 0, cpl: 0 })).toBeInstanceOf(FindingError);
  });
});

describe('a handler scan after KVM is told another width, on a live clock', () => {
  /** The target's scan also found the ports under the 32-bit wallclock (0x900.. of shared_info at 0x8000). */
  async function run(targetExtra: bigint[], setWidth = true): Promise<unknown> {
    const setup = sessionSetup({ mode: 64, portLimit: 63, maptrackFrames: 1, single: true, vcpus: 1 });
    const place = new Map<string, number>([['shared_info', 0x8000]]);
    // Every step but the scan answers 0 on both sides.
    const scan = (extra: bigint[]) => async (c: Compiled) =>
      (c.action.kind === 'host' && c.action.op === 'evtchn.run_upcall' ? { out: { handled: [5n, ...extra] } } : { ret: 0n });
    const target = { ...fake(place), apply: scan(targetExtra) };
    const reference = { ...fake(place), apply: scan([]) };
    const seq = new FuzzSequence(setup, target, reference, { steps: 0, sequences: 0, ops: new Map() }, false, true);
    try {
      if (setWidth) await seq.execAsync({ op: 'kvm.xen_set_attr', args: { attr: 'long_mode', value: 0n }, dom: 1, vcpu: 0, cpl: 0 });
      await seq.execAsync({ op: 'evtchn.run_upcall', args: {}, dom: 1, vcpu: 0, cpl: 0 });
      return undefined;
    } catch (e) {
      return e;
    }
  }
  it('leaves out ports whose pending bits the clock wrote (compat wc_version at 0x900: 64-bit ports 2048..)', async () => {
    expect(await run([2048n, 2081n, 2143n])).toBeUndefined();
  });
  it('a port elsewhere is still a finding, and so is one under the clock when no step changed the width', async () => {
    expect(await run([2048n, 9n])).toBeInstanceOf(FindingError);
    expect(await run([2048n], false)).toBeInstanceOf(FindingError);
  });
});
