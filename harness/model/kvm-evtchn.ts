// model-kvm: KVM's own event-channel table (KVM_XEN_ATTR_TYPE_EVTCHN) and the
// EVTCHNOP_send it serves from it in-kernel. Source: linux arch/x86/kvm/xen.c,
// kvm_xen_setattr_evtchn, kvm_xen_eventfd_assign / _update / _deassign / _reset and
// kvm_xen_hcall_evtchn_send (the same rules in 6.1 and 6.12). An eventfd target is one of
// the VMM's: a counter per send port, which a send bumps (eventfd_signal) and a read takes.
import type { Domain, Vcpu } from './domain.js';
import { channel, ECS, evtchnState, newChannel, type Channel } from './evtchn.js';
import { kvmVcpuAttrs } from './kvm-vcpu.js';

/** KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL (kept here: evtchn.ts imports this module). */
const KVM_XEN_PRIO_2LEVEL = 0xffffffffn;

export const KVM_XEN_EVTCHN_FLAG = { DEASSIGN: 1n, UPDATE: 2n, RESET: 4n } as const;
export const EVTCHNSTAT = { closed: 0n, unbound: 1n, interdomain: 2n, pirq: 3n, virq: 4n, ipi: 5n } as const;

export interface KvmEvtchnEntry {
  type: bigint;
  /** The port raised; 0 for an eventfd target. */
  port: number;
  vcpu: number;
  /** The VMM's eventfd KVM signals instead (port 0). */
  eventfd?: { count: bigint };
}
const tables = new WeakMap<Domain, Map<number, KvmEvtchnEntry>>();
/** The eventfds the VMM made for send ports (they outlive KVM's entries: the VMM holds them). */
const eventfds = new WeakMap<Domain, Map<number, { count: bigint }>>();

/** The VMM reads its eventfd of a send port: the count since the last read (then 0), or null if it made none. */
export function kvmEventfdRead(d: Domain, sendPort: number): bigint | null {
  const e = eventfds.get(d)?.get(sendPort);
  if (!e) return null;
  const c = e.count;
  e.count = 0n;
  return c;
}

function table(d: Domain): Map<number, KvmEvtchnEntry> {
  let t = tables.get(d);
  if (!t) tables.set(d, (t = new Map()));
  return t;
}

/** max_evtchn_port(): the 2-level limit of KVM's latched width. */
function maxPort(d: Domain): bigint {
  return d.width === 64 ? 4096n : 1024n;
}

const EINVAL = -22n;
const ENOENT = -2n;
const EEXIST = -17n;
const EBADF = -9n;

export interface KvmEvtchnAttr {
  flags: bigint;
  sendPort: bigint;
  type: bigint;
  port: bigint;
  vcpu: bigint;
  priority: bigint;
  /** Interdomain with port 0: 1 = a fresh eventfd of the VMM's, negative = an invalid descriptor (0 or absent: none). */
  eventfd?: bigint;
}

/** KVM_XEN_HVM_SET_ATTR(KVM_XEN_ATTR_TYPE_EVTCHN) with port delivery: 0 or a negative errno. */
export function kvmEvtchnSetattr(d: Domain, a: KvmEvtchnAttr): bigint {
  const t = table(d);
  if (a.flags === 0n && a.eventfd && a.eventfd > 0n) {
    // The VMM makes a new eventfd for the send port before it asks, whatever KVM answers.
    let fds = eventfds.get(d);
    if (!fds) eventfds.set(d, (fds = new Map()));
    fds.set(Number(a.sendPort), { count: 0n });
  }
  if (a.flags === KVM_XEN_EVTCHN_FLAG.RESET) {
    t.clear();
    return 0n;
  }
  if (a.sendPort === 0n || a.sendPort >= maxPort(d)) return EINVAL;
  const send = Number(a.sendPort);
  if (a.flags === KVM_XEN_EVTCHN_FLAG.DEASSIGN) return t.delete(send) ? 0n : ENOENT;
  if (a.flags === KVM_XEN_EVTCHN_FLAG.UPDATE) {
    // kvm_xen_eventfd_update: only the target vCPU may change.
    const e = t.get(send);
    if (!e) return ENOENT;
    if (e.type !== a.type || e.port === 0 || BigInt(e.port) !== a.port || a.priority !== KVM_XEN_PRIO_2LEVEL) return EINVAL;
    e.vcpu = Number(a.vcpu);
    return 0n;
  }
  if (a.flags !== 0n) return EINVAL;
  // kvm_xen_eventfd_assign
  if (a.type === EVTCHNSTAT.ipi) {
    if (a.port !== a.sendPort) return EINVAL;
  } else if (a.type === EVTCHNSTAT.interdomain) {
    if (a.port === 0n) {
      // eventfd_ctx_fdget: a descriptor that is not an open eventfd
      const fd = eventfds.get(d)?.get(send);
      if (!fd || !a.eventfd || a.eventfd < 0n) return EBADF;
      if (t.has(send)) return EEXIST;
      t.set(send, { type: a.type, port: 0, vcpu: 0, eventfd: fd });
      return 0n;
    }
    if (a.port >= maxPort(d)) return EINVAL;
  } else {
    return EINVAL;
  }
  if (a.priority !== KVM_XEN_PRIO_2LEVEL) return EINVAL;
  if (t.has(send)) return EEXIST;
  t.set(send, { type: a.type, port: Number(a.port), vcpu: Number(a.vcpu) });
  return 0n;
}

