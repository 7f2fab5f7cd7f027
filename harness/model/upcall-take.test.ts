import { describe, expect, it } from 'vitest';
import { buildModel, Guest, SCRATCH } from './evtchn-test-util.js';
import { hypercall } from './hypercall-table.js';
import { HYPERVISOR } from './hypercall.js';
import { HVMOP, hvmVcpu } from './hvm-op.js';
import { hostSend } from '../ops/evtchn.js';
import { takeUpcalls } from './upcall-take.js';
import type { Vcpu, XenModel } from './domain.js';

function hvmOp(m: XenModel, v: Vcpu, op: number, bytes: number[]): bigint {
  m.domain(1)!.memory.write(SCRATCH, new Uint8Array(bytes));
  return hypercall(m, v, { rax: BigInt(HYPERVISOR.hvm_op), rdi: BigInt(op), rsi: BigInt(SCRATCH), rdx: 0n, r10: 0n, r8: 0n, r9: 0n }).ret;
}
const setVector = (m: XenModel, v: Vcpu, vcpu: number, vector: number) =>
  hvmOp(m, v, HVMOP.set_evtchn_upcall_vector, [vcpu, 0, 0, 0, vector, 0, 0, 0]);
/** HVM_PARAM_CALLBACK_IRQ = (2 << 56) | vector: {domid DOMID_SELF, index 0, value}. */
const setCallbackVector = (m: XenModel, v: Vcpu, vector: number) =>
  hvmOp(m, v, HVMOP.set_param, [0xf0, 0x7f, 0, 0, 0, 0, 0, 0, vector, 0, 0, 0, 0, 0, 0, 2]);
const upcallPending = (v: Vcpu) => v.domain.memory.u8(v.vcpuInfoAddress()!);

describe('evtchn.take_upcalls on the model', () => {
  it('takes the per-vCPU vector once however often it was injected before the take (LAPIC IRR)', () => {
    const m = buildModel({ vcpus: 2 });
    const d = m.domain(1)!;
    const [v0, v1] = d.vcpus;
    expect(setVector(m, v0, 1, 0xf3)).toBe(0n);
    // Xen's registration-time injection (hvmop_set_evtchn_upcall_vector).
    expect(takeUpcalls(v1).vectors).toEqual([0xf3]);
    const g = new Guest(m, v0);
    const a = g.bindIpi(1);
    const b = g.bindIpi(1);
    expect(hostSend(m, d, a, 1, 0)).toBe(0n);
    expect(upcallPending(v1)).toBe(1);
    // A second injection before the take (KVM injects on a 0->1 of a selector bit
    // even with evtchn_upcall_pending set) lands on the same IRR bit.
    void b;
    hvmVcpu(v1).irr.add(0xf3);
    expect(takeUpcalls(v1).vectors).toEqual([0xf3]);
    expect(upcallPending(v1)).toBe(0);
    expect(takeUpcalls(v1).vectors).toEqual([]);
    expect(takeUpcalls(v0).vectors).toEqual([]);
  });

  it('takes nothing for a masked port, and nothing while the selector bit is still set', () => {
    const m = buildModel({ vcpus: 2 });
    const d = m.domain(1)!;
    const [v0, v1] = d.vcpus;
    setVector(m, v0, 1, 0xe2);
    takeUpcalls(v1);
    const g = new Guest(m, v0);
    const a = g.bindIpi(1);
    const b = g.bindIpi(1);
    g.setMask(a, true);
    hostSend(m, d, a, 1, 0);
    expect(takeUpcalls(v1).vectors).toEqual([]);
    g.setMask(a, false);
    hostSend(m, d, b, 1, 0);
    expect(takeUpcalls(v1).vectors).toEqual([0xe2]);
    const c = g.bindIpi(1);
    hostSend(m, d, c, 1, 0);
    expect(takeUpcalls(v1).vectors).toEqual([]);
  });

  it('takes the domain callback vector while evtchn_upcall_pending is set, once, on that vCPU only', () => {
    const m = buildModel({ vcpus: 2 });
    const d = m.domain(1)!;
    const [v0, v1] = d.vcpus;
    expect(setCallbackVector(m, v0, 0xf1)).toBe(0n);
    expect(takeUpcalls(v1).vectors).toEqual([]);
    const p = new Guest(m, v0).bindIpi(1);
    hostSend(m, d, p, 1, 0);
    expect(takeUpcalls(v0).vectors).toEqual([]);
    expect(takeUpcalls(v1).vectors).toEqual([0xf1]);
    expect(upcallPending(v1)).toBe(0);
    expect(takeUpcalls(v1).vectors).toEqual([]);
  });
});
