import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { buildModel } from './evtchn-test-util.js';
import { kvmRaisePort } from './kvm-evtchn.js';
import { kvmXenSetAttr, kvmXenSetUpcallVector, KVM_XEN_INVALID } from './kvm-attr.js';
import { kvmVcpuAttrs } from './kvm-vcpu.js';
import { kvmSetHvmConfig } from './kvm-config.js';
import { hypercall, HYPERVISOR } from './hypercall.js';
import { takeUpcalls } from './upcall-take.js';

const SI = 0x80000;

function setup(flavor: 'kvm' | 'xen', mode: 64 | 32 = 64) {
  const m = buildModel({ flavor, mode });
  const d = m.domain(1)!;
  const v = d.vcpu(0)!;
  const sel = () => (mode === 64 ? d.memory.u64(SI + 8) : BigInt(d.memory.u32(SI + 4)));
  const upcall = () => d.memory.u8(SI);
  const pending = (port: number) => (d.memory.u8(SI + 0x800 + (port >> 3)) >> (port & 7)) & 1;
  const enter = () => hypercall(m, v, { rax: BigInt(HYPERVISOR.xen_version), rdi: 0n, rsi: 0n, rdx: 0n, r10: 0n, r8: 0n, r9: 0n, rbx: 0n, rcx: 0n, rbp: 0n });
  return { m, d, v, sel, upcall, pending, enter };
}

describe('model-kvm: events KVM holds while it has no vcpu_info (kvm_xen_set_evtchn_fast, kvm_xen_inject_pending_events)', () => {
  it('sets only the pending bit, holds the selector, and delivers it at the entry its kick cancels once vcpu_info is back', () => {
    for (const mode of [64, 32] as const) {
      const { d, v, sel, upcall, pending, enter } = setup('kvm', mode);
      expect(kvmXenSetAttr(d, v, 'vcpu_info', KVM_XEN_INVALID)).toBe(0n);
      expect(kvmRaisePort(v, 70)).toBe(true);
      expect(pending(70)).toBe(1);
      expect([sel(), upcall()]).toEqual([0n, 0]);
      expect(kvmXenSetAttr(d, v, 'vcpu_info', BigInt(SI))).toBe(0n);
      expect([sel(), upcall()]).toEqual([0n, 0]); // not before the vCPU runs
      enter();
      expect([sel(), upcall()]).toEqual([1n << BigInt(Math.floor(70 / mode)), 1]);
      expect(kvmVcpuAttrs(v).heldSel).toBe(0n);
    }
  });

  it('a kick spent while vcpu_info was away: VMM-served hypercalls deliver nothing, the next in-kernel exit does', () => {
    for (const mode of [64, 32] as const) {
      const { d, v, sel, upcall, enter } = setup('kvm', mode);
      kvmXenSetAttr(d, v, 'vcpu_info', KVM_XEN_INVALID);
      kvmRaisePort(v, 70);
      enter(); // the kick cancels this entry; delivery fails without vcpu_info; the kick is spent
      expect([sel(), upcall()]).toEqual([0n, 0]);
      kvmXenSetAttr(d, v, 'vcpu_info', BigInt(SI));
      enter(); // no kick, a userspace exit: the guest runs on with the bit held
      enter();
      expect([sel(), upcall()]).toEqual([0n, 0]);
      expect(kvmVcpuAttrs(v).heldSel).not.toBe(0n);
      kvmRaisePort(v, 70); // already pending: no new bit held, no kick
      enter();
      expect([sel(), upcall()]).toEqual([0n, 0]);
      expect(takeUpcalls(v).vectors).toEqual([]); // the guest halts to wait: KVM delivers at that exit
      expect([sel(), upcall()]).toEqual([1n << BigInt(Math.floor(70 / mode)), 1]);
      expect(kvmVcpuAttrs(v).heldSel).toBe(0n);
    }
  });

  it('a hypercall KVM answers itself (no INTERCEPT_HCALL) is an in-kernel exit: it delivers what was held', () => {
    const { d, v, sel, upcall, enter } = setup('kvm');
    kvmXenSetAttr(d, v, 'vcpu_info', KVM_XEN_INVALID);
    kvmRaisePort(v, 5);
    enter(); // the kick spent without a vcpu_info
    kvmXenSetAttr(d, v, 'vcpu_info', BigInt(SI));
    enter();
    expect([sel(), upcall()]).toEqual([0n, 0]);
    expect(kvmSetHvmConfig(d, { flags: 0n, blobGpa: 0, blobPages: 0 })).toBe(0n);
    expect(enter().ret).toBe(-1000n);
    expect([sel(), upcall()]).toEqual([1n, 1]);
  });

  it('so is a SCHEDOP_yield, which KVM serves in-kernel', () => {
    const { m, d, v, sel, upcall, enter } = setup('kvm');
    kvmXenSetAttr(d, v, 'vcpu_info', KVM_XEN_INVALID);
    kvmRaisePort(v, 5);
    enter();
    kvmXenSetAttr(d, v, 'vcpu_info', BigInt(SI));
    enter();
    expect([sel(), upcall()]).toEqual([0n, 0]);
    expect(hypercall(m, v, { rax: BigInt(HYPERVISOR.sched_op), rdi: 0n, rsi: 0n }).ret).toBe(0n);
    expect([sel(), upcall()]).toEqual([1n, 1]);
  });

  it('the guest taking its upcalls is an entry too: the held selector comes with the per-vCPU vector', () => {
    const { d, v, sel, upcall } = setup('kvm');
    expect(kvmXenSetUpcallVector(v, 0xf3n)).toBe(0n);
    kvmXenSetAttr(d, v, 'vcpu_info', KVM_XEN_INVALID);
    kvmRaisePort(v, 5);
    expect(takeUpcalls(v).vectors).toEqual([]);
    kvmXenSetAttr(d, v, 'vcpu_info', BigInt(SI));
    expect(takeUpcalls(v).vectors).toEqual([0xf3]);
    expect([sel(), upcall()]).toEqual([1n, 0]); // the handler cleared the flag
  });

  it('Xen\'s model has no such state: the selector is written at once', () => {
    const { v, sel, upcall } = setup('xen');
    kvmVcpuAttrs(v).vcpuInfoOff = true; // never set on Xen; ignored there
    expect(kvmRaisePort(v, 3)).toBe(true);
    expect([sel(), upcall()]).toEqual([1n, 1]);
  });

  it('delivers every held word once, whatever ports were raised', () => {
    fc.assert(fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 4095 }), { minLength: 1, maxLength: 30 }), (ports) => {
      const { d, v, sel, upcall, enter } = setup('kvm');
      kvmXenSetAttr(d, v, 'vcpu_info', KVM_XEN_INVALID);
      for (const p of ports) kvmRaisePort(v, p);
      kvmXenSetAttr(d, v, 'vcpu_info', BigInt(SI));
      enter();
      const words = new Set(ports.map((p) => Math.floor(p / 64)));
      expect(sel()).toBe([...words].reduce((a, w) => a | (1n << BigInt(w)), 0n));
      expect(upcall()).toBe(1);
    }));
  });
});
