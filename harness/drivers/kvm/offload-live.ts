// What the kvm target's VMM layer hands KVM, as QEMU does (hw/i386/kvm/xen_evtchn.c):
// an IPI port the guest binds is assigned to KVM (KVM_XEN_ATTR_TYPE_EVTCHN), so its
// EVTCHNOP_send is served in-kernel, and taken back when the port closes; the port
// bound to VIRQ_TIMER becomes KVM's timer port (KVM_XEN_VCPU_ATTR_TYPE_TIMER), so
// set_timer_op and the singleshot VCPUOPs are served in-kernel. The VMM layer is the
// model with the kvm flavour, whose bind and close keep the record (model/kvm-evtchn.ts);
// this file turns each change of that record into the ioctl QEMU would issue.
import type { Domain } from '../../model/domain.js';
import { EVTCHNSTAT, kvmEvtchnEntries, KVM_XEN_EVTCHN_FLAG, type KvmEvtchnEntry } from '../../model/kvm-evtchn.js';
import { kvmVcpuAttrs } from '../../model/kvm-vcpu.js';
import { timerOf } from '../../model/timer.js';
import { KVM_XEN_PRIO_2LEVEL } from '../../model/kvm-attr.js';
import { DriverError } from '../../errors.js';
import type { GuestVm } from './addon.js';

type Entry = Readonly<KvmEvtchnEntry>;

export interface OffloadSnapshot {
  /** KVM's event-channel table as the VMM layer keeps it: send port -> delivery */
  ports: Map<number, Entry>;
  /** per vCPU: the timer port KVM should have */
  timers: bigint[];
  /** per vCPU: the guest's armed one-shot deadline (its own absolute time), 0 for none */
  deadlines: bigint[];
}

export function offloadSnapshot(d: Domain): OffloadSnapshot {
  return {
    ports: kvmEvtchnEntries(d),
    timers: d.vcpus.map((v) => kvmVcpuAttrs(v).timerPort),
    deadlines: d.vcpus.map((v) => BigInt.asUintN(64, timerOf(v).singleshot ?? 0n)),
  };
}

const same = (a: Entry | undefined, b: Entry | undefined): boolean =>
  a !== undefined && b !== undefined && a.type === b.type && a.port === b.port && a.vcpu === b.vcpu;

/** QEMU ignores KVM's refusals here (the call then stays with the VMM); so does this. */
function quietly(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof DriverError)) throw e;
  }
}

export function applyOffload(guest: GuestVm, before: OffloadSnapshot, after: OffloadSnapshot): void {
  for (const [port, e] of before.ports) {
    if (same(e, after.ports.get(port))) continue;
    quietly(() => guest.vm.xenSetAttr({
      type: 'evtchn', sendPort: port, evtchnType: Number(EVTCHNSTAT.ipi), flags: Number(KVM_XEN_EVTCHN_FLAG.DEASSIGN),
      deliver: { kind: 'port', port, vcpu: 0, priority: Number(KVM_XEN_PRIO_2LEVEL) },
    }));
  }
  for (const [port, e] of after.ports) {
    if (same(e, before.ports.get(port))) continue;
    quietly(() => guest.vm.xenSetAttr({
      type: 'evtchn', sendPort: port, evtchnType: Number(e.type), flags: 0,
      deliver: { kind: 'port', port: e.port, vcpu: e.vcpu, priority: Number(KVM_XEN_PRIO_2LEVEL) },
    }));
  }
  after.timers.forEach((port, i) => {
    if (port === before.timers[i] || i >= guest.vcpus.length) return;
    // kvm_xen_set_vcpu_timer as QEMU issues it (target/i386/kvm/xen-emu.c): with the
    // one-shot deadline the guest armed before, which KVM serves from now on (the VMM
    // layer never fires a timer it handed over). The deadline is the guest's own absolute
    // time, which is KVM's clock too.
    // When KVM already held a timer (a port the VMM gave it before), that timer is the
    // deadline: the VMM reads it back from KVM first (KVM_XEN_VCPU_ATTR_TYPE_TIMER), since
    // its own record went stale the moment KVM took the timer.
    const expiresNs = port === 0n ? 0n : before.timers[i] !== 0n ? kvmTimerExpires(guest, i) : after.deadlines[i] ?? 0n;
    quietly(() => guest.vcpus[i].xenSetAttr({ type: 'timer', port: Number(port), priority: Number(KVM_XEN_PRIO_2LEVEL), expiresNs }));
  });
}

/** KVM's armed deadline of vCPU i's timer (KVM_XEN_VCPU_ATTR_TYPE_TIMER), 0 if none or unreadable. */
function kvmTimerExpires(guest: GuestVm, i: number): bigint {
  try {
    const a = guest.vcpus[i].xenGetAttr('timer');
    return a.type === 'timer' ? BigInt(a.expiresNs) : 0n;
  } catch (e) {
    if (!(e instanceof DriverError)) throw e;
    return 0n;
  }
}
