// model-kvm: where KVM raises a 2-level event (kvm_xen_set_evtchn_fast): through its own
// caches of shared_info and vcpu_info, which may be stale (a memslot change), elsewhere
// than the guest registered them (the VMM moved them), or gone (deactivated).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { buildModel, Guest } from './evtchn-test-util.js';
import { evtchnState } from './evtchn.js';
import { ops2l } from './evtchn-2l.js';
import { kvmIrqRouteSend, kvmMemslotChurn, kvmNoteVcpuInfo, kvmRaisePort, kvmSharedInfoInactive, kvmVcpuInfoAt } from './kvm-evtchn.js';
import { kvmXenSetAttr, KVM_XEN_INVALID } from './kvm-attr.js';
import { kvmVcpuAttrs } from './kvm-vcpu.js';
import { hypercall, HYPERVISOR } from './hypercall.js';
import { hostSend } from '../ops/evtchn.js';
import { ops } from '../ops/index.js';
import type { Vcpu, XenModel } from './domain.js';

const SI = 0x80000;
const P2 = 0xffffffffn;

function setup(mode: 64 | 32 = 64, flavor: 'kvm' | 'xen' = 'kvm') {
  const m = buildModel({ flavor, mode, vcpus: 2 });
  const d = m.domain(1)!;
  const [v0, v1] = [d.vcpu(0)!, d.vcpu(1)!];
  const selOff = mode === 64 ? 8 : 4;
  const sel = (at: number) => (mode === 64 ? d.memory.u64(at + selOff) : BigInt(d.memory.u32(at + selOff)));
  const upcall = (at: number) => d.memory.u8(at);
  const pending = (port: number) => (d.memory.u8(SI + 0x800 + (port >> 3)) >> (port & 7)) & 1;
  return { m, d, v0, v1, sel, upcall, pending };
}

/** The vCPU runs guest code: a hypercall (XENVER_version) served on it. */
function enter(m: XenModel, v: Vcpu): void {
  hypercall(m, v, { rax: BigInt(HYPERVISOR.xen_version), rdi: 0n, rsi: 0n, rdx: 0n, r10: 0n, r8: 0n, r9: 0n, rbx: 0n, rcx: 0n, rbp: 0n });
}

describe('model-kvm: a memslot change leaves KVM\'s vcpu_info caches stale (kvm_gpc_check, kvm_xen_set_evtchn_fast)', () => {
  it('host_send after kvm.memslot_churn sets the pending bit and holds the selector until that vCPU enters (f12, f14)', () => {
    for (const mode of [64, 32] as const) {
      const { m, d, v0, v1, sel, upcall, pending } = setup(mode);
      const vi1 = SI + 64;
      expect(ops.get('kvm.memslot_churn')!.model!(m, undefined as never, { dom: d, vcpu: v0 } as never)).toEqual({ ret: 0n });
      expect(hostSend(m, d, 1, 1, 0)).toBe(0n);
      expect(pending(1)).toBe(1); // the slow path refreshed shared_info
      expect([sel(vi1), upcall(vi1)]).toEqual([0n, 0]);
      expect(kvmVcpuAttrs(v1).heldSel).toBe(1n);
      enter(m, v0); // another vCPU's entry delivers nothing
      expect([sel(vi1), upcall(vi1)]).toEqual([0n, 0]);
      enter(m, v1);
      expect([sel(vi1), upcall(vi1)]).toEqual([1n, 1]);
      // The refresh made the cache current: the next event goes straight in.
      expect(hostSend(m, d, 1 + mode, 1, 0)).toBe(0n);
      expect(sel(vi1)).toBe(3n);
    }
  });

  it('a word written before the churn stays, the one raised after is held (f15)', () => {
    const { m, d, v0, sel } = setup(64);
    hostSend(m, d, 2, 0, 0);
    kvmMemslotChurn(d);
    hostSend(m, d, 64, 0, 0);
    expect(sel(SI)).toBe(1n);
    enter(m, v0);
    expect(sel(SI)).toBe(3n);
  });

  it('an entry with nothing held does not refresh the cache: a later event is still held (f18)', () => {
    const { m, d, v1, sel, upcall } = setup(64);
    kvmMemslotChurn(d);
    enter(m, v1);
    expect(kvmIrqRouteSend(d, 0n, 1n, P2)).toBe(0n);
    expect([sel(SI + 64), upcall(SI + 64)]).toEqual([0n, 0]);
    enter(m, v1);
    expect([sel(SI + 64), upcall(SI + 64)]).toEqual([1n, 1]);
  });

  it('held bits the guest\'s handler never saw come at the next entry, after a scan that found nothing (f21)', () => {
    const { m, d, v1, upcall } = setup(64);
    kvmMemslotChurn(d);
    kvmIrqRouteSend(d, 4n, 1n, P2);
    hostSend(m, d, 1, 1, 0);
    expect(upcall(SI + 64)).toBe(0);
    enter(m, v1);
    expect(upcall(SI + 64)).toBe(1);
  });

  it('an event a hypercall raises on its own vCPU is delivered as the vCPU resumes the guest (vcpu_run, kvm-xen/evtchn-slow-path)', () => {
    const { m, d, v0, v1, sel, upcall } = setup(64);
    const g0 = new Guest(m, v0);
    const own = g0.bindIpi(0); // the VMM hands the IPI port to KVM: the send is served in-kernel
    const other = g0.bindIpi(1);
    kvmMemslotChurn(d);
    expect(g0.send(own)).toBe(0);
    expect([sel(SI), upcall(SI)]).toEqual([1n, 1]);
    expect(g0.send(other)).toBe(0); // vCPU 1 does not run: held
    expect([sel(SI + 64), upcall(SI + 64)]).toEqual([0n, 0]);
    enter(m, v1);
    expect([sel(SI + 64), upcall(SI + 64)]).toEqual([1n, 1]);
  });

  it('a cache made from a host address has no generation to check, and the VMM setting vcpu_info maps it afresh', () => {
    const { m, d, v0, v1, sel } = setup(64);
    kvmMemslotChurn(d, (v) => v === v1);
    hostSend(m, d, 1, 1, 0);
    expect(sel(SI + 64)).toBe(1n);
    kvmNoteVcpuInfo(v0, BigInt(SI), false);
    hostSend(m, d, 2, 0, 0);
    expect(sel(SI)).toBe(1n);
    void m;
  });

  it('whatever the raises, each vCPU gets every word once, at its own entry', () => {
    fc.assert(fc.property(fc.array(fc.record({ port: fc.integer({ min: 1, max: 4095 }), vcpu: fc.integer({ min: 0, max: 1 }) }), { minLength: 1, maxLength: 20 }), (raises) => {
      const { m, d, v0, v1, sel, upcall } = setup(64);
      kvmMemslotChurn(d);
      const seen = new Set<number>();
      const want = [0n, 0n];
      for (const r of raises) {
        hostSend(m, d, r.port, r.vcpu, 0);
        if (!seen.has(r.port)) want[r.vcpu] |= 1n << BigInt(Math.floor(r.port / 64));
        seen.add(r.port);
      }
      expect([sel(SI), sel(SI + 64)]).toEqual([0n, 0n]);
      enter(m, v0);
      enter(m, v1);
      expect([sel(SI), sel(SI + 64)]).toEqual(want);
      expect([upcall(SI), upcall(SI + 64)]).toEqual([want[0] ? 1 : 0, want[1] ? 1 : 0]);
    }));
  });
});

