// HYPERVISOR_physdev_op as an HVM domain reaches it. Sources: xen/arch/x86/hvm/hypercall.c
// (hvm_physdev_op: the commands an HVM guest may issue), xen/arch/x86/physdev.c
// (do_physdev_op, physdev_map_pirq, physdev_hvm_map_pirq, physdev_unmap_pirq),
// xen/include/xsm/dummy.h (XSM_DM_PRIV), xen/include/public/physdev.h (layouts).
//
// PIRQ emulation (XEN_X86_EMU_USE_PIRQ, has_pirq) is a property of the domain: the
// model-kvm flavour has it, as the HVM domain QEMU emulates does; the Xen flavour
// follows the xen target's PVH domains, which lack it, so every command is -ENOSYS there.
//
// What is modelled after the argument is read: the checks that do not depend on the
// host's interrupt layout. The model never maps or allocates a PIRQ, so EOI and
// irq_status_query find none (-EINVAL whatever nr_pirqs is) and unmapping one of its own
// is a no-op. Mapping a GSI once the callback vector is set, PHYSDEVOP_get_free_pirq
// (both pick a PIRQ from the host's GSI count) and the hardware domain's commands are not
// modelled: such a call ends the case with an error naming the Xen function.

import { err } from './errno.js';
import { DOMID_SELF } from './domain.js';
import { callbackVector, hvmVcpu } from './hvm-op.js';
import { HYPERVISOR, registerHypercalls, type HypercallContext } from './hypercall.js';

export const PHYSDEVOP = {
  IRQ_UNMASK_NOTIFY: 4, irq_status_query: 5, set_iopl: 6, set_iobitmap: 7, apic_read: 8,
  apic_write: 9, alloc_irq_vector: 10, free_irq_vector: 11, eoi: 12, map_pirq: 13,
  unmap_pirq: 14, manage_pci_add: 15, manage_pci_remove: 16, pirq_eoi_gmfn_v1: 17,
  restore_msi: 19, manage_pci_add_ext: 20, setup_gsi: 21, get_free_pirq: 23,
  pci_mmcfg_reserved: 24, pci_device_add: 25, pci_device_remove: 26, restore_msi_ext: 27,
  pirq_eoi_gmfn_v2: 28, dbgp_op: 29, prepare_msix: 30, release_msix: 31,
} as const;

export const MAP_PIRQ_TYPE = { MSI: 0, GSI: 1, UNKNOWN: 2, MSI_SEG: 3, MULTI_MSI: 4 } as const;

/** NR_HVM_DOMU_IRQS (asm/hvm/irq.h): the emulated IO-APIC's pins (VIOAPIC_NUM_PINS). */
const NR_HVM_DOMU_IRQS = 48;

/** sizeof the argument structs (public/physdev.h); compat only differs for map_pirq. */
const SIZE = { eoi: 4, irq_status_query: 8, unmap_pirq: 8, get_free_pirq: 8 } as const;
/** struct physdev_map_pirq: table_base is 8-aligned natively (40 bytes), 4-aligned in compat (36). */
const mapPirqSize = (compat: boolean): number => (compat ? 36 : 40);
const MAP = { domid: 0, type: 4, index: 8, pirq: 12, bus: 16, devfn: 20, entry_nr: 24 } as const;
const tableBaseOffset = (compat: boolean): number => (compat ? 28 : 32);

export class PhysdevNotModelled extends Error {}

/** has_pirq(d): the domain's emulation flags include XEN_X86_EMU_USE_PIRQ. */
export function hasPirq(ctx: HypercallContext): boolean {
  return ctx.model.config.flavor === 'kvm';
}

