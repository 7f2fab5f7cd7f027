// HYPERVISOR_hvm_op, the parts that choose how event upcalls reach an HVM
// vCPU: HVMOP_set_evtchn_upcall_vector (per-vCPU LAPIC vector, edge-like) and
// HVM_PARAM_CALLBACK_IRQ (domain-wide GSI / PCI INTx line for vCPU 0, or a
// callback vector offered on every entry while evtchn_upcall_pending is set).
// Sources: xen/arch/x86/hvm/hvm.c (do_hvm_op, hvmop_set_evtchn_upcall_vector,
// hvmop_set_param, hvm_set_param, hvmop_get_param, hvm_latch_shinfo_size),
// xen/arch/x86/hvm/irq.c (hvm_set_callback_via, hvm_assert_evtchn_irq),
// xen/include/public/hvm/{hvm_op.h,params.h}.

import { err } from './errno.js';
import { DOMID_SELF, type Domain, type Vcpu } from './domain.js';
import { HYPERVISOR, registerHypercalls, type HypercallContext } from './hypercall.js';
import { hvmDelivery, upcallAssertHooks } from './evtchn.js';
import { latchSharedInfoLayout } from './time.js';
import { kvmLatchWidth } from './kvm-shared-info.js';

export const HVMOP = { set_param: 0, get_param: 1, set_evtchn_upcall_vector: 23 } as const;
export const HVM_PARAM = { CALLBACK_IRQ: 0 } as const;
/** HVM_NR_PARAMS of current x86 Xen (public/hvm/params.h). */
export const HVM_NR_PARAMS = 39;
/** HVMIRQ_callback_* (asm/hvm/irq.h): type field of CALLBACK_IRQ (bits 63:56) + 1. */
export const CALLBACK = { none: 0, gsi: 1, pci_intx: 2, vector: 3 } as const;

interface HvmDomain {
  callbackType: number;
  callbackRaw: bigint;
}

export interface HvmVcpu {
  /** Per-vCPU upcall vector, 0 = none. */
  upcallVector: number;
  /** Vectors injected into the LAPIC for event upcalls (per-vCPU vector mode). */
  vectorInjections: number;
  lastVector: number;
  /**
   * Per-vCPU upcall vectors injected and not yet taken by the guest: the LAPIC's
   * IRR, one bit per vector, so a vector injected twice before the guest takes it
   * is taken once (xen/arch/x86/hvm/vlapic.c, vlapic_set_irq: test_and_set_bit).
   */
  irr: Set<number>;
}

const doms = new WeakMap<Domain, HvmDomain>();
const vcpus = new WeakMap<Vcpu, HvmVcpu>();

function hvmDomain(d: Domain): HvmDomain {
  let s = doms.get(d);
  if (!s) {
    s = { callbackType: CALLBACK.none, callbackRaw: 0n };
    doms.set(d, s);
  }
  return s;
}

export function hvmVcpu(v: Vcpu): HvmVcpu {
  let s = vcpus.get(v);
  if (!s) {
    s = { upcallVector: 0, vectorInjections: 0, lastVector: 0, irr: new Set() };
    vcpus.set(v, s);
  }
  return s;
}

/** hvm_assert_evtchn_irq: per-vCPU vector first, else the domain's callback via. */
function assertEvtchnIrq(v: Vcpu): void {
  const hv = hvmVcpu(v);
  if (hv.upcallVector !== 0) {
    hv.vectorInjections++;
    hv.lastVector = hv.upcallVector;
    hv.irr.add(hv.upcallVector);
  }
  // Callback vector / GSI / INTx are level-like: see callbackAsserted().
}

/**
 * Whether the domain-wide callback is asserted for this vCPU now: with the
 * callback vector, while its evtchn_upcall_pending is set; with a GSI or INTx
 * line, only for vCPU 0 (hvm_set_callback_irq_level). Never with a per-vCPU vector.
 */
export function callbackAsserted(v: Vcpu): boolean {
  if (hvmVcpu(v).upcallVector !== 0) return false;
  const t = hvmDomain(v.domain).callbackType;
  const vi = v.vcpuInfoAddress();
  const pending = vi !== null && v.domain.memory.u8(vi) !== 0;
  if (t === CALLBACK.vector) return pending;
  if (t === CALLBACK.gsi || t === CALLBACK.pci_intx) {
    const v0 = v.domain.vcpus[0];
    const vi0 = v0.vcpuInfoAddress();
    return v.id === 0 && vi0 !== null && v.domain.memory.u8(vi0) !== 0;
  }
  return false;
}

