// model-kvm: KVM's own event-channel table (KVM_XEN_ATTR_TYPE_EVTCHN) and the
// EVTCHNOP_send it serves from it in-kernel. Source: linux arch/x86/kvm/xen.c,
// kvm_xen_setattr_evtchn, kvm_xen_eventfd_assign / _update / _deassign / _reset and
// kvm_xen_hcall_evtchn_send (the same rules in 6.1 and 6.12). An eventfd target is one of
// the VMM's: a counter per send port, which a send bumps (eventfd_signal) and a read takes.
import { modelHooks, type Domain, type Vcpu } from './domain.js';
import {
  channel, checkPollers, ECS, evtchnState, markEventsPending, newChannel, sharedInfoMem, testAndSetBit, testBit,
  upcallAssertHooks, vcpuEvtchn, type Channel,
} from './evtchn.js';
import { kvmHoldSelectorBit, kvmHoldsSelector, kvmVcpuAttrs } from './kvm-vcpu.js';
import { sharedInfoPlaced } from './kvm-shared-info.js';
import { SHARED_INFO } from './memory-layout.js';

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

// Where KVM raises a 2-level event itself (kvm_xen_set_evtchn_fast; the same in 6.1 and
// 6.12 for everything below but one thing: 6.1 refuses an event for a vCPU with no
// vcpu_info in KVM, a known divergence, expectations/kvm-6.1.yaml). KVM writes through
// its own caches of shared_info and of each vCPU's vcpu_info, which point where the VMM
// last told KVM (KVM_XEN_ATTR_TYPE_SHARED_INFO, KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO), not
// where the guest registered them with Xen; and it holds the selector bit in-kernel
// (vcpu->arch.xen.evtchn_pending_sel) whenever its vcpu_info cache fails kvm_gpc_check:
// deactivated, or stale after a memslot change (the generation moved), until the vCPU's
// next entry (kvm_xen_inject_pending_events refreshes the cache and writes the bits).

/** Where the VMM last pointed KVM's vcpu_info cache: a guest address (`hva`: the page a host address maps), null = deactivated. */
const vcpuInfoNoted = new WeakMap<Vcpu, { gpa: number | null; hva: boolean }>();
/** vCPUs whose vcpu_info cache (by guest address) a memslot change made stale, until it is refreshed. */
const staleVcpuInfo = new WeakSet<Vcpu>();

/**
 * kvm_xen_vcpu_set_attr(VCPU_INFO / VCPU_INFO_HVA) as the VMM sets it: where KVM writes
 * this vCPU's selector and upcall flag from now on (kvm_gpc_activate maps it afresh, so a
 * stale cache is current again). For the model of that attribute (kvm-attr.ts kvmXenSetAttr).
 */
export function kvmNoteVcpuInfo(v: Vcpu, gpa: bigint | null, hva: boolean): void {
  vcpuInfoNoted.set(v, { gpa: gpa === null ? null : Number(gpa), hva });
  staleVcpuInfo.delete(v);
}

/** Where KVM's vcpu_info cache for `v` points: where the VMM put it, else the guest's own (the VMM tells KVM of each); null = none. */
export function kvmVcpuInfoAt(v: Vcpu): number | null {
  const n = vcpuInfoNoted.get(v);
  return n ? n.gpa : v.vcpuInfoAddress();
}

/**
 * A memslot added or removed (KVM_SET_USER_MEMORY_REGION): the memslot generation moves,
 * so kvm_gpc_check fails on every cache KVM made from a guest address until it is
 * refreshed (virt/kvm/pfncache.c). shared_info is refreshed by kvm_xen_set_evtchn's slow
 * path before it sets a bit, so only the vcpu_info caches show: each vCPU's events are
 * held until its next entry. A cache made from a host address has no generation to check
 * (6.12; 6.1 has none by host address). `byHva` says which vCPUs the VMM placed so.
 */
export function kvmMemslotChurn(d: Domain, byHva: (v: Vcpu) => boolean = (v) => vcpuInfoNoted.get(v)?.hva ?? false): void {
  if (d.model.flavor !== 'kvm') return;
  for (const v of d.vcpus) if (selectorAt(v, kvmVcpuInfoAt(v)) !== null && !byHva(v)) staleVcpuInfo.add(v);
}

/** KVM's shared_info cache: where the VMM put it, else the model's placement (Xen's hidden page before any); null when the VMM deactivated it. */
function kvmSharedInfo(d: Domain): { mem: ReturnType<typeof sharedInfoMem>['mem']; base: number } | null {
  const p = sharedInfoPlaced.get(d);
  if (!p) return sharedInfoMem(d);
  if (p.gpa === null || !d.memory.contains(Number(p.gpa), 4096)) return null;
  return { mem: d.memory, base: Number(p.gpa) };
}

