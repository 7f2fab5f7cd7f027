// Steps only a VMM takes on KVM: its Xen attributes (KVM_XEN_HVM_*_ATTR,
// KVM_XEN_VCPU_*_ATTR), the send ports it hands to the kernel, irqfd routes to
// event channels and the hypercall configuration. They need
// flavor.kvm, so the fuzzer generates them on kvm and model-kvm only, where
// they reach the parts of arch/x86/kvm/xen.c no guest hypercall does.
// Values follow suites/kvm-xen/: the areas' own places (shared_info at 0x80000,
// gfn 0x80), misaligned ones, all ones (deactivate), and ports in use.
// Not generated: kvm.memslot_churn. After it, when KVM refreshes a vCPU's stale
// vcpu_info cache (and so writes the held selector) depends on the host: a clock update
// at the vCPU's next entry refreshes it (kvm_guest_time_update ->
// kvm_setup_guest_pvclock), and those come with migrations between host CPUs. The
// suites check the deterministic part (suites/kvm-xen/timer-attr-due.yaml).

import fc from 'fast-check';
import { KVM_XEN_GET_ATTRS, KVM_XEN_PRIO_2LEVEL } from '../model/kvm-attr.js';
import type { ArgValue } from './steps.js';
import { big, k, step, type Gen } from './step-gen.js';

const NONE = (1n << 64n) - 1n;
/** The setup's shared_info page (harness/runner/run-case.ts DEFAULTS) and the vCPU time copy the suites use. */
const SHARED_INFO = 0x80000n;
const TIME_INFO = 0x90000n;
/**
 * The hypercall configuration's pages: a two-page blob the VMM hands KVM (the fuzz setup's
 * granted frames, so its bytes are whatever the grants left there), and the page the
 * hypercall MSR is pointed at, away from the hypercall page the guest calls (setup.ts).
 */
const BLOB = 0x300000n;
const MSR_PAGE = 0x380000n;

/**
 * Optional KVM features some values need. kvm.shared_info_hva: the *_hva attributes
 * (Linux 6.9). runstate.update_flag: the runstate_update_flag attribute, and a runstate
 * area that crosses a page (both Linux 6.2).
 */
export const KVM_FEATURE_CAPS = ['kvm.shared_info_hva', 'runstate.update_flag'];

/**
 * Host ops: no CPL applies to them (steps.ts HOST_OPS). msr.write is the guest's half of
 * the hypercall configuration (the drivers write the MSR at CPL 0): it comes and goes
 * with kvm.xen_hvm_config (--no-vmm-ops leaves both out).
 */
export const KVM_HOST_OPS = [
  'kvm.xen_get_attr', 'kvm.xen_set_attr', 'kvm.xen_set_upcall_vector', 'kvm.xen_set_vcpu_id', 'kvm.xen_set_timer',
  'kvm.xen_evtchn_assign', 'kvm.xen_evtchn_update', 'kvm.xen_evtchn_deassign', 'kvm.xen_evtchn_reset', 'kvm.eventfd_read',
  'kvm.irqfd_send', 'kvm.xen_hvm_config', 'msr.write',
  'runstate.host_set_addr', 'runstate.host_set_current', 'runstate.host_set_data', 'runstate.host_adjust',
];

