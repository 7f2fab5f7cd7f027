import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ModelDriver } from '../drivers/model/model-driver.js';
import './hypercall-table.js';
import type { XenModel } from './domain.js';
import type { Width } from './memory-layout.js';
import {
  decodeRunstate, hostAdjust, hostSetAddr, hostSetCurrent, hostSetData, registerPhys, registerVirtual, RUNSTATE,
  RUNSTATE_INFO, runstateChange, runstateGet, runstateOf, sumRuleHolds, timeSum,
} from './runstate.js';
import { VMASST_TYPE } from './vm-assist.js';
import { HYPERVISOR, hypercall } from './hypercall.js';

function build(width: Width, flavor: 'xen' | 'kvm'): XenModel {
  return new ModelDriver(flavor).build({
    mode: width,
    xenVersion: { major: 4, minor: 19, extra: '.0' },
    scratch: 0x100000,
    domains: [{ id: 1, vcpus: 2, privileged: false, memoryBytes: 16 << 20, sharedInfo: 0x80000, hypercallPage: 0x81000, limits: {} }],
  });
}

describe('runstate layouts', () => {
  it('64-bit is 48 bytes with entry at 8; compat is 44 with entry at 4', () => {
    expect(RUNSTATE_INFO[64].size).toBe(48);
    expect(RUNSTATE_INFO[64].fields.state_entry_time.offset).toBe(8);
    expect(RUNSTATE_INFO[64].fields.time.offset).toBe(16);
    expect(RUNSTATE_INFO[32].size).toBe(44);
    expect(RUNSTATE_INFO[32].fields.state_entry_time.offset).toBe(4);
    expect(RUNSTATE_INFO[32].fields.time.offset).toBe(12);
  });
});

describe('runstate accounting', () => {
  const step = fc.record({ dt: fc.bigInt({ min: 0n, max: 1n << 40n }), to: fc.integer({ min: 0, max: 3 }), steal: fc.bigInt({ min: 0n, max: 1000n }) });
  for (const flavor of ['xen', 'kvm'] as const) {
    for (const width of [64, 32] as const) {
      it(`fast-check (${flavor}, ${width}-bit): the sum rule holds after every change and the area mirrors the runstate`, () => {
        fc.assert(fc.property(fc.array(step, { minLength: 1, maxLength: 20 }), fc.integer({ min: 0, max: 200 }), (steps, off) => {
          const m = build(width, flavor);
          const d = m.domain(1)!;
          const v = d.vcpus[0];
          d.vmAssist |= 1 << VMASST_TYPE.runstate_update_flag;
          const base = 0x4000 - 100 + off;
          registerVirtual(m, v, v, base);
          for (const s of steps) {
            m.advance(s.dt);
            // Steal can only be what actually elapsed.
            runstateChange(m, v, s.to, flavor === 'kvm' && s.steal <= s.dt ? s.steal : 0n);
            if (!sumRuleHolds(m, v)) return false;
            const area = decodeRunstate(d.memory.read(base, RUNSTATE_INFO[width].size), width);
            const i = runstateOf(v).info;
            if (area.state !== i.state || area.entry !== i.entry || area.time.some((t, k) => t !== i.time[k])) return false;
            // get_runstate_info reaches now.
            if (timeSum(runstateGet(m, v)) !== m.now && flavor === 'xen') return false;
          }
          return true;
        }), { numRuns: 50 });
      });
    }
  }
  it('a rule that is broken is detected (sum_ok can fail)', () => {
    const m = build(64, 'xen');
    const v = m.domain(1)!.vcpus[0];
    m.advance(10n);
    runstateChange(m, v, RUNSTATE.runnable);
    runstateOf(v).info.time[0] += 1n;
    expect(sumRuleHolds(m, v)).toBe(false);
  });
});

