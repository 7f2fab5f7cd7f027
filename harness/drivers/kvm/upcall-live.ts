// Upcall vectors on a live KVM: the VMM's forwarding of the guest's choice of
// upcall vector to KVM, and the guest taking its upcalls (evtchn.take_upcalls).
//
// Forwarding, as QEMU does (target/i386/kvm/xen-emu.c, do_set_vcpu_callback_vector;
// hw/i386/kvm/xen_evtchn.c, xen_evtchn_set_callback_param): the VMM serves
// HVMOP_set_evtchn_upcall_vector and HVM_PARAM_CALLBACK_IRQ, then tells KVM the
// vector with KVM_XEN_VCPU_ATTR_TYPE_UPCALL_VECTOR (per vCPU; KVM injects it as a
// fixed LAPIC interrupt, kvm_xen_inject_vcpu_vector) or KVM_XEN_ATTR_TYPE_UPCALL_VECTOR
// (the domain's callback vector; KVM offers it while evtchn_upcall_pending is set,
// __kvm_xen_has_interrupt). Both in arch/x86/kvm/xen.c of Linux 6.1 and 6.12.

import type { Domain } from '../../model/domain.js';
import { callbackVector, hvmVcpu } from '../../model/hvm-op.js';
import type { GuestVm } from './addon.js';
import { blockAddress, HDR, UPCALL_FLAG } from './guest.js';

/** The upcall vectors the VMM layer's model holds for a domain. */
export interface UpcallVectors {
  vcpu: number[];
  /** The callback vector of HVM_PARAM_CALLBACK_IRQ, or null for another (or no) callback type. */
  callback: number | null;
}

export function upcallVectors(d: Domain): UpcallVectors {
  return { vcpu: d.vcpus.map((v) => hvmVcpu(v).upcallVector), callback: callbackVector(d) };
}

export type UpcallAttr = { kind: 'vcpu'; vcpu: number; vector: number } | { kind: 'vm'; vector: number };

/**
 * The KVM attributes to set after the VMM layer served a hypercall, from the model's
 * vectors before and after it. A callback that stops being a vector sets the VM
 * attribute to 0 (KVM: no callback vector), so KVM stops offering the old one.
 */
export function upcallForwarding(before: UpcallVectors, after: UpcallVectors): UpcallAttr[] {
  const out: UpcallAttr[] = [];
  after.vcpu.forEach((vector, vcpu) => {
    if (vector !== before.vcpu[vcpu]) out.push({ kind: 'vcpu', vcpu, vector });
  });
  if (after.callback !== before.callback) out.push({ kind: 'vm', vector: after.callback ?? 0 });
  return out;
}

export interface TakenLive {
  taken: number;
  lastVector: number;
  /** The wait ended at timeout_ms, not at `count`. */
  timedOut: boolean;
}

/**
 * The guest on `vcpu` enables interrupts and halts until its handler has run `count`
 * more times, or `timeoutMs` passes (the run is stopped with immediate_exit, the vCPU
 * put back at its entry, interrupts left disabled). The handler clears
 * evtchn_upcall_pending of `vcpuInfo` (if any) and EOIs, as Linux's does first.
 * Upcalls already in the LAPIC are taken at the first STI, so `count` reached
 * means the step also took every other one pending then (the queue ends with
 * IF set for several instructions before `irq off`).
 */
export async function takeUpcallsLive(guest: GuestVm, vcpu: number, vcpuInfo: number | null, count: number, timeoutMs: number): Promise<TakenLive> {
  guest.setUpcallWatch(vcpu, vcpuInfo ?? 0, UPCALL_FLAG.CLEAR_PENDING | UPCALL_FLAG.EOI);
  const before = guest.header(vcpu).upcallCount;
  const r = await guest.run(vcpu, [
    { op: 'irq', enable: true },
    { op: 'wait-upcall', count: (before + count) >>> 0 },
    { op: 'irq', enable: false },
  ], { timeoutMs });
  const timedOut = r.status !== 'done';
  if (timedOut) {
    guest.resetVcpu(vcpu);
    // The queue did not reach `irq off`: clear the guest's interrupt flag word so the
    // next batch starts with interrupts disabled (batch_start: RESTORE_IF).
    guest.vm.write(blockAddress(vcpu) + HDR.irqOn, Buffer.alloc(4));
  }
  const after = guest.header(vcpu).upcallCount;
  const taken = (after - before) >>> 0;
  const last = taken > 0 ? guest.upcalls(vcpu).at(-1)?.vector ?? 0 : 0;
  return { taken, lastVector: last, timedOut };
}