/** hvm_physdev_op: the commands an HVM domain may issue at all. */
export function physdevOp(ctx: HypercallContext, args: bigint[]): number {
  const cmd = Number(BigInt.asIntN(32, args[0]));
  const arg = args[1];
  switch (cmd) {
    case PHYSDEVOP.map_pirq: case PHYSDEVOP.unmap_pirq: case PHYSDEVOP.eoi:
    case PHYSDEVOP.irq_status_query: case PHYSDEVOP.get_free_pirq:
      if (!hasPirq(ctx)) return err('ENOSYS');
      break;
    case PHYSDEVOP.pci_mmcfg_reserved: case PHYSDEVOP.pci_device_add:
    case PHYSDEVOP.pci_device_remove: case PHYSDEVOP.dbgp_op:
      // is_hardware_domain: the model's domains never own the hardware.
      return err('ENOSYS');
    default:
      return err('ENOSYS');
  }
  switch (cmd) {
    case PHYSDEVOP.eoi: {
      // eoi.irq >= nr_pirqs, or no struct pirq for it: -EINVAL either way.
      return ctx.copyFrom(arg, SIZE.eoi) ? err('EINVAL') : err('EFAULT');
    }
    case PHYSDEVOP.irq_status_query: {
      // irq out of range, or neither a host IRQ nor an emulated one bound: -EINVAL.
      return ctx.copyFrom(arg, SIZE.irq_status_query) ? err('EINVAL') : err('EFAULT');
    }
    case PHYSDEVOP.unmap_pirq: {
      const s = ctx.view(arg, SIZE.unmap_pirq);
      if (!s) return err('EFAULT');
      return unmapPirq(ctx, s.u16(0));
    }
    case PHYSDEVOP.map_pirq:
      return mapPirq(ctx, arg);
    default: // PHYSDEVOP_get_free_pirq
      if (!ctx.copyFrom(arg, SIZE.get_free_pirq)) return err('EFAULT');
      throw new PhysdevNotModelled('PHYSDEVOP_get_free_pirq is not modelled (xen/arch/x86/irq.c get_free_pirq picks from the host\'s GSI count)');
  }
}

/** The domain physdev_{map,unmap}_pirq act on, or an errno (rcu_lock_domain_by_any_id, XSM_DM_PRIV). */
function otherDomain(ctx: HypercallContext, domid: number): number | undefined {
  if (!ctx.model.domain(domid)) return err('ESRCH');
  // xsm_{map,unmap}_domain_pirq(XSM_DM_PRIV): a device model's target or a control domain.
  if (!ctx.domain.privileged) return err('EPERM');
  return undefined;
}

/** physdev_unmap_pirq: for its own HVM domain with PIRQs, unmapping an unbound PIRQ does nothing. */
function unmapPirq(ctx: HypercallContext, domid: number): number {
  if (domid === DOMID_SELF) return 0;
  const e = otherDomain(ctx, domid);
  if (e !== undefined) return e;
  throw new PhysdevNotModelled('PHYSDEVOP_unmap_pirq by a privileged domain is not modelled (xen/arch/x86/irq.c unmap_domain_pirq)');
}

function mapPirq(ctx: HypercallContext, arg: bigint): number {
  const compat = ctx.compat;
  const s = ctx.view(arg, mapPirqSize(compat));
  if (!s) return err('EFAULT');
  let type = s.i32(MAP.type);
  const tableBase = compat ? BigInt(s.u32(tableBaseOffset(true))) | (BigInt(s.u32(tableBaseOffset(true) + 4)) << 32n)
    : s.u64(tableBaseOffset(false));
  if (type === MAP_PIRQ_TYPE.MULTI_MSI && tableBase !== 0n) return err('EINVAL'); // returned before the copy back
  if (type === MAP_PIRQ_TYPE.MSI_SEG) {
    type = MAP_PIRQ_TYPE.MSI;
    s.setU32(MAP.type, type);
  }
  const domid = s.u16(MAP.domid);
  let ret: number;
  if (domid === DOMID_SELF) {
    // is_hvm_pv_evtchn_domain: the vector callback, or vCPU 0's upcall vector (otherwise
    // the HVM IRQ logic would call back into itself).
    const v0 = ctx.domain.vcpu(0);
    if (callbackVector(ctx.domain) === null && !(v0 && hvmVcpu(v0).upcallVector)) ret = err('EINVAL');
    else if (type !== MAP_PIRQ_TYPE.GSI) ret = err('EINVAL'); // physdev_hvm_map_pirq: "not supported yet"
    else {
      const index = s.i32(MAP.index);
      if (index < 0 || index >= NR_HVM_DOMU_IRQS) ret = err('EINVAL');
      else throw new PhysdevNotModelled('PHYSDEVOP_map_pirq of an emulated GSI is not modelled (xen/arch/x86/physdev.c physdev_hvm_map_pirq picks a free PIRQ from the host\'s GSI count)');
    }
  } else {
    const e = otherDomain(ctx, domid);
    if (e === undefined) throw new PhysdevNotModelled('PHYSDEVOP_map_pirq by a privileged domain is not modelled (xen/arch/x86/physdev.c physdev_map_pirq)');
    ret = e;
  }
  // __copy_to_guest of the whole struct after physdev_map_pirq.
  if (!s.commit()) return err('EFAULT');
  return ret;
}

registerHypercalls({ [HYPERVISOR.physdev_op]: physdevOp });
