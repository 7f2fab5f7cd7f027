// Xen vCPU timers: the one-shot timer (set_timer_op and VCPUOP_set_singleshot_timer
// share it), the periodic timer, and the SCHEDOP_poll timeout, fired from the
// model's deterministic clock in deadline order. Expiry sends VIRQ_TIMER.
// Sources: xen/common/sched/core.c (do_set_timer_op, vcpu_singleshot_timer_fn,
// vcpu_periodic_timer_work_locked, vcpu_set_periodic_timer, poll_timer_fn),
// xen/common/domain.c (VCPUOP_set/stop_singleshot_timer, VCPUOP_set/stop_periodic_timer),
// arch/x86/kvm/xen.c (kvm_xen_start_timer, kvm_xen_hcall_set_timer_op). spec/xen-abi.md 7.1, 7.2.

import { eventChannels } from './event-delivery.js';
import { HYPERVISOR, registerHypercalls, type HypercallContext } from './hypercall.js';
import { modelHooks, type Vcpu, type XenModel } from './domain.js';
import { kvmTimerPort } from './kvm-vcpu.js';
import { kvmSharedInfoGpa } from './kvm-shared-info.js';

export const VIRQ_TIMER = 0;
/** MILLISECS(100): where a bogus set_timer_op timeout lands. */
export const BOGUS_TIMEOUT_NS = 100_000_000n;
/** STIME_DELTA_MAX: ((u64)~0 >> 2). */
export const STIME_DELTA_MAX = (1n << 62n) - 1n;
export const MIN_PERIOD_NS = 1_000_000n;

export interface TimerState {
  /** One-shot deadline (absolute system time), or null when stopped. */
  singleshot: bigint | null;
  singleshotFired: number;
  periodicPeriod: bigint;
  periodicLast: bigint;
  periodicNext: bigint | null;
  periodicFired: number;
  /** SCHEDOP_poll timeout deadline, or null. */
  poll: bigint | null;
  /** VIRQ_TIMER sends attempted (delivered or dropped by the event-channel layer). */
  virqSent: number;
  /**
   * KVM's timer fired while KVM had no shared_info to raise its port in: KVM holds it
   * (timer_pending) for the vCPU's next entry (xen_timer_callback, kvm_xen_inject_timer_irqs).
   */
  kvmHeld: boolean;
}

const timers = new WeakMap<Vcpu, TimerState>();

export function timerOf(v: Vcpu): TimerState {
  let t = timers.get(v);
  if (!t) {
    t = { singleshot: null, singleshotFired: 0, periodicPeriod: 0n, periodicLast: 0n, periodicNext: null, periodicFired: 0, poll: null, virqSent: 0, kvmHeld: false };
    timers.set(v, t);
  }
  return t;
}

/** Called after a VIRQ_TIMER send and on a poll timeout; sched.ts wakes blocked/polling vCPUs. */
export const timerHooks = {
  afterVirq: [] as Array<(m: XenModel, v: Vcpu) => void>,
  pollTimeout: [] as Array<(m: XenModel, v: Vcpu) => void>,
};

/** send_timer_event: VIRQ_TIMER to the vCPU (dropped if unbound, or if no event-channel layer is loaded). */
export function sendTimerEvent(m: XenModel, v: Vcpu): void {
  const t = timerOf(v);
  t.virqSent++;
  let ev;
  try {
    ev = eventChannels();
  } catch {
    ev = null;
  }
  // KVM's in-kernel timer raises the port the VMM gave it (arch/x86/kvm/xen.c, xen_timer_callback).
  // Without a shared_info its fast path cannot (-EWOULDBLOCK): the expiry waits for the
  // vCPU's next entry, and a second expiry meanwhile adds nothing.
  const kvmPort = kvmTimerPort(v);
  if (kvmPort !== 0 && kvmSharedInfoGpa(v.domain) === null) t.kvmHeld = true;
  else if (kvmPort !== 0) ev?.raisePort(v, kvmPort);
  else ev?.sendVirq(v, VIRQ_TIMER);
  for (const h of timerHooks.afterVirq) h(m, v);
}

/**
 * kvm_xen_inject_timer_irqs at a vCPU's entry: a held expiry goes out through the slow
 * path (kvm_xen_set_evtchn), which raises it if KVM has a shared_info again and drops it
 * if not; either way it is no longer held. KVM_XEN_VCPU_GET_ATTR of the timer does the
 * same first (Linux 6.12 kvm_xen_vcpu_get_attr: the snapshot is never left with an expiry
 * lurking in timer_pending; Linux 6.1 does not, a known divergence).
 */
export function kvmInjectHeldTimer(v: Vcpu): void {
  const t = timers.get(v);
  if (!t?.kvmHeld) return;
  t.kvmHeld = false;
  const port = kvmTimerPort(v);
  if (port !== 0 && kvmSharedInfoGpa(v.domain) !== null) eventChannels().raisePort(v, port);
}
modelHooks.guestEntry.push(kvmInjectHeldTimer);

