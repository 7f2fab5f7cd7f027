// model-kvm: KVM_XEN_HVM_CONFIG as the VMM may re-issue it, and what the hypercall MSR
// write does with it. Source: linux arch/x86/kvm/xen.c (kvm_xen_hvm_config,
// kvm_xen_write_hypercall_page); Documentation/virt/kvm/api.rst (KVM_XEN_HVM_CONFIG).
// Without KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL KVM does not write the hypercall page
// itself: the MSR write copies page N of a userspace blob (the VMM's memory; here the
// guest-physical address the VMM's mapping of it stands for).
import type { Domain } from './domain.js';

export const KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL = 1n << 1n;
export const KVM_XEN_HVM_CONFIG_EVTCHN_SEND = 1n << 5n;
/** The flags both 6.1 and 6.12 accept (6.12 adds PVCLOCK_TSC_UNSTABLE). */
const PERMITTED = KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL | KVM_XEN_HVM_CONFIG_EVTCHN_SEND;

export interface KvmHvmConfig {
  flags: bigint;
  /** Blob pages: where their bytes are and how many (0 = none). */
  blobGpa: number;
  blobPages: number;
}
/** Set once the VMM re-issues the config; before that KVM intercepts and writes its own page. */
const configs = new WeakMap<Domain, KvmHvmConfig>();

/** KVM_XEN_HVM_CONFIG: unknown flags, or a blob together with INTERCEPT_HCALL, are -EINVAL. */
export function kvmSetHvmConfig(d: Domain, c: KvmHvmConfig): bigint {
  if ((c.flags & ~PERMITTED) !== 0n) return -22n;
  if ((c.flags & KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL) !== 0n && c.blobPages !== 0) return -22n;
  configs.set(d, { ...c });
  return 0n;
}

/**
 * The hypercall MSR write when the VMM's blob supplies the page: page `index` of the blob,
 * or null for #GP (index beyond the blob). Undefined when KVM writes the page itself.
 */
export function kvmBlobPage(d: Domain, index: number): Uint8Array | null | undefined {
  const c = configs.get(d);
  if (!c || (c.flags & KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL) !== 0n) return undefined;
  if (index >= c.blobPages) return null;
  return d.memory.read(c.blobGpa + index * 4096, 4096);
}
