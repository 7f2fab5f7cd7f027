import { afterEach, describe, expect, it } from 'vitest';
import { ModelDriver } from '../drivers/model/model-driver.js';
import './hypercall-table.js';
import type { XenModel } from './domain.js';
import type { Width } from './memory-layout.js';
import { hostSetAddr, RUNSTATE, RUNSTATE_INFO, setRunstateWriter, type RunstateWriter } from './runstate.js';
import { areaConsistent, raceArgs, raceModel, raceOut, raceStates } from './runstate-race.js';
import { VMASST_TYPE } from './vm-assist.js';
import { runstateRaceCheck } from '../ops/runstate.js';

function build(width: Width): XenModel {
  return new ModelDriver('kvm').build({
    mode: width,
    xenVersion: { major: 4, minor: 19, extra: '.0' },
    scratch: 0x100000,
    domains: [{ id: 1, vcpus: 2, privileged: false, memoryBytes: 16 << 20, sharedInfo: 0x80000, hypercallPage: 0x81000, limits: {} }],
  });
}

function race(o: { width: Width; base: number; flag?: boolean; writer?: RunstateWriter; flips?: number; run?: boolean }) {
  const m = build(o.width);
  const d = m.domain(1)!;
  if (o.flag ?? true) d.vmAssist |= 1 << VMASST_TYPE.runstate_update_flag;
  expect(hostSetAddr(m, d.vcpus[0], BigInt(o.base))).toBe(0);
  setRunstateWriter(o.writer ?? 'correct');
  const r = raceModel(m, d, d.vcpus[0], { flips: o.flips ?? 6, states: [RUNSTATE.runnable, RUNSTATE.blocked], writer: o.run ? 'run' : 'current' });
  if (typeof r === 'string') throw new Error(r);
  return r;
}

afterEach(() => setRunstateWriter('correct'));

describe('runstate.race_check on the model', () => {
  for (const width of [64, 32] as const) {
    for (const base of [0x201000, 0x201004, 0x201fd8, 0x201ff4, 0x201ffc]) {
      it(`the flag protocol is never accepted torn, and every flip changes the area (${width}-bit, 0x${base.toString(16)})`, () => {
        const r = race({ width, base });
        expect(r).toMatchObject({ tornAccepted: 0, flips: 6, changes: 6, finalConsistent: true, finalState: RUNSTATE.blocked });
        expect(r.reads).toBeGreaterThan(6 * 2);
        const run = race({ width, base, run: true, flips: 3 });
        expect(run).toMatchObject({ tornAccepted: 0, flips: 3, changes: 3, finalConsistent: true, finalState: RUNSTATE.running });
      });
    }
    it(`reports torn snapshots for faulty writers and for a plain copy (${width}-bit)`, () => {
      for (const writer of ['flag_cleared_early', 'no_flag'] as const) {
        expect(race({ width, base: 0x201000, writer }).tornAccepted).toBeGreaterThan(0);
      }
      expect(race({ width, base: 0x201ffc, flag: false }).tornAccepted).toBeGreaterThan(0);
      // A faulty writer still leaves a consistent area once it is done.
      expect(race({ width, base: 0x201000, writer: 'flag_cleared_early' }).finalConsistent).toBe(true);
    });
  }

  it('needs a runstate area and a valid reader', () => {
    const m = build(64);
    const d = m.domain(1)!;
    expect(raceModel(m, d, d.vcpus[0], { flips: 1, states: [1], writer: 'current' })).toMatch(/no runstate area/);
    const impl = runstateRaceCheck.model!;
    expect(impl(m, { reader: 0n, flips: 2n }, { dom: d, vcpu: d.vcpus[0] }).fault).toMatch(/another vCPU/);
    expect(impl(m, { reader: 5n, flips: 2n }, { dom: d, vcpu: d.vcpus[0] }).fault).toMatch(/another vCPU/);
    expect(hostSetAddr(m, d.vcpus[0], 0x201000n)).toBe(0);
    const out = impl(m, { reader: 1n, flips: 3n, states: [3n] }, { dom: d, vcpu: d.vcpus[0] }).out!;
    // Without VMASST_TYPE_runstate_update_flag KVM writes a plain copy: a protocol reader can be fooled.
    expect(out).toMatchObject({ flips: 3n, changed: 1n, final_state: 3n, final_consistent: 1n, accepted_any: 1n });
    d.vmAssist |= 1 << VMASST_TYPE.runstate_update_flag;
    expect(impl(m, { reader: 1n, flips: 3n }, { dom: d, vcpu: d.vcpus[0] }).out).toMatchObject({ torn_accepted: 0n, final_state: 1n });
  });

  it('checks its arguments', () => {
    expect(raceArgs({ flips: 0n })).toMatch(/flips/);
    expect(raceArgs({ flips: 100_001n })).toMatch(/flips/);
    expect(raceArgs({ flips: 1n, states: [4n] })).toMatch(/states/);
    expect(raceArgs({ flips: 1n, states: [-1n] })).toMatch(/states/);
    expect(raceArgs({ flips: 2n })).toEqual({ flips: 2, states: [RUNSTATE.runnable, RUNSTATE.blocked], writer: 'current' });
    expect(raceArgs({ flips: 2n, writer: 'run' })).toMatchObject({ writer: 'run' });
    expect([0, 1, 2, 3].map((k) => raceStates([1, 2], 'current', k))).toEqual([1, 2, 1, 2]);
    expect(raceStates([1, 2], 'run', 1)).toBe(RUNSTATE.running);
  });

  it('judges a quiescent area by the KVM rules and reports OUT keys', () => {
    expect(areaConsistent({ state: 1, entry: 30n, time: [10n, 20n, 0n, 0n] })).toBe(true);
    expect(areaConsistent({ state: 1, entry: 31n, time: [10n, 20n, 0n, 0n] })).toBe(false);
    expect(areaConsistent({ state: 4, entry: 0n, time: [0n, 0n, 0n, 0n] })).toBe(false);
    expect(areaConsistent({ state: 0, entry: 1n << 63n, time: [1n << 63n, 0n, 0n, 0n] })).toBe(false);
    expect(areaConsistent({ state: 0, entry: 5n, time: [(1n << 64n) - 1n, 6n, 0n, 0n] })).toBe(true);
    expect(raceOut({ tornAccepted: 2, reads: 10, changes: 0, flips: 4, finalConsistent: true, finalState: 2 })).toEqual({
      torn_accepted: 2n, accepted_any: 1n, reads: 10n, changes: 0n, changed: 0n, flips: 4n, final_consistent: 1n, final_state: 2n,
    });
    expect(RUNSTATE_INFO[32].size).toBe(44);
  });
});