/** set_timer on the one-shot timer: a deadline not in the future fires at once. */
export function setSingleshot(m: XenModel, v: Vcpu, deadline: bigint): void {
  const t = timerOf(v);
  if (deadline <= m.now) {
    t.singleshot = null;
    t.singleshotFired++;
    sendTimerEvent(m, v);
    return;
  }
  t.singleshot = deadline;
}

/**
 * kvm_xen_start_timer without the Linux workaround (KVM_XEN_VCPU_ATTR_TYPE_TIMER and the
 * in-kernel VCPUOP_set_singleshot_timer): KVM takes delta = (s64)(deadline - now), so a
 * deadline in [2^63, 2^64 - now) is far ahead, where Xen's signed s_time_t makes it past.
 */
export function kvmStartTimer(m: XenModel, v: Vcpu, deadline: bigint): void {
  timerOf(v).kvmHeld = false; // atomic_set(&timer_pending, 0)
  const delta = BigInt.asIntN(64, deadline - m.now);
  setSingleshot(m, v, delta <= 0n ? m.now : m.now + delta);
}

export function stopSingleshot(v: Vcpu): void {
  const t = timerOf(v);
  t.singleshot = null;
  t.kvmHeld = false; // kvm_xen_stop_timer clears timer_pending too
}

/** do_set_timer_op(s_time_t timeout). */
export function setTimerOp(m: XenModel, v: Vcpu, timeout: bigint): void {
  const offset = timeout - m.now;
  if (timeout === 0n) {
    stopSingleshot(v);
  } else if (timeout < 0n || (offset > 0n && offset >> 50n !== 0n)) {
    // The Linux workaround: a wrapped or ~13-day-away timeout fires in 100 ms.
    setSingleshot(m, v, m.now + BOGUS_TIMEOUT_NS);
  } else {
    setSingleshot(m, v, timeout);
  }
}

/** vcpu_periodic_timer_work_locked: fire if due (now >= last + period), then re-arm. */
function periodicWork(m: XenModel, v: Vcpu): void {
  const t = timerOf(v);
  let next = t.periodicLast + t.periodicPeriod;
  if (m.now >= next) {
    t.periodicFired++;
    sendTimerEvent(m, v);
    t.periodicLast = m.now;
    next = m.now + t.periodicPeriod;
  }
  t.periodicNext = next;
}

/** vcpu_set_periodic_timer: stop; set the period; if non-zero run the work (which may fire at once). */
export function setPeriodic(m: XenModel, v: Vcpu, period: bigint): void {
  const t = timerOf(v);
  t.periodicNext = null;
  t.periodicPeriod = period;
  if (period !== 0n) periodicWork(m, v);
}

/** Arm or cancel the poll timeout (set_timer(&v->poll_timer, timeout)). */
export function setPollTimeout(m: XenModel, v: Vcpu, deadline: bigint | null): void {
  timerOf(v).poll = deadline;
}

type Due = { at: bigint; v: Vcpu; kind: 'singleshot' | 'periodic' | 'poll' };

function nextDue(m: XenModel, limit: bigint): Due | null {
  let best: Due | null = null;
  const consider = (at: bigint | null, v: Vcpu, kind: Due['kind']) => {
    if (at === null || at > limit) return;
    if (!best || at < best.at) best = { at, v, kind };
  };
  for (const d of m.domains.values()) {
    for (const v of d.vcpus) {
      const t = timers.get(v);
      if (!t) continue;
      consider(t.singleshot, v, 'singleshot');
      consider(t.periodicNext, v, 'periodic');
      consider(t.poll, v, 'poll');
    }
  }
  return best;
}

/** Fire every timer due in (from, to], each at its own deadline, in deadline order. */
function onAdvance(m: XenModel, _from: bigint, to: bigint): void {
  for (let guard = 0; guard < 1_000_000; guard++) {
    const due = nextDue(m, to);
    if (!due) break;
    if (due.at > m.now) m.now = due.at;
    const t = timerOf(due.v);
    if (due.kind === 'singleshot') {
      t.singleshot = null;
      t.singleshotFired++;
      sendTimerEvent(m, due.v);
    } else if (due.kind === 'periodic') {
      periodicWork(m, due.v);
    } else {
      t.poll = null;
      for (const h of timerHooks.pollTimeout) h(m, due.v);
    }
  }
  m.now = to;
}

/**
 * The clock moves: XenModel.advance sets `now` to the end first, so rewind it
 * to the start and let each timer fire at its own deadline.
 */
modelHooks.advance.push((m, from, to) => {
  m.now = from;
  onAdvance(m, from, to);
});

/** HYPERVISOR_set_timer_op: 64-bit takes one s64; compat takes (lo, hi). Always 0. */
export function setTimerOpHypercall(ctx: HypercallContext, args: bigint[]): number {
  const raw = ctx.compat ? (args[0] & 0xffffffffn) | ((args[1] & 0xffffffffn) << 32n) : args[0];
  setTimerOp(ctx.model, ctx.vcpu, BigInt.asIntN(64, raw));
  return 0;
}

registerHypercalls({ [HYPERVISOR.set_timer_op]: setTimerOpHypercall });
