import { describe, expect, it } from 'vitest';
import { encodeXenVcpuAttr, type GuestVm } from './addon.js';
import { runstateAreas, runstateDataArg, runstateForwarding, runstateOutOf, setRunstateAddr } from './runstate-live.js';
import { DriverError } from '../../errors.js';
import { ModelDriver } from '../model/model-driver.js';
import { HYPERVISOR, hypercall } from '../../model/hypercall.js';
import '../../model/hypercall-table.js';
import { KVM_XEN_INVALID_GPA, runstateOf, setKernelWritesRunstate } from '../../model/runstate.js';
import { VCPUOP } from '../../model/vcpu-op.js';

const M = (1n << 64n) - 1n;

describe('kvm runstate attribute helpers', () => {
  it('turns op arguments into RUNSTATE_DATA/ADJUST u64 bit patterns', () => {
    const d = runstateDataArg({ state: -1n, state_entry_time: 0n, time_running: 100n, time_runnable: 0n, time_blocked: -100n, time_offline: 1n << 62n });
    expect(d).toEqual({ state: M, stateEntryTime: 0n, timeRunning: 100n, timeRunnable: 0n, timeBlocked: M - 99n, timeOffline: 1n << 62n });
    const b = encodeXenVcpuAttr({ type: 'runstate_adjust', ...d });
    expect(b.readUInt16LE(0)).toBe(5);
    expect([0, 1, 2, 3, 4, 5].map((i) => b.readBigUInt64LE(8 + 8 * i))).toEqual([M, 0n, 100n, 0n, M - 99n, 1n << 62n]);
  });

  it('reports the model\'s OUT keys with KVM\'s sum rule (u64)', () => {
    expect(runstateOutOf({ state: 2, entry: 600n, time: [100n, 200n, 300n, 0n] })).toEqual({
      state: 2n, state_entry_time: 600n, time_running: 100n, time_runnable: 200n, time_blocked: 300n, time_offline: 0n, sum_ok: 1n,
    });
    expect(runstateOutOf({ state: 0, entry: 5n, time: [M, 6n, 0n, 0n] }).sum_ok).toBe(1n);
    expect(runstateOutOf({ state: 0, entry: 601n, time: [100n, 200n, 300n, 0n] }).sum_ok).toBe(0n);
  });
});

/** A VMM layer's model (flavour kvm) and a stand-in for KVM's RUNSTATE_ADDR per vCPU. */
function vmmLayer(refuse?: (gpa: bigint) => number | undefined) {
  const m = new ModelDriver('kvm').build({
    mode: 64,
    xenVersion: { major: 4, minor: 19, extra: '.0' },
    scratch: 0x100000,
    domains: [{ id: 1, vcpus: 2, privileged: false, memoryBytes: 16 << 20, sharedInfo: 0x80000, hypercallPage: 0x81000, limits: {} }],
  });
  const d = m.domain(1)!;
  setKernelWritesRunstate(d);
  const kvm: Array<bigint | null> = [null, null];
  const g = {
    vcpus: [0, 1].map((i) => ({
      xenSetAttr(a: { type: string; gpa: bigint }) {
        expect(a.type).toBe('runstate_addr');
        const errno = refuse?.(a.gpa);
        if (errno !== undefined) throw new DriverError('refused', { code: 'EFAULT', errno });
        kvm[i] = a.gpa === KVM_XEN_INVALID_GPA ? null : a.gpa;
      },
    })),
  } as unknown as GuestVm;
  /** The guest's VCPUOP_register_runstate_memory_area on vCPU `vcpu`, served by the model, then what the driver hands KVM. */
  const register = (vcpu: number, addr: bigint) => {
    d.memory.setU64(0x100000, addr);
    const before = runstateAreas(d);
    const ret = hypercall(m, d.vcpus[vcpu], { rax: BigInt(HYPERVISOR.vcpu_op), rdi: BigInt(VCPUOP.register_runstate_memory_area), rsi: BigInt(vcpu), rdx: 0x100000n }).ret;
    const f = runstateForwarding(before, runstateAreas(d));
    for (const x of f) setRunstateAddr(g, d.vcpus[x.vcpu], x.gpa);
    return { ret, forwarded: f };
  };
  return { m, d, g, kvm, register };
}

describe('the VMM layer hands the guest\'s runstate area to KVM (RUNSTATE_ADDR), as QEMU does', () => {
  it('a registration after the host placed the area moves KVM\'s area to the guest\'s, and areas() follows', () => {
    const { d, g, kvm, register } = vmmLayer();
    expect(setRunstateAddr(g, d.vcpus[1], 0x5000n)).toBe(0n);
    expect(d.areas.get('runstate/1')).toBe(0x5000);
    expect(register(1, 0x5034n)).toEqual({ ret: 0n, forwarded: [{ vcpu: 1, gpa: 0x5034n }] });
    expect(kvm).toEqual([null, 0x5034n]);
    expect(d.areas.get('runstate/1')).toBe(0x5034);
    // The same place again: KVM already has it.
    expect(register(1, 0x5034n).forwarded).toEqual([]);
  });

  it('a registration without a host placement gives KVM an area (RUNSTATE_ADDR then reads back); KVM, not the model, writes it', () => {
    const { d, kvm, register } = vmmLayer();
    d.memory.fill(0x5000, 48, 0xa5);
    expect(register(0, 0x5000n)).toEqual({ ret: 0n, forwarded: [{ vcpu: 0, gpa: 0x5000n }] });
    expect(kvm).toEqual([0x5000n, null]);
    // Neither the registration nor a later guest entry wrote the model's runstate there.
    register(1, 0x6000n);
    expect(d.memory.read(0x5000, 48).every((b) => b === 0xa5)).toBe(true);
  });

  it('an area KVM refuses leaves the model without one; the VMM layer\'s model never writes KVM\'s area', () => {
    const { d, g, kvm } = vmmLayer((gpa) => (gpa === 0x6000n ? 14 : undefined));
    d.memory.fill(0x5000, 48, 0xa5);
    expect(setRunstateAddr(g, d.vcpus[0], 0x5000n)).toBe(0n);
    expect(d.memory.read(0x5000, 48).every((b) => b === 0xa5)).toBe(true);
    expect(setRunstateAddr(g, d.vcpus[0], 0x6000n)).toBe(-14n);
    expect(runstateOf(d.vcpus[0]).kvm).toBe(null);
    expect(d.areas.get('runstate/0')).toBeUndefined();
    expect(kvm).toEqual([0x5000n, null]);
  });
});
