import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { buildModel } from './evtchn-test-util.js';
import { KVM_XEN_HVM_CONFIG_EVTCHN_SEND, KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL, KvmHypercallNotModelled, kvmSetHvmConfig } from './kvm-config.js';
import { kvmIrqRouteSend } from './kvm-evtchn.js';
import { HYPERVISOR, hypercall, wrmsr, XEN_HYPERCALL_MSR } from './hypercall.js';

const P2 = 0xffffffffn;

describe('model of KVM_XEN_HVM_CONFIG and the hypercall blob (arch/x86/kvm/xen.c)', () => {
  it('refuses flags that are not settings, and a blob together with INTERCEPT_HCALL', () => {
    const d = buildModel({ flavor: 'kvm' }).domain(1)!;
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 0x1ffn }), fc.integer({ min: 0, max: 3 }), (flags, pages) => {
        const ok = (flags & ~(KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL | KVM_XEN_HVM_CONFIG_EVTCHN_SEND)) === 0n &&
          !((flags & KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL) !== 0n && pages !== 0);
        expect(kvmSetHvmConfig(d, { flags, blobGpa: 0x200000, blobPages: pages })).toBe(ok ? 0n : -22n);
      }),
    );
  });

  it('the MSR write copies blob page N, #GP past the blob; with INTERCEPT_HCALL KVM writes its own page', () => {
    const m = buildModel({ flavor: 'kvm' });
    const d = m.domain(1)!;
    const v = d.vcpu(0)!;
    d.memory.setU32(0x200000, 0xaabbccdd);
    d.memory.setU32(0x201004, 0x11223344);
    expect(kvmSetHvmConfig(d, { flags: 0n, blobGpa: 0x200000, blobPages: 2 })).toBe(0n);
    expect(wrmsr(m, v, XEN_HYPERCALL_MSR, 0x300001n)).toEqual({ ok: true });
    expect(d.memory.u32(0x300004)).toBe(0x11223344);
    expect(d.memory.u32(0x300000)).toBe(0);
    expect(wrmsr(m, v, XEN_HYPERCALL_MSR, 0x300000n)).toEqual({ ok: true });
    expect(d.memory.u32(0x300000)).toBe(0xaabbccdd);
    expect(wrmsr(m, v, XEN_HYPERCALL_MSR, 0x300002n)).toEqual({ ok: false, fault: 'GP' });
    expect(kvmSetHvmConfig(d, { flags: KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL, blobGpa: 0, blobPages: 0 })).toBe(0n);
    expect(wrmsr(m, v, XEN_HYPERCALL_MSR, 0x300000n)).toEqual({ ok: true });
    expect(d.memory.u8(0x300000)).toBe(0xb8); // mov $nr, %eax
  });

  it('without INTERCEPT_HCALL every hypercall is KVM\'s own (kvm_emulate_hypercall); with it again, Xen\'s', () => {
    const m = buildModel({ flavor: 'kvm' });
    const d = m.domain(1)!;
    const v = d.vcpu(0)!;
    const xenVersion = { rax: BigInt(HYPERVISOR.xen_version), rdi: 0n };
    const xen = hypercall(m, v, xenVersion).ret;
    expect(xen > 0n).toBe(true);
    expect(kvmSetHvmConfig(d, { flags: KVM_XEN_HVM_CONFIG_EVTCHN_SEND, blobGpa: 0, blobPages: 0 })).toBe(0n);
    // Xen's numbers are not KVM's: -KVM_ENOSYS, memory_op (12 = KVM_HC_MAP_GPA_RANGE) too.
    expect(hypercall(m, v, xenVersion).ret).toBe(-1000n);
    expect(hypercall(m, v, { rax: BigInt(HYPERVISOR.memory_op) }).ret).toBe(-1000n);
    for (const nr of [1n, 5n, 11n]) expect(hypercall(m, v, { rax: nr }).ret).toBe(0n);
    expect(hypercall(m, v, { rax: 9n, rcx: 1n }).ret).toBe(-95n); // not the wall clock pairing
    expect(() => hypercall(m, v, { rax: 9n, rcx: 0n })).toThrow(KvmHypercallNotModelled);
    expect(() => hypercall(m, v, { rax: 10n })).toThrow(KvmHypercallNotModelled);
    // 32-bit: the number is cut to 32 bits and so is the answer (rax = (u32)-1000).
    v.mode = 32;
    expect(hypercall(m, v, { rax: (1n << 32n) | 1n }).ret).toBe(0n);
    expect(hypercall(m, v, { rax: 17n }).ret).toBe(-1000n);
    v.mode = 64;
    expect(hypercall(m, v, { rax: (1n << 32n) | 1n }).ret).toBe(-1000n);
    v.cpl = 3;
    expect(hypercall(m, v, { rax: 1n }).ret).toBe(-1n); // -KVM_EPERM before the number
    v.cpl = 0;
    expect(kvmSetHvmConfig(d, { flags: KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL, blobGpa: 0, blobPages: 0 })).toBe(0n);
    expect(hypercall(m, v, xenVersion).ret).toBe(xen);
  });

  it('an irqfd route refuses other priorities but not ports past the limit, whose events are dropped, nor unknown vCPUs', () => {
    for (const mode of [64, 32] as const) {
      const d = buildModel({ flavor: 'kvm', mode }).domain(1)!;
      const limit = mode === 64 ? 4096n : 1024n;
      const maskBefore = d.memory.read(0x80000 + 0x800, 1024).slice();
      expect(kvmIrqRouteSend(d, limit, 0n, P2)).toBe(0n);
      expect(d.memory.read(0x80000 + 0x800, 1024)).toEqual(maskBefore);
      expect(kvmIrqRouteSend(d, limit - 1n, 0n, P2)).toBe(0n);
      expect(kvmIrqRouteSend(d, 5n, 0n, 7n)).toBe(-22n);
      expect(kvmIrqRouteSend(d, 6n, 3n, P2)).toBe(0n);
      const pending = d.memory.u32(0x80000 + 0x800);
      expect(pending & (1 << 6)).toBe(0);
      expect(pending & (1 << 5)).toBe(0);
    }
  });
});
