// model-kvm: the per-vCPU state KVM keeps for a Xen guest that no Xen hypercall writes
// directly: the Xen vCPU id and the in-kernel timer's event channel. Kept apart from
// kvm-attr.ts so the timer and event-channel code can read it without import cycles.
// Source: linux arch/x86/kvm/xen.c (kvm_xen_init_vcpu, kvm_xen_vcpu_set_attr,
// kvm_xen_timer_enabled); virt/kvm/kvm_main.c (kvm_vm_ioctl_create_vcpu).
import type { Vcpu } from './domain.js';

export interface KvmVcpuAttrs {
  vcpuId: bigint;
  /** vcpu->arch.xen.timer_virq: the port the in-kernel timer raises; 0 = KVM has no timer. */
  timerPort: bigint;
  /** The VMM took vcpu_info away from KVM (KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO all ones). */
  vcpuInfoOff: boolean;
  /**
   * vcpu->arch.xen.evtchn_pending_sel: selector bits KVM holds while it cannot reach
   * vcpu_info, flushed into it at the vCPU's next entry (kvm_xen_inject_pending_events).
   */
  heldSel: bigint;
  /**
   * KVM_REQ_UNBLOCK with the kick that came with a newly held bit: the vCPU's next entry
   * is cancelled and the bits are delivered then (vcpu_enter_guest: kvm_vcpu_exit_request;
   * vcpu_run: kvm_xen_inject_pending_events). Any entry consumes it, delivered or not.
   */
  kick: boolean;
  /** Whether the entry being made delivers the held bits (set by kvmEnterGuest for the entry hooks after it). */
  due: boolean;
}
const vcpuAttrs = new WeakMap<Vcpu, KvmVcpuAttrs>();

export function kvmVcpuAttrs(v: Vcpu): KvmVcpuAttrs {
  let a = vcpuAttrs.get(v);
  if (!a) {
    // kvm_xen_init_vcpu sets vcpu_id = vcpu_idx, but runs from kvm_arch_vcpu_create before
    // kvm_vm_ioctl_create_vcpu assigns vcpu_idx (virt/kvm/kvm_main.c, 6.1 and 6.12; seen
    // live on both): every vCPU would be Xen vCPU 0. The VMM sets each vCPU's id to its
    // index at start, as QEMU does (kvm_xen_init_vcpu in target/i386/kvm/xen-emu.c), so
    // a case starts with ids 0, 1, ... No timer.
    a = { vcpuId: BigInt(v.id), timerPort: 0n, vcpuInfoOff: false, heldSel: 0n, kick: false, due: false };
    vcpuAttrs.set(v, a);
  }
  return a;
}

/**
 * kvm_xen_timer_enabled: KVM serves set_timer_op and the singleshot VCPUOPs itself once
 * the VMM gave it a timer port; the timer then raises that port, whatever it is bound to.
 * 0 when the VMM keeps the timer (only the kvm flavour ever has one).
 */
export function kvmTimerPort(v: Vcpu): number {
  return v.domain.model.flavor === 'kvm' ? Number(vcpuAttrs.get(v)?.timerPort ?? 0n) : 0;
}

/** KVM holds a selector bit for this vCPU rather than write vcpu_info (kvm_xen_set_evtchn_fast). */
export function kvmHoldsSelector(v: Vcpu): boolean {
  return v.domain.model.flavor === 'kvm' && (vcpuAttrs.get(v)?.vcpuInfoOff ?? false);
}

/**
 * kvm_xen_set_evtchn_fast without a usable vcpu_info: the selector bit is held in-kernel,
 * and a bit that was not held yet kicks the vCPU (KVM_REQ_UNBLOCK).
 */
export function kvmHoldSelectorBit(v: Vcpu, word: number): void {
  const a = kvmVcpuAttrs(v);
  const bit = 1n << BigInt(word);
  if ((a.heldSel & bit) !== 0n) return;
  a.heldSel |= bit;
  a.kick = true;
}

/**
 * The vCPU is about to wait in the guest for its upcalls (evtchn.take_upcalls): it halts,
 * and KVM delivers what it holds at that in-kernel exit, as for a kick.
 */
export function kvmWaitExit(v: Vcpu): void {
  if (v.domain.model.flavor === 'kvm') kvmVcpuAttrs(v).kick = true;
}