describe('KVM attributes', () => {
  it('RUNSTATE_CURRENT rejects states above offline', () => {
    const m = build(64, 'kvm');
    const v = m.domain(1)!.vcpus[0];
    expect(hostSetCurrent(m, v, 4n)).toBe(-22);
    expect(hostSetCurrent(m, v, (1n << 64n) - 1n)).toBe(-22);
    expect(hostSetCurrent(m, v, 3n)).toBe(0);
    expect(runstateOf(v).info.state).toBe(RUNSTATE.offline);
  });
  it('RUNSTATE_DATA: sum, future entry and state checks', () => {
    const m = build(64, 'kvm');
    const v = m.domain(1)!.vcpus[0];
    m.advance(100n);
    expect(hostSetData(m, v, { state: 1n, entry: 100n, time: [50n, 50n, 0n, 0n] })).toBe(0);
    expect(hostSetData(m, v, { state: 1n, entry: 101n, time: [51n, 50n, 0n, 0n] })).toBe(-22);
    expect(hostSetData(m, v, { state: 1n, entry: 99n, time: [50n, 50n, 0n, 0n] })).toBe(-22);
    expect(hostSetData(m, v, { state: 4n, entry: 100n, time: [50n, 50n, 0n, 0n] })).toBe(-22);
  });
  it('RUNSTATE_ADJUST: (u64)-1 keeps the state; deltas must add up', () => {
    const m = build(64, 'kvm');
    const v = m.domain(1)!.vcpus[0];
    m.advance(100n);
    runstateChange(m, v, RUNSTATE.runnable);
    m.advance(100n);
    const before = runstateOf(v).info.state;
    expect(hostAdjust(m, v, { state: (1n << 64n) - 1n, entry: 10n, time: [0n, 10n, 0n, 0n] })).toBe(0);
    expect(runstateOf(v).info.state).toBe(before);
    expect(hostAdjust(m, v, { state: (1n << 64n) - 1n, entry: 10n, time: [0n, 11n, 0n, 0n] })).toBe(-22);
    expect(hostAdjust(m, v, { state: 5n, entry: 0n, time: [0n, 0n, 0n, 0n] })).toBe(-22);
    expect(sumRuleHolds(m, v)).toBe(true);
  });
  it('a guest entry (KVM_RUN -> record_steal_time -> kvm_xen_runstate_set_running) switches to running; Xen keeps the state', () => {
    for (const flavor of ['kvm', 'xen'] as const) {
      const m = build(64, flavor);
      const d = m.domain(1)!;
      const v = d.vcpus[1];
      m.advance(10n);
      if (flavor === 'kvm') {
        expect(hostSetAddr(m, v, 0x5000n)).toBe(0);
        expect(hostSetCurrent(m, v, BigInt(RUNSTATE.blocked))).toBe(0);
      } else runstateChange(m, v, RUNSTATE.blocked);
      m.advance(20n);
      // HYPERVISOR_xen_version(XENVER_version) on vCPU 1: the guest ran.
      hypercall(m, v, { rax: BigInt(HYPERVISOR.xen_version), rdi: 0n });
      const i = runstateOf(v).info;
      if (flavor === 'xen') {
        expect(i.state).toBe(RUNSTATE.blocked);
        continue;
      }
      expect(i.state).toBe(RUNSTATE.running);
      expect(i.time[RUNSTATE.blocked]).toBe(20n);
      expect(i.entry).toBe(30n);
      expect(decodeRunstate(d.memory.read(0x5000, 48), 64).state).toBe(RUNSTATE.running);
      // A refused RUNSTATE_CURRENT then reports that running state.
      expect(hostSetCurrent(m, v, 4n)).toBe(-22);
      expect(runstateOf(v).info.state).toBe(RUNSTATE.running);
      // The other vCPU did not run.
      expect(runstateOf(d.vcpus[0]).info.entry).toBe(0n);
    }
  });
  it('RUNSTATE_ADDR: any alignment, crossing allowed, outside RAM -EFAULT', () => {
    const m = build(32, 'kvm');
    const v = m.domain(1)!.vcpus[0];
    expect(hostSetAddr(m, v, 0x3ffdn)).toBe(0);
    expect(hostSetAddr(m, v, BigInt(16 << 20) - 10n)).toBe(-14);
    expect(hostSetAddr(m, v, (1n << 64n) - 1n)).toBe(0);
  });
});

describe('Xen physical area', () => {
  it('crossing -ENXIO, misaligned -ENXIO, ~0 unregisters', () => {
    const m = build(64, 'xen');
    const v = m.domain(1)!.vcpus[0];
    expect(registerPhys(m, v, v, 0x3fe0n, 64)).toBe(-6);
    expect(registerPhys(m, v, v, 0x3004n, 64)).toBe(-6);
    expect(registerPhys(m, v, v, 0x3008n, 64)).toBe(0);
    expect(registerPhys(m, v, v, (1n << 64n) - 1n, 64)).toBe(0);
  });
});
