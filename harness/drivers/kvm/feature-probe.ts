// Behaviour probes: kernel features that no KVM_CAP_XEN_HVM bit announces, found
// by running the test guest once. Each probe returns undefined when the kernel
// has the feature, or the reason it lacks it (used as the skip reason).

import { GuestVm, XEN_HVM_FLAG } from './addon.js';
import { GUEST_LAYOUT, type CommandResult } from './guest.js';

/** __HYPERVISOR_sched_op and SCHEDOP_poll (xen/include/public/xen.h, sched.h). */
const HYPERVISOR_sched_op = 29n;
const SCHEDOP_poll = 3n;
const EINVAL = -22n;

export type CompatPollObservation =
  | { kind: 'ret'; ret: bigint; servedBy: 'kernel' | 'vmm' }
  | { kind: 'failed'; what: string };

/**
 * What a 32-bit SCHEDOP_poll on one out-of-range port tells about the kernel.
 * Linux 6.1's kvm_xen_schedop_poll() returns "not handled" for !longmode and
 * kvm_xen_hcall_sched_op() falls through to SCHEDOP_yield: the guest gets 0 and
 * nothing is checked. Later kernels read struct compat_sched_poll and reject the
 * port with -EINVAL (arch/x86/kvm/xen.c).
 */
export function compatPollVerdict(o: CompatPollObservation): string | undefined {
  if (o.kind === 'failed') return `the 32-bit SCHEDOP_poll probe did not complete (${o.what})`;
  if (o.servedBy === 'vmm') return 'this kernel leaves a 32-bit guest\'s SCHEDOP_poll to the VMM (KVM_EXIT_XEN)';
  if (o.ret === EINVAL) return undefined;
  if (o.ret === 0n) {
    return 'this kernel answers a 32-bit guest\'s SCHEDOP_poll as SCHEDOP_yield (returns 0, reads no ports; Linux 6.1 kvm_xen_schedop_poll has no compat_sched_poll)';
  }
  return `a 32-bit SCHEDOP_poll on an out-of-range port returned ${o.ret}, neither -EINVAL (compat poll) nor 0 (yield)`;
}

/** Run the probe on a fresh 32-bit VM: one poll on port 0xffffffff, no timeout. */
export async function observeCompatPoll(vendor: 'intel' | 'amd'): Promise<CompatPollObservation> {
  let g: GuestVm;
  try {
    g = GuestVm.create({ vcpus: 1, mode: 32, xen: { flags: XEN_HVM_FLAG.INTERCEPT_HCALL | XEN_HVM_FLAG.EVTCHN_SEND } });
  } catch (e) {
    return { kind: 'failed', what: (e as Error).message };
  }
  try {
    // struct compat_sched_poll { u32 ports; u32 nr_ports; u64 timeout; } and its port array.
    const at = GUEST_LAYOUT.freeBase;
    const b = Buffer.alloc(32);
    b.writeUInt32LE(at + 16, 0);
    b.writeUInt32LE(1, 4);
    b.writeUInt32LE(0xffffffff, 16);
    g.vm.write(at, b);
    let vmm = false;
    const r = await g.run(0, [{ op: vendor === 'amd' ? 'vmmcall' : 'vmcall', rax: HYPERVISOR_sched_op, args: [SCHEDOP_poll, BigInt(at)] }], {
      timeoutMs: 10_000,
      onXen: () => {
        vmm = true;
        return -38n;
      },
    });
    const res: CommandResult | undefined = r.results[0];
    if (r.status !== 'done' || res?.status !== 'ok') return { kind: 'failed', what: `guest ${r.status}${res?.fault ? `, fault vector ${res.fault.vector}` : ''}` };
    return { kind: 'ret', ret: res.retSigned, servedBy: vmm ? 'vmm' : 'kernel' };
  } catch (e) {
    return { kind: 'failed', what: (e as Error).message };
  } finally {
    g.close();
  }
}
