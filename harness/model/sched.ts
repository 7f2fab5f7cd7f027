// HYPERVISOR_sched_op: yield, block, poll, shutdown, shutdown_code,
// remote_shutdown, watchdog, pin_override; unknown commands -> -ENOSYS.
// Sources: xen/common/sched/core.c (do_sched_op, do_poll, vcpu_block_enable_events,
// domain_watchdog), xen/common/domain.c (domain_shutdown), xen/common/event_channel.c
// (evtchn_check_pollers), xen/include/public/sched.h (structs, SHUTDOWN_*),
// arch/x86/kvm/xen.c (kvm_xen_schedop_poll, wait_pending_event, kvm_xen_check_poller).
// spec/xen-abi.md 7.3.

import { err } from './errno.js';
import { hasBug } from './variant.js';
import { eventChannels, type EventChannelSubsystem } from './event-delivery.js';
import { HYPERVISOR, registerHypercalls, type HypercallContext } from './hypercall.js';
import { modelHooks, type Domain, type Vcpu, type XenModel } from './domain.js';
import { evtchn2lPorts, SHARED_INFO } from './memory-layout.js';
import { RUNSTATE, runstateChange } from './runstate.js';
import { setPollTimeout, timerHooks } from './timer.js';

export const SCHEDOP = {
  yield: 0, block: 1, shutdown: 2, poll: 3, remote_shutdown: 4, shutdown_code: 5, watchdog: 6, pin_override: 7,
} as const;
export const SHUTDOWN = { poweroff: 0, reboot: 1, suspend: 2, crash: 3, watchdog: 4, soft_reset: 5 } as const;
export const SHUTDOWN_CODE_INVALID = 0xff;
/** Fairly arbitrary limit on SCHEDOP_poll ports (both Xen and KVM). */
export const POLL_MAX_PORTS = 128;
export const NR_DOMAIN_WATCHDOG_TIMERS = 2;

export interface SchedState {
  blocked: boolean;
  /** Polling: the single port polled, -1 for "any port" (several or none), or null when not polling. */
  pollPort: number | null;
  yields: number;
  wakeups: number;
}

interface DomainSched {
  shutdownCode: number;
  shuttingDown: boolean;
  watchdogs: Array<bigint | null>;
}

const vcpuStates = new WeakMap<Vcpu, SchedState>();
const domStates = new WeakMap<Domain, DomainSched>();

export function schedOf(v: Vcpu): SchedState {
  let s = vcpuStates.get(v);
  if (!s) {
    s = { blocked: false, pollPort: null, yields: 0, wakeups: 0 };
    vcpuStates.set(v, s);
  }
  return s;
}

export function domainSchedOf(d: Domain): DomainSched {
  let s = domStates.get(d);
  if (!s) {
    s = { shutdownCode: SHUTDOWN_CODE_INVALID, shuttingDown: false, watchdogs: Array(NR_DOMAIN_WATCHDOG_TIMERS).fill(null) };
    domStates.set(d, s);
  }
  return s;
}

function evtchnLayer(): EventChannelSubsystem | null {
  try {
    return eventChannels();
  } catch {
    return null;
  }
}

const listened = new WeakSet<EventChannelSubsystem>();
/** Register with the event-channel layer for poll wake-ups (once per layer). */
function listen(): void {
  const ev = evtchnLayer();
  if (!ev || listened.has(ev)) return;
  listened.add(ev);
  ev.onPending((d, port) => checkPollers(d, port));
}

/** Which model a domain belongs to, for wake-ups arriving from the event-channel layer. */
const modelOf = (d: Domain): XenModel => d.model;

/**
 * local_events_need_delivery for an HVM vCPU, as the event-channel layer answers it
 * (evtchn.ts: Xen's hvm_local_events_need_delivery, or the kvm flavour's VMM reading
 * evtchn_upcall_pending); without the layer, the byte.
 */
export function eventsDeliverable(v: Vcpu): boolean {
  const ev = evtchnLayer();
  if (ev) return ev.eventsDeliverable(v);
  const vi = v.vcpuInfoAddress();
  return vi !== null && v.domain.memory.contains(vi, 1) && v.domain.memory.u8(vi) !== 0;
}

/** vcpu_unblock: a blocked (or polling) vCPU wakes and is scheduled again. */
function unblock(m: XenModel, v: Vcpu): void {
  const s = schedOf(v);
  if (!s.blocked) return;
  s.blocked = false;
  s.pollPort = null;
  s.wakeups++;
  setPollTimeout(m, v, null);
  if (m.flavor === 'xen') runstateChange(m, v, RUNSTATE.running);
}

/** evtchn_check_pollers / kvm_xen_check_poller: a port of `d` went pending. */
export function checkPollers(d: Domain, port: number): void {
  const m = modelOf(d);
  for (const v of d.vcpus) {
    const s = schedOf(v);
    if (s.pollPort === null) continue;
    if (s.pollPort === -1 || s.pollPort === port) unblock(m, v);
  }
}