/** `area`: the page the fuzzer's vcpu_info and runstate areas go to (steps.ts FUZZ_FRAMES.area). */
export function kvmHostGenerators(
  area: number, port: fc.Arbitrary<bigint>, vcpu: fc.Arbitrary<bigint>, features: readonly string[] = KVM_FEATURE_CAPS,
): Array<{ weight: number; arbitrary: Gen }> {
  const AREA = BigInt(area);
  const hva = features.includes('kvm.shared_info_hva');
  const v62 = features.includes('runstate.update_flag');
  const setAttr = fc.oneof(
    // shared_info stays where it is: a VMM takes it from a running guest only on reset, and
    // after that no event can be delivered, which is what the suites' attr cases check
    // (suites/kvm-xen/attr-deactivate.yaml); generated here, it only hid other findings.
    fc.record({ attr: fc.constant('shared_info'), value: fc.constant(SHARED_INFO >> 12n) }),
    fc.record({ attr: fc.constant('vcpu_info'), value: fc.constantFrom(SHARED_INFO, SHARED_INFO + 64n, AREA + 0x40n, AREA + 2n, AREA + 0xfc0n, NONE) }),
    fc.record({ attr: fc.constant('vcpu_time_info'), value: fc.constantFrom(TIME_INFO, AREA + 0x80n, NONE) }),
    ...(hva ? [
      fc.record({ attr: fc.constant('shared_info_hva'), value: fc.constantFrom(SHARED_INFO, SHARED_INFO + 0x10n, 0n) }),
      fc.record({ attr: fc.constant('vcpu_info_hva'), value: fc.constantFrom(SHARED_INFO, SHARED_INFO + 2n, 0n) }),
    ] : []),
  ) as fc.Arbitrary<Record<string, ArgValue>>;
  const getAttrs = KVM_XEN_GET_ATTRS.filter((a) => (hva || !a.endsWith('_hva')) && (v62 || a !== 'runstate_update_flag'));

  /** A whole runstate: entry time 0 and times adding up (accepted), or not adding up (-EINVAL). */
  const runstateData = fc.record({
    state: big(fc.constantFrom(0, 1, 2, 3, 4)),
    state_entry_time: fc.constant(0n),
    time_running: fc.constantFrom(0n, 5n),
    time_runnable: fc.constant(0n),
    time_blocked: fc.constant(0n),
    time_offline: fc.constantFrom(0n, NONE - 4n),
  });
  const w = (weight: number, arbitrary: Gen) => ({ weight, arbitrary });
  const sendPort = big(fc.integer({ min: 0, max: 9 }));
  const flags = fc.constantFrom(
    k('KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL') | k('KVM_XEN_HVM_CONFIG_EVTCHN_SEND'),
    k('KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL') | k('KVM_XEN_HVM_CONFIG_HYPERCALL_MSR'),
  );
  return [
    w(3, step('kvm.xen_get_attr', fc.record({ attr: fc.constantFrom(...getAttrs) }))),
    w(3, step('kvm.xen_set_attr', setAttr)),
    w(1, step('kvm.xen_set_upcall_vector', fc.record({ vector: big(fc.constantFrom(0, 0x0f, 0xf3)) }))),
    w(1, step('kvm.xen_set_vcpu_id', fc.record({ id: fc.oneof(vcpu, big(fc.constantFrom(4096, 0x7fffffff))) }))),
    w(2, step('kvm.xen_set_timer', fc.record({ port, expires_ns: fc.constantFrom(0n, NONE, 1n << 49n) }))),
    w(2, step('kvm.xen_evtchn_assign', fc.oneof(
      fc.record({ send_port: sendPort, vcpu }),
      fc.record({ send_port: sendPort, eventfd: fc.constantFrom(1n, -1n) }),
      fc.record({ send_port: sendPort, type: fc.constant(k('EVTCHNSTAT_interdomain')), port, vcpu }),
      // Types KVM refuses (kvm_xen_eventfd_assign: only interdomain and ipi), a priority it lacks.
      fc.record({ send_port: sendPort, type: fc.constantFrom(k('EVTCHNSTAT_virq'), k('EVTCHNSTAT_unbound'), 9n), vcpu }),
      fc.record({ send_port: sendPort, vcpu, priority: fc.constant(1n) }),
    ) as fc.Arbitrary<Record<string, ArgValue>>)),
    w(1, step('kvm.xen_evtchn_update', fc.oneof(
      fc.record({ send_port: sendPort, vcpu }),
      // A type or port other than the registered one (kvm_xen_eventfd_update refuses the change).
      fc.record({ send_port: sendPort, type: fc.constant(k('EVTCHNSTAT_interdomain')), port, vcpu }),
    ) as fc.Arbitrary<Record<string, ArgValue>>)),
    w(1, step('kvm.xen_evtchn_deassign', fc.record({ send_port: sendPort }))),
    w(1, step('kvm.xen_evtchn_reset')),
    w(1, step('kvm.eventfd_read', fc.record({ send_port: sendPort }))),
    w(2, step('kvm.irqfd_send', fc.record({ port, vcpu, priority: fc.constantFrom(KVM_XEN_PRIO_2LEVEL, 1n) }))),
    w(1, step('kvm.xen_hvm_config', fc.oneof(
      fc.record({ flags }),
      // No INTERCEPT_HCALL: the MSR write copies a blob page (kvm_xen_write_hypercall_page)
      // and every hypercall is KVM's own (-KVM_ENOSYS) until a config intercepts again.
      fc.record({ flags: fc.constantFrom(0n, k('KVM_XEN_HVM_CONFIG_EVTCHN_SEND')), blob_gpa: fc.constant(BLOB), blob_pages: fc.constantFrom(1n, 2n) }),
      fc.record({ flags: fc.constant(k('KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL')), blob_gpa: fc.constant(BLOB), blob_pages: fc.constant(1n) }),
    ) as fc.Arbitrary<Record<string, ArgValue>>)),
    // Page 0 (KVM's stubs, or the blob's first page), 1 (#GP with KVM's own page) and 2 (past a
    // blob); in a guest whose width differs from KVM's latched one, the write switches it.
    w(1, step('msr.write', fc.record({ value: fc.constantFrom(MSR_PAGE, MSR_PAGE | 1n, MSR_PAGE | 2n) }))),
    // Away from where the guest puts its vcpu_info (offsets 0, 0x40, 0xfc0.. of the area page):
    // KVM writes the runstate at each entry with its own clock, which inside a vcpu_info span
    // would be compared byte for byte (found by the fuzzer itself on 6.12).
    w(2, step('runstate.host_set_addr', fc.record({ gpa: fc.constantFrom(AREA + 0x800n, AREA + 0x840n, ...(v62 ? [AREA + 0x1fe0n] : []), NONE, 0x7ffff000000n) }))),
    w(2, step('runstate.host_set_current', fc.record({ state: big(fc.constantFrom(0, 1, 2, 3, 4)) }))),
    w(1, step('runstate.host_set_data', runstateData)),
    w(1, step('runstate.host_adjust', runstateData.map((d) => ({ ...d, state: d.state === 4n ? NONE : d.state })))),
  ];
}