/** kvm_xen_set_evtchn would refuse any event (-EINVAL): KVM has no shared_info (the slow path's refresh of an inactive cache fails). */
export function kvmSharedInfoInactive(d: Domain): boolean {
  return d.model.flavor === 'kvm' && kvmSharedInfo(d) === null;
}

/** evtchn_upcall_pending at KVM's vcpu_info `vi`: Xen's vcpu_mark_events_pending where that is the guest's own, else the same on KVM's copy. */
function kvmMarkUpcall(v: Vcpu, vi: number): void {
  if (vi === v.vcpuInfoAddress()) {
    markEventsPending(v);
    return;
  }
  if (testAndSetBit(v.domain.memory, vi, 0)) return;
  vcpuEvtchn(v).upcalls++;
  for (const h of upcallAssertHooks) h(v);
}

/** The selector word of KVM's vcpu_info `vi`, or null when no guest memory is behind it (kvm_gpc_check fails). */
function selectorAt(v: Vcpu, vi: number | null): number | null {
  if (vi === null || !v.domain.memory.contains(vi, 64)) return null;
  return vi + (v.domain.width === 64 ? 8 : 4);
}

/**
 * kvm_xen_set_evtchn (the fast path, and the slow one's refresh of shared_info) for the
 * 2-level ABI, the setPending of model-kvm (evtchn.ts): pending bit in KVM's shared_info;
 * unless masked, the selector bit and upcall flag in KVM's vcpu_info, or the selector held
 * in-kernel while that cache fails its check. Pollers learn of the port as on Xen.
 */
export function kvmSetPending2l(v: Vcpu, ch: Channel): void {
  const d = v.domain;
  const si = kvmSharedInfo(d);
  if (si === null) return;
  const f = SHARED_INFO[d.width].fields;
  const port = ch.port;
  if (testAndSetBit(si.mem, si.base + f.evtchn_pending.offset, port)) return;
  if (!testBit(si.mem, si.base + f.evtchn_mask.offset, port)) {
    const word = Math.floor(port / d.width);
    const vi = kvmVcpuInfoAt(v);
    const sel = selectorAt(v, vi);
    if (kvmHoldsSelector(v) || (sel !== null && staleVcpuInfo.has(v))) {
      kvmHoldSelectorBit(v, word);
    } else if (sel !== null && !testAndSetBit(d.memory, sel, word)) {
      kvmMarkUpcall(v, vi!);
    }
  }
  checkPollers(d, port);
}

/**
 * kvm_xen_inject_pending_events at the vCPU's entry, when KVM holds selector bits for it:
 * the vcpu_info cache is refreshed (which fails while it is deactivated or has no memory
 * behind it: the bits stay held) and the bits go into KVM's vcpu_info with the upcall flag
 * and vector. Run before evtchn-2l's kvmFlushHeldSelector, which would write the guest's
 * own vcpu_info. An entry with nothing held leaves a stale cache stale (seen live on 6.12:
 * VMM-served hypercalls on the vCPU after a memslot change, then an event still held); a
 * clock update at the entry (kvm_guest_time_update) or a VM-wide callback vector
 * (__kvm_xen_has_interrupt) would refresh it, neither modelled.
 *
 * vcpu_run delivers only after an exit KVM handled in-kernel (`inKernelExit`: the
 * caller's EVTCHNOP_send served from KVM's table, a hypercall KVM answers itself without
 * INTERCEPT_HCALL, or the guest halting to wait for its upcalls) and on the entry the kick of a newly held bit cancels (the first entry after
 * it; a failed delivery there leaves the bits held and the kick spent). Otherwise the
 * guest runs on with them held: after the VMM gives vcpu_info back, its next VMM-served
 * hypercall delivers nothing (found by the fuzzer on 6.12; replayed on 6.1 and 6.12). A
 * host interrupt's exit also delivers them, at a moment the model cannot know; the
 * in-kernel SCHEDOP_poll / yield and timer hypercalls would too, not modelled here.
 * Also called when the vCPU goes back into the guest after an event channel hypercall
 * (evtchn.ts).
 */
export function kvmEnterGuest(v: Vcpu, inKernelExit = false): void {
  if (v.domain.model.flavor !== 'kvm') return;
  const a = kvmVcpuAttrs(v);
  a.due = a.heldSel !== 0n && (a.kick || inKernelExit);
  a.kick = false;
  if (!a.due || kvmHoldsSelector(v)) return;
  const vi = kvmVcpuInfoAt(v);
  const sel = selectorAt(v, vi);
  if (sel === null) return;
  staleVcpuInfo.delete(v);
  for (let w = 0; w < v.domain.width; w++) if ((a.heldSel >> BigInt(w)) & 1n) testAndSetBit(v.domain.memory, sel, w);
  a.heldSel = 0n;
  kvmMarkUpcall(v, vi!);
}
modelHooks.guestEntry.unshift(kvmEnterGuest);
modelHooks.inKernelExit.push((v) => kvmEnterGuest(v, true));