// A timer event that makes events deliverable wakes a blocked or polling vCPU (vcpu_kick).
timerHooks.afterVirq.push((m, v) => {
  if (schedOf(v).blocked && eventsDeliverable(v)) unblock(m, v);
});
// poll_timer_fn: the poll timeout wakes the poller.
timerHooks.pollTimeout.push((m, v) => {
  if (schedOf(v).pollPort !== null) unblock(m, v);
});

/** Host side: re-evaluate whether a blocked vCPU can run (after the host raised an event). */
export function kick(m: XenModel, v: Vcpu): void {
  if (schedOf(v).blocked && eventsDeliverable(v)) unblock(m, v);
}

/** domain_shutdown: the first latched code wins; a second shutdown changes nothing. */
export function domainShutdown(d: Domain, reason: number): void {
  const s = domainSchedOf(d);
  if (s.shutdownCode === SHUTDOWN_CODE_INVALID) s.shutdownCode = reason & 0xff;
  if (s.shuttingDown) return;
  s.shuttingDown = true;
}

function block(ctx: HypercallContext): number {
  const v = ctx.vcpu;
  // local_event_delivery_enable: clear evtchn_upcall_mask.
  const vi = v.vcpuInfoAddress();
  if (vi !== null && v.domain.memory.contains(vi, 2)) v.domain.memory.setU8(vi + 1, 0);
  listen();
  // The blocked flag is set before the check, so no wake-up is lost.
  if (eventsDeliverable(v)) return 0;
  schedOf(v).blocked = true;
  // KVM leaves blocked/offline to the VMM; a halted vCPU stays "running" in its runstate.
  if (ctx.model.flavor === 'xen') runstateChange(ctx.model, v, RUNSTATE.blocked);
  return 0;
}

/** Port pending as KVM reads it: the shared_info bit, mask ignored. */
function sharedInfoPending(d: Domain, port: number): boolean {
  const si = d.sharedInfoGpa;
  if (si === null) return false;
  const f = SHARED_INFO[d.width].fields.evtchn_pending;
  const wb = d.width;
  const word = Math.floor(port / wb);
  const addr = si + f.offset + word * (wb / 8);
  const val = d.memory.readU(addr, (wb / 8) as 4 | 8);
  return ((val >> BigInt(port % wb)) & 1n) === 1n;
}

/** Xen's evtchn_port_poll: -EINVAL if not a valid port in use, else pending (mask ignored). */
function xenPortPoll(d: Domain, port: number): number {
  const ev = evtchnLayer();
  if (ev) {
    const p = ev.portPending(d, port);
    if (p === null) return err('EINVAL');
    return p ? 1 : 0;
  }
  // Without the event-channel layer: only the 2-level range and the shared_info bit are known.
  if (port >= evtchn2lPorts(d.width)) return err('EINVAL');
  return sharedInfoPending(d, port) ? 1 : 0;
}

function readPorts(ctx: HypercallContext, gva: bigint, n: number): number[] | null {
  if (n === 0) return [];
  const b = ctx.copyFrom(gva, n * 4);
  if (!b) return null;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return Array.from({ length: n }, (_, i) => dv.getUint32(i * 4, true));
}

function poll(ctx: HypercallContext, arg: bigint): number {
  const m = ctx.model;
  const v = ctx.vcpu;
  const d = ctx.domain;
  listen();
  // 64-bit: {ports @0 (handle), nr_ports u32 @8, timeout u64 @16}; compat: {ports u32 @0, nr_ports @4, timeout @8}.
  const a = ctx.view(arg, ctx.compat ? 16 : 24);
  if (!a) return err('EFAULT');
  const ports = ctx.compat ? BigInt(a.u32(0)) : a.u64(0);
  const nr = ctx.compat ? a.u32(4) : a.u32(8);
  const timeout = ctx.compat ? a.u64(8) : a.u64(16);
  if (nr > POLL_MAX_PORTS) return err('EINVAL');
  const s = schedOf(v);
  if (m.flavor === 'kvm') {
    // kvm_xen_schedop_poll: read the ports, bound-check each against the 2-level limit,
    // then wait unless one of them is pending; the timeout is relative.
    const list = readPorts(ctx, ports, nr);
    if (!list) return err('EFAULT');
    if (!hasBug(m, 'poll_port_unchecked') && list.some((p) => p >= evtchn2lPorts(d.width))) return err('EINVAL');
    if (list.some((p) => sharedInfoPending(d, p))) return 0;
    s.blocked = true;
    s.pollPort = nr === 1 ? list[0] : -1;
    if (timeout !== 0n) setPollTimeout(m, v, m.now + timeout);
    return 0;
  }
  // do_poll: blocked and polling first; events already deliverable -> 0 at once.
  if (eventsDeliverable(v)) return 0;
  let last = 0;
  for (let i = 0; i < nr; i++) {
    const b = ctx.copyFrom(ports + BigInt(i * 4), 4);
    if (!b) return err('EFAULT');
    last = new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
    const rc = xenPortPoll(d, last);
    if (rc < 0) return rc;
    if (rc > 0) return 0;
  }
  s.blocked = true;
  s.pollPort = nr === 1 ? last : -1;
  runstateChange(m, v, RUNSTATE.blocked);
  // The timeout is absolute system time; 0 means none; a past one fires at once.
  if (timeout !== 0n) {
    const t = BigInt.asIntN(64, timeout);
    if (t <= m.now) unblock(m, v);
    else setPollTimeout(m, v, t);
  }
  return 0;
}