/**
 * hvm_local_events_need_delivery (xen/arch/x86/hvm/irq.c): an interrupt the vCPU would
 * take now. For event channels that is the callback asserted (vector type while
 * evtchn_upcall_pending is set; a GSI or INTx line on vCPU 0) or a per-vCPU upcall vector
 * waiting in the local APIC; the test guest runs its calls with interrupts on, so nothing
 * is blocked. Without a callback a pending upcall is not an event to deliver.
 */
export function hvmEventsNeedDelivery(v: Vcpu): boolean {
  return callbackAsserted(v) || hvmVcpu(v).irr.size > 0;
}

/** The domain's callback vector (HVM_PARAM_CALLBACK_IRQ of the vector type), or null. */
export function callbackVector(d: Domain): number | null {
  const s = hvmDomain(d);
  return s.callbackType === CALLBACK.vector ? Number(s.callbackRaw & 0xffn) : null;
}

upcallAssertHooks.push(assertEvtchnIrq);
hvmDelivery.needed = hvmEventsNeedDelivery;

function setUpcallVector(ctx: HypercallContext, arg: bigint): number {
  const a = ctx.view(arg, 8);
  if (!a) return err('EFAULT');
  const vector = a.u8(4);
  if (vector < 0x10) return err('EINVAL');
  const v = ctx.domain.vcpu(a.u32(0));
  if (!v) return err('ENOENT');
  hvmVcpu(v).upcallVector = vector;
  // Xen asserts at once, covering an upcall raised before the vector was set.
  assertEvtchnIrq(v);
  return 0;
}

function paramDomain(ctx: HypercallContext, domid: number): Domain | number {
  const d = domid === DOMID_SELF ? ctx.domain : ctx.model.domain(domid);
  if (!d) return err('ESRCH');
  if (d !== ctx.domain && !ctx.domain.privileged) return err('EPERM');
  return d;
}

function setParam(ctx: HypercallContext, arg: bigint): number {
  // struct xen_hvm_param { domid u16@0; index u32@4; value u64@8 } (16 bytes in both ABIs)
  const a = ctx.view(arg, 16);
  if (!a) return err('EFAULT');
  const d = paramDomain(ctx, a.u16(0));
  if (typeof d === 'number') return d;
  const index = a.u32(4);
  const value = a.u64(8);
  if (index >= HVM_NR_PARAMS) return err('EINVAL');
  if (index !== HVM_PARAM.CALLBACK_IRQ) return err('ENOSYS'); // other params are not modelled
  const s = hvmDomain(d);
  let type = Number((value >> 56n) & 0xffn) + 1;
  if ((type === CALLBACK.gsi && value === 0n) || type > CALLBACK.vector) type = CALLBACK.none;
  s.callbackType = type;
  s.callbackRaw = value;
  // hvm_latch_shinfo_size: the caller's mode latches the shared_info layout. On KVM the
  // VMM tells KVM (QEMU's handle_set_param: xen_set_long_mode, KVM_XEN_ATTR_TYPE_LONG_MODE,
  // after every HVM_PARAM_CALLBACK_IRQ), which re-initialises shared_info in that layout.
  if (d === ctx.domain) {
    if (d.model.flavor === 'kvm') kvmLatchWidth(d, ctx.vcpu.mode, true);
    else latchSharedInfoLayout(d, ctx.vcpu.mode);
  }
  return 0;
}

function getParam(ctx: HypercallContext, arg: bigint): number {
  const a = ctx.view(arg, 16);
  if (!a) return err('EFAULT');
  const d = paramDomain(ctx, a.u16(0));
  if (typeof d === 'number') return d;
  const index = a.u32(4);
  if (index >= HVM_NR_PARAMS) return err('EINVAL');
  if (index !== HVM_PARAM.CALLBACK_IRQ) return err('ENOSYS');
  a.setU64(8, hvmDomain(d).callbackRaw);
  return a.commit() ? 0 : err('EFAULT');
}

export function hvmOp(ctx: HypercallContext, args: bigint[]): number {
  // do_hvm_op(unsigned long op, ...) compares the whole register.
  if (args[0] > 0xffffffffn) return err('ENOSYS');
  const op = Number(args[0]);
  switch (op) {
    case HVMOP.set_param: return setParam(ctx, args[1]);
    case HVMOP.get_param: return getParam(ctx, args[1]);
    case HVMOP.set_evtchn_upcall_vector: return setUpcallVector(ctx, args[1]);
  }
  return err('ENOSYS');
}

registerHypercalls({ [HYPERVISOR.hvm_op]: hvmOp });
