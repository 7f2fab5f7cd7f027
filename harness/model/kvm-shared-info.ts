// model-kvm: where KVM's shared_info is and what KVM writes into it itself: the
// wallclock of kvm_xen_shared_info_init, and the width it latches (long_mode).
// Source: linux arch/x86/kvm/xen.c (kvm_xen_shared_info_init, kvm_xen_hvm_set_attr,
// kvm_xen_write_hypercall_page); xen/arch/x86/hvm/hvm.c (hvm_latch_shinfo_size).
import { modelHooks, type Domain } from './domain.js';
import { SHARED_INFO, type Width } from './memory-layout.js';
import { versionBegin, versionEnd } from './time.js';

/**
 * Where the VMM last pointed KVM itself (kvm.xen_set_attr), by guest address or by host
 * address (`hva`: the guest page that host address maps); null = deactivated. Until then
 * KVM's values follow the model's Xen state, which the VMM keeps KVM told of.
 */
export interface Placed {
  gpa: bigint | null;
  hva: boolean;
}
export const sharedInfoPlaced = new WeakMap<Domain, Placed>();

/** Where KVM's shared_info is: where the VMM last pointed it, else the model's placement. */
export function kvmSharedInfoGpa(d: Domain): number | null {
  const p = sharedInfoPlaced.get(d);
  if (p) return p.gpa === null ? null : Number(p.gpa);
  return d.sharedInfoGpa;
}

/**
 * kvm_xen_shared_info_init (arch/x86/kvm/xen.c): KVM rewrites the wallclock at the
 * latched layout's offsets of the page, wc_version made odd, then even (two more than it
 * was). The time written is the host's, which the model does not know: only the version is
 * modelled. Where the kernel does it for the VMM layer (kernelInitsSharedInfo) the layer
 * leaves it alone.
 */
export function kvmSharedInfoInit(d: Domain, gpa: number | null = kvmSharedInfoGpa(d)): void {
  if (gpa === null || d.kernelInitsSharedInfo || d.model.flavor !== 'kvm') return;
  const at = gpa + SHARED_INFO[d.width].fields.wc_version.offset;
  if (!d.memory.contains(at, 4)) return;
  d.memory.setU32(at, versionEnd(versionBegin(d.memory.u32(at))));
}

// The VMM hands KVM every shared_info placement (KVM_XEN_ATTR_TYPE_SHARED_INFO), and KVM
// initialises the page each time.
modelHooks.sharedInfoPlaced.push((d, gpa) => kvmSharedInfoInit(d, gpa));

/**
 * The width KVM latches (kvm->arch.xen.long_mode: shared_info, vcpu_info and the 2-level
 * selector words are laid out by it), set by the VMM (KVM_XEN_ATTR_TYPE_LONG_MODE) or by
 * the guest's hypercall-page MSR write from its current mode (kvm_xen_write_hypercall_page),
 * as Xen latches it (hvm_latch_shinfo_size). From Linux 6.7 the attribute always, and the
 * MSR write when the width changes, re-initialise shared_info (its wallclock) in the new
 * layout; 6.1 only latches.
 */
export function kvmLatchWidth(d: Domain, width: Width, viaAttr: boolean): void {
  const changed = d.width !== width;
  d.width = width;
  if (viaAttr || changed) kvmSharedInfoInit(d);
}