describe('model-kvm: KVM writes where the VMM pointed its caches (kvm_xen_vcpu_set_attr, kvm_xen_hvm_set_attr)', () => {
  it('a vcpu_info the VMM moved gets the selector and upcall, the guest\'s own stays as it was (f05, 6.1 f17 f18 f21)', () => {
    for (const mode of [64, 32] as const) {
      const { m, d, v0, sel, upcall } = setup(mode);
      kvmXenSetAttr(d, v0, 'vcpu_info', 0x5040n);
      kvmNoteVcpuInfo(v0, 0x5040n, false);
      expect(kvmVcpuInfoAt(v0)).toBe(0x5040);
      hostSend(m, d, 63, 0, 0);
      const w = BigInt(Math.floor(63 / mode));
      expect([sel(0x5040), upcall(0x5040)]).toEqual([1n << w, 1]);
      expect([sel(SI), upcall(SI)]).toEqual([0n, 0]);
    }
  });

  it('two vCPUs given one vcpu_info share its selector (f19, 6.1 f22)', () => {
    const { m, d, v1, sel, upcall } = setup(64);
    hostSend(m, d, 1, 0, 0);
    kvmNoteVcpuInfo(v1, BigInt(SI), true);
    hostSend(m, d, 2, 1, 0);
    expect([sel(SI), upcall(SI)]).toEqual([1n, 1]);
    expect([sel(SI + 64), upcall(SI + 64)]).toEqual([0n, 0]);
    hostSend(m, d, 1023, 1, 0);
    expect(sel(SI)).toBe(1n | (1n << 15n));
  });

  it('a held selector goes to the moved vcpu_info at the entry', () => {
    const { m, d, v0, sel, upcall } = setup(64);
    kvmMemslotChurn(d);
    kvmNoteVcpuInfo(v0, 0x5040n, false); // activation maps it afresh: nothing held
    kvmMemslotChurn(d);
    hostSend(m, d, 5, 0, 0);
    expect(sel(0x5040)).toBe(0n);
    enter(m, v0);
    expect([sel(0x5040), upcall(0x5040), sel(SI), upcall(SI)]).toEqual([1n, 1, 0n, 0]);
  });

  it('with shared_info deactivated KVM sets nothing (kvm_xen_set_evtchn: the refresh of an inactive cache fails, 6.12 f04)', () => {
    const { m, d, v0, sel, upcall, pending } = setup(64);
    expect(kvmSharedInfoInactive(d)).toBe(false);
    kvmXenSetAttr(d, v0, 'shared_info', KVM_XEN_INVALID);
    expect(kvmSharedInfoInactive(d)).toBe(true);
    hostSend(m, d, 3, 0, 0);
    expect(kvmRaisePort(v0, 4)).toBe(true);
    expect([pending(3), pending(4), sel(SI), upcall(SI)]).toEqual([0, 0, 0n, 0]);
  });

  it('Xen keeps its own 2-level ops: no cache, no hold', () => {
    const { m, d, v0, sel } = setup(64, 'xen');
    expect(evtchnState(d).ops).toBe(ops2l);
    kvmMemslotChurn(d);
    hostSend(m, d, 1, 0, 0);
    expect(sel(SI)).toBe(1n);
    expect(evtchnState(buildModel({ flavor: 'kvm' }).domain(1)!).ops).not.toBe(ops2l);
    void v0;
  });
});
