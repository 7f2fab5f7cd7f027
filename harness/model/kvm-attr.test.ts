import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { buildModel } from './evtchn-test-util.js';
import {
  KVM_MAX_VCPUS, KVM_XEN_INVALID, KVM_XEN_PRIO_2LEVEL, kvmXenGetAttr, kvmXenSetAttr, kvmXenSetTimer, kvmXenSetUpcallVector, kvmXenSetVcpuId,
} from './kvm-attr.js';
import { kvmHoldsSelector } from './kvm-vcpu.js';
import { SHARED_INFO } from './memory-layout.js';

const fresh = (mode: 64 | 32 = 64, vcpus = 2) => {
  const m = buildModel({ mode, vcpus });
  const d = m.domain(1)!;
  return { m, d, v0: d.vcpu(0)!, v1: d.vcpu(1)! };
};

describe('model of KVM\'s Xen attributes (arch/x86/kvm/xen.c)', () => {
  it('reads back the VM attributes the VMM keeps KVM told of', () => {
    for (const mode of [64, 32] as const) {
      const { d, v0 } = fresh(mode);
      expect(kvmXenGetAttr(d, v0, 'long_mode')).toBe(mode === 64 ? 1n : 0n);
      expect(kvmXenGetAttr(d, v0, 'shared_info')).toBe(0x80n);
      expect(kvmXenGetAttr(d, v0, 'xen_version')).toBe((4n << 16n) | 19n);
      expect(kvmXenGetAttr(d, v0, 'callback_vector')).toBe(0n);
      d.placeSharedInfo(0xc0000);
      expect(kvmXenGetAttr(d, v0, 'shared_info')).toBe(0xc0n);
      expect(kvmXenGetAttr(d, v0, 'vcpu_info')).toBe(0xc0000n);
    }
  });

  it('reports no shared_info and no vcpu_info as KVM_XEN_INVALID_GFN / _GPA', () => {
    const { d, v1 } = fresh();
    d.sharedInfoGpa = null;
    expect(kvmXenGetAttr(d, v1, 'shared_info')).toBe(KVM_XEN_INVALID);
    expect(kvmXenGetAttr(d, v1, 'vcpu_info')).toBe(KVM_XEN_INVALID);
  });

  it('areas by guest address: no memory slot behind is -EFAULT and reads back; crossing a page is -EINVAL and keeps the old (kvm_gpc_activate)', () => {
    for (const mode of [64, 32] as const) {
      const m = buildModel({ flavor: 'kvm', mode, vcpus: 2 });
      const d = m.domain(1)!;
      const v = d.vcpu(1)!;
      const wc = () => d.memory.u32(0x80000 + SHARED_INFO[d.width].fields.wc_version.offset);
      const before = wc();
      // 16 MiB of RAM: gfn 0x7ffff000 (the fuzzer's) and 0x1000000 are past it.
      expect(kvmXenSetAttr(d, v, 'shared_info', 0x7ffff000n)).toBe(-14n);
      expect(kvmXenGetAttr(d, v, 'shared_info')).toBe(0x7ffff000n);
      expect(kvmXenSetAttr(d, v, 'shared_info', 0x80n)).toBe(0n);
      expect(wc()).toBe(before + 2);
      expect(kvmXenSetAttr(d, v, 'vcpu_info', 0x1000000n)).toBe(-14n);
      expect(kvmXenGetAttr(d, v, 'vcpu_info')).toBe(0x1000000n);
      expect(kvmHoldsSelector(v)).toBe(true);
      expect(kvmXenSetAttr(d, v, 'vcpu_info', 0x80040n)).toBe(0n);
      expect(kvmHoldsSelector(v)).toBe(false);
      expect(kvmXenSetAttr(d, v, 'vcpu_info', 0x80fc4n)).toBe(-22n);
      expect(kvmXenGetAttr(d, v, 'vcpu_info')).toBe(0x80040n);
      expect(kvmXenSetAttr(d, v, 'vcpu_time_info', 0x90fe8n)).toBe(-22n);
      expect(kvmXenGetAttr(d, v, 'vcpu_time_info')).toBe(KVM_XEN_INVALID);
      expect(kvmXenSetAttr(d, v, 'vcpu_time_info', 0x1000000n)).toBe(-14n);
      expect(kvmXenGetAttr(d, v, 'vcpu_time_info')).toBe(0x1000000n);
      expect(kvmXenSetAttr(d, v, 'vcpu_time_info', 0x90fe0n)).toBe(0n);
    }
  });

  it('starts each vCPU with its index as Xen id, as the VMM sets it (QEMU kvm_xen_init_vcpu); the VMM may change it', () => {
    const { d, v0, v1 } = fresh();
    expect(kvmXenGetAttr(d, v0, 'vcpu_id')).toBe(0n);
    expect(kvmXenGetAttr(d, v1, 'vcpu_id')).toBe(1n);
    expect(kvmXenSetVcpuId(v1, 7n)).toBe(0n);
    expect(kvmXenGetAttr(d, v1, 'vcpu_id')).toBe(7n);
  });

  it('refuses upcall vectors 1..0x0f and keeps the old one; accepts 0 and 0x10..0xff', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0x10, max: 255 }), (vec, before) => {
        const { d, v0, v1 } = fresh();
        expect(kvmXenSetUpcallVector(v0, BigInt(before))).toBe(0n);
        const ret = kvmXenSetUpcallVector(v0, BigInt(vec));
        const refused = vec !== 0 && vec < 0x10;
        expect(ret).toBe(refused ? -22n : 0n);
        expect(kvmXenGetAttr(d, v0, 'upcall_vector')).toBe(BigInt(refused ? before : vec));
        expect(kvmXenGetAttr(d, v1, 'upcall_vector')).toBe(0n);
      }),
    );
  });

  it('accepts vCPU ids below KVM_MAX_VCPUS only', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 1n << 32n }), (id) => {
        const { d, v1 } = fresh();
        const ok = id < KVM_MAX_VCPUS;
        expect(kvmXenSetVcpuId(v1, id)).toBe(ok ? 0n : -22n);
        expect(kvmXenGetAttr(d, v1, 'vcpu_id')).toBe(ok ? id : 1n);
      }),
    );
  });

  it('timer: a port needs the 2-level priority; port 0 or expiry 0 leaves no timer running', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 4095n }), fc.constantFrom(0n, 1n, KVM_XEN_PRIO_2LEVEL), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (port, prio, exp) => {
        const { m, d, v0 } = fresh();
        m.advance(1000n);
        expect(kvmXenSetTimer(m, v0, 5n, KVM_XEN_PRIO_2LEVEL, 1n << 60n)).toBe(0n);
        const ret = kvmXenSetTimer(m, v0, port, prio, exp);
        const refused = port !== 0n && prio !== KVM_XEN_PRIO_2LEVEL;
        expect(ret).toBe(refused ? -22n : 0n);
        expect(kvmXenGetAttr(d, v0, 'timer_port')).toBe(refused ? 5n : port);
        // A deadline not after now (as a signed guest time) fires at once and reads back 0.
        const armed = port !== 0n && BigInt.asIntN(64, exp) > m.now;
        expect(kvmXenGetAttr(d, v0, 'timer_expires')).toBe(refused ? 1n << 60n : armed ? exp : 0n);
        expect(kvmXenGetAttr(d, v0, 'timer_priority')).toBe(KVM_XEN_PRIO_2LEVEL);
      }),
    );
  });
});
