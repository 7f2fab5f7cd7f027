// What a guest observes when it enables interrupts and takes its pending event
// upcalls: the vectors its handler runs for. The handler does what Linux's
// per-vCPU and callback-vector handlers do first (xen_hvm_evtchn_do_upcall ->
// __xen_evtchn_do_upcall: clear evtchn_upcall_pending, then EOI the LAPIC);
// it does not scan ports (evtchn.run_upcall does that).
//
// Which vectors are pending:
// - the domain's callback vector (HVM_PARAM_CALLBACK_IRQ, vector type) is
//   level-like: offered on every entry while the vCPU's evtchn_upcall_pending is
//   set (xen/arch/x86/hvm/irq.c, hvm_vcpu_has_pending_irq; Linux
//   arch/x86/kvm/xen.c, __kvm_xen_has_interrupt via kvm_cpu_has_extint). It is
//   checked before the LAPIC in both, and the handler's clear ends it;
// - a per-vCPU upcall vector is an edge into the LAPIC's IRR
//   (xen/arch/x86/hvm/vlapic.c, vlapic_set_irq; Linux kvm_xen_inject_vcpu_vector):
//   injected twice before the guest takes it, it is taken once.
// So a take sees at most one upcall per vector, highest LAPIC vector first.

import { enterGuest, type Vcpu } from './domain.js';
import { callbackAsserted, callbackVector, hvmVcpu } from './hvm-op.js';
import { kvmWaitExit } from './kvm-vcpu.js';

export interface TakenUpcalls {
  /** Vectors the handler ran for, in order. */
  vectors: number[];
}

/** Take every upcall pending for `v` now, as the guest with interrupts enabled does. */
export function takeUpcalls(v: Vcpu): TakenUpcalls {
  kvmWaitExit(v); // the guest halts to wait: KVM delivers what it held at that exit
  enterGuest(v); // the guest runs: what a kernel held for the vCPU comes now
  const vectors: number[] = [];
  const vi = v.vcpuInfoAddress();
  const handle = (vector: number) => {
    vectors.push(vector);
    if (vi !== null) v.domain.memory.setU8(vi, 0);
  };
  const cb = callbackVector(v.domain);
  if (cb !== null && callbackAsserted(v)) handle(cb);
  const hv = hvmVcpu(v);
  for (const vector of [...hv.irr].sort((a, b) => b - a)) handle(vector);
  hv.irr.clear();
  return { vectors };
}