function watchdog(ctx: HypercallContext, arg: bigint): number {
  const a = ctx.view(arg, 8);
  if (!a) return err('EFAULT');
  let id = a.u32(0);
  const timeout = BigInt(a.u32(4));
  const s = domainSchedOf(ctx.domain);
  if (id > NR_DOMAIN_WATCHDOG_TIMERS) return err('EINVAL');
  if (id === 0) {
    for (id = 0; id < NR_DOMAIN_WATCHDOG_TIMERS; id++) {
      if (s.watchdogs[id] !== null) continue;
      s.watchdogs[id] = ctx.model.now + timeout * 1_000_000_000n;
      break;
    }
    return id === NR_DOMAIN_WATCHDOG_TIMERS ? err('ENOSPC') : id + 1;
  }
  id -= 1;
  if (s.watchdogs[id] === null) return err('EINVAL');
  s.watchdogs[id] = timeout === 0n ? null : ctx.model.now + timeout * 1_000_000_000n;
  return 0;
}

// Watchdog expiry shuts the domain down with SHUTDOWN_watchdog (domain_watchdog_timeout).
modelHooks.advance.push((m, _from, to) => {
  for (const d of m.domains.values()) {
    const s = domStates.get(d);
    if (!s) continue;
    for (let i = 0; i < s.watchdogs.length; i++) {
      const t = s.watchdogs[i];
      if (t !== null && t <= to) {
        s.watchdogs[i] = null;
        domainShutdown(d, SHUTDOWN.watchdog);
      }
    }
  }
});

export function schedOp(ctx: HypercallContext, args: bigint[]): number {
  const cmd = Number(BigInt.asIntN(32, args[0] & 0xffffffffn));
  const arg = args[1];
  switch (cmd) {
    case SCHEDOP.yield:
      schedOf(ctx.vcpu).yields++;
      // KVM serves a CPL 0 yield in-kernel (kvm_xen_hcall_sched_op): held events come after it.
      if (ctx.vcpu.cpl === 0) for (const h of modelHooks.inKernelExit) h(ctx.vcpu);
      return 0;
    case SCHEDOP.block:
      return block(ctx);
    case SCHEDOP.shutdown: {
      const a = ctx.view(arg, 4);
      if (!a) return err('EFAULT');
      domainShutdown(ctx.domain, a.u32(0));
      return 0;
    }
    case SCHEDOP.shutdown_code: {
      const a = ctx.view(arg, 4);
      if (!a) return err('EFAULT');
      const s = domainSchedOf(ctx.domain);
      if (s.shutdownCode === SHUTDOWN_CODE_INVALID) s.shutdownCode = a.u32(0) & 0xff;
      return 0;
    }
    case SCHEDOP.poll:
      return poll(ctx, arg);
    case SCHEDOP.remote_shutdown: {
      // {domid_t domain_id @0; u32 reason @4}: looked up by id (DOMID_SELF is not an id).
      const a = ctx.view(arg, 8);
      if (!a) return err('EFAULT');
      const d = ctx.model.domain(a.u16(0));
      if (!d) return err('ESRCH');
      // xsm_schedop_shutdown(XSM_DM_PRIV): a privileged caller only (the model has no device-model domains).
      if (!ctx.domain.privileged) return err('EPERM');
      domainShutdown(d, a.u32(4));
      return 0;
    }
    case SCHEDOP.watchdog:
      return watchdog(ctx, arg);
    case SCHEDOP.pin_override: {
      if (!ctx.domain.privileged) return err('EPERM');
      const a = ctx.view(arg, 4);
      if (!a) return err('EFAULT');
      // The model has one physical CPU (0); a negative pcpu ends the override.
      const pcpu = a.i32(0);
      return pcpu < 0 || pcpu === 0 ? 0 : err('EINVAL');
    }
  }
  return err('ENOSYS');
}

registerHypercalls({ [HYPERVISOR.sched_op]: schedOp });
