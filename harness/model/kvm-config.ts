// model-kvm: KVM_XEN_HVM_CONFIG as the VMM may re-issue it, and what the hypercall MSR
// write does with it. Source: linux arch/x86/kvm/xen.c (kvm_xen_hvm_config,
// kvm_xen_write_hypercall_page); Documentation/virt/kvm/api.rst (KVM_XEN_HVM_CONFIG).
// Without KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL KVM does not write the hypercall page
// itself: the MSR write copies page N of a userspace blob (the VMM's memory; here the
// guest-physical address the VMM's mapping of it stands for), and every hypercall goes
// to KVM's own handler (arch/x86/kvm/x86.c: kvm_emulate_hypercall, __kvm_emulate_hypercall).
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

/** Whether KVM hands the guest's hypercalls to its Xen handler (kvm_xen_hypercall_enabled). */
export function kvmInterceptsHypercalls(d: Domain): boolean {
  const c = configs.get(d);
  return !c || (c.flags & KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL) !== 0n;
}

/** KVM's own hypercall numbers (include/uapi/linux/kvm_para.h) and errors it returns. */
const KVM_HC = { VAPIC_POLL_IRQ: 1n, KICK_CPU: 5n, CLOCK_PAIRING: 9n, SEND_IPI: 10n, SCHED_YIELD: 11n, MAP_GPA_RANGE: 12n } as const;
const KVM_ENOSYS = -1000n;
const KVM_EPERM = -1n;
const KVM_EOPNOTSUPP = -95n;

/** A KVM hypercall whose answer depends on the host (its clocksource, the APIC map): not modelled. */
export class KvmHypercallNotModelled extends Error {}

/**
 * KVM's own hypercall handler, for a guest whose VMM left INTERCEPT_HCALL out
 * (__kvm_emulate_hypercall): number in rax, arguments in rbx, rcx, rdx, rsi whatever the
 * width (32-bit: each cut to 32 bits); CPL > 0 is -KVM_EPERM. The PV features are all
 * offered while the VMM does not enforce its PV CPUID (guest_pv_has), so a kick and a
 * yield return 0; MAP_GPA_RANGE is -KVM_ENOSYS until the VMM enables its exit (xconf's
 * VMM never does); anything else is -KVM_ENOSYS.
 */
export function kvmOwnHypercall(nr: bigint, a: readonly bigint[], cpl: number): bigint {
  if (cpl !== 0) return KVM_EPERM;
  switch (nr) {
    case KVM_HC.VAPIC_POLL_IRQ:
    case KVM_HC.KICK_CPU:
    case KVM_HC.SCHED_YIELD:
      return 0n;
    case KVM_HC.CLOCK_PAIRING:
      // kvm_pv_clock_pairing: only the wall clock pairing; its answer reads the host's clock.
      if (a[1] !== 0n) return KVM_EOPNOTSUPP;
      throw new KvmHypercallNotModelled('KVM_HC_CLOCK_PAIRING of the wall clock depends on the host clocksource');
    case KVM_HC.SEND_IPI:
      throw new KvmHypercallNotModelled('KVM_HC_SEND_IPI depends on the APIC map');
    default:
      return KVM_ENOSYS;
  }
}