/**
 * kvm_xen_hcall_evtchn_send: a port in KVM's table is raised in-kernel on its target
 * (pending bit, upcall unless masked) and the call returns 0; null when KVM leaves the
 * call to the VMM (port not in the table, or kvm_xen_set_evtchn fails: no such vCPU).
 */
export function kvmEvtchnSend(d: Domain, sendPort: number): bigint | null {
  const e = tables.get(d)?.get(sendPort);
  if (!e) return null;
  if (e.eventfd) {
    e.eventfd.count++;
    return 0n;
  }
  const v = d.vcpu(e.vcpu);
  if (!v || !kvmRaisePort(v, e.port)) return null;
  return 0n;
}

/**
 * kvm_xen_set_evtchn_fast: the 2-level pending bit of `port` for vCPU `v` (upcall unless
 * masked); false (-EINVAL) for a port beyond the latched width's limit.
 */
export function kvmRaisePort(v: Vcpu, port: number): boolean {
  const d = v.domain;
  if (BigInt(port) >= maxPort(d)) return false;
  evtchnState(d).ops.setPending(v, channel(d, port) ?? newChannel(port));
  return true;
}

/** KVM's table as the VMM sees it: send port -> delivery (for a VMM that mirrors it into KVM). */
export function kvmEvtchnEntries(d: Domain): Map<number, Readonly<KvmEvtchnEntry>> {
  return new Map([...(tables.get(d) ?? new Map<number, KvmEvtchnEntry>())].map(([k, e]) => [k, { ...e }]));
}

/**
 * What the VMM hands KVM when the guest binds a port, as QEMU does
 * (hw/i386/kvm/xen_evtchn.c): an IPI port is assigned to KVM so EVTCHNOP_send on it is
 * served in-kernel (an existing entry stays: QEMU ignores the -EEXIST); VIRQ_TIMER becomes
 * KVM's timer port (kvm_xen_set_vcpu_virq), so set_timer_op and the singleshot VCPUOPs
 * are served in-kernel too.
 */
export function kvmOffloadBind(d: Domain, ch: Channel, isTimerVirq: boolean): void {
  if (ch.state === ECS.ipi && !table(d).has(ch.port)) {
    table(d).set(ch.port, { type: EVTCHNSTAT.ipi, port: ch.port, vcpu: ch.notifyVcpu });
  } else if (ch.state === ECS.virq && isTimerVirq) {
    const v = d.vcpu(ch.notifyVcpu);
    if (v) kvmVcpuAttrs(v).timerPort = BigInt(ch.port);
  }
}

/**
 * And what it takes back when the port closes (close_port): an IPI port is deassigned;
 * closing VIRQ_TIMER gives KVM timer port 0, which stops KVM's timer.
 */
export function kvmOffloadClose(d: Domain, ch: Channel, isTimerVirq: boolean, stopTimer: (v: Vcpu) => void): void {
  if (ch.state === ECS.ipi) {
    table(d).delete(ch.port);
  } else if (ch.state === ECS.virq && isTimerVirq) {
    const v = d.vcpu(ch.notifyVcpu);
    if (v && kvmVcpuAttrs(v).timerPort === BigInt(ch.port)) {
      kvmVcpuAttrs(v).timerPort = 0n;
      stopTimer(v);
    }
  }
}

/**
 * A GSI routed to an event channel (kvm_xen_setup_evtchn) and raised through an irqfd
 * (kvm_arch_set_irq_inatomic, or evtchn_set_fn from the deferred injection): the route
 * refuses a priority other than 2-level (-EINVAL) but, on purpose, not a port past the
 * limit (so a migrated routing table needs no ordering against the long-mode flag); such
 * an event is dropped when raised (kvm_xen_set_evtchn_fast). `vcpu` is KVM's vCPU id.
 */
export function kvmIrqRouteSend(d: Domain, port: bigint, vcpu: bigint, priority: bigint): bigint {
  if (priority !== KVM_XEN_PRIO_2LEVEL) return EINVAL;
  const v = d.vcpu(Number(vcpu));
  if (v && port < maxPort(d)) kvmRaisePort(v, Number(port));
  return 0n;
}
