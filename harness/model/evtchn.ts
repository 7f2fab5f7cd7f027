// HYPERVISOR_event_channel_op: the per-domain port table, every EVTCHNOP an
// HVM guest can issue, and the dispatch to the 2-level or FIFO port ops.
// Sources: xen/common/event_channel.c (get_free_port, evtchn_allocate_port,
// evtchn_alloc_unbound, evtchn_bind_*, evtchn_close, evtchn_send, evtchn_status,
// evtchn_bind_vcpu, evtchn_unmask, evtchn_reset, evtchn_set_priority,
// do_event_channel_op), xen/include/xen/event.h (evtchn_usable, port_is_valid,
// evtchn_port_* wrappers), xen/include/public/event_channel.h (structs, ECS/EVTCHNSTAT),
// xen/arch/x86/domain.c (vcpu_mark_events_pending).

import { err } from './errno.js';
import { hasBug } from './variant.js';
import { DOMID_SELF, modelHooks, type Domain, type Vcpu, type XenModel } from './domain.js';
import { GuestMemory, PAGE_SIZE } from './guest-memory.js';
import { setU32 } from './le-bytes.js';
import { HYPERVISOR, registerHypercalls, type GuestStruct, type HypercallContext } from './hypercall.js';
import { provideEventChannels } from './event-delivery.js';
import { ops2l } from './evtchn-2l.js';
import { kvmEvtchnSend, kvmOffloadBind, kvmOffloadClose, kvmEnterGuest, kvmRaisePort, kvmSetPending2l } from './kvm-evtchn.js';
import { evtchnFifoExpandArray, evtchnFifoInitControl, fifoDestroy } from './evtchn-fifo.js';
import { stopSingleshot } from './timer.js';
import { xenAtLeast } from './version.js';

export const EVTCHNOP = {
  bind_interdomain: 0, bind_virq: 1, bind_pirq: 2, close: 3, send: 4, status: 5,
  alloc_unbound: 6, bind_ipi: 7, bind_vcpu: 8, unmask: 9, reset: 10, init_control: 11,
  expand_array: 12, set_priority: 13,
  /** Xen's own continuation of reset (public/event_channel.h under __XEN__), yet dispatched for guests too. */
  reset_cont: 14,
} as const;

/** Internal channel states (ECS_*, xen/include/xen/sched.h). */
export const ECS = { free: 0, reserved: 1, unbound: 2, interdomain: 3, pirq: 4, virq: 5, ipi: 6 } as const;
export type EcsState = (typeof ECS)[keyof typeof ECS];

/** EVTCHNSTAT_* as reported by EVTCHNOP_status (public/event_channel.h). */
export const EVTCHNSTAT = { closed: 0, unbound: 1, interdomain: 2, pirq: 3, virq: 4, ipi: 5 } as const;

/** VIRQ numbers (public/xen.h). */
export const VIRQ = {
  TIMER: 0, DEBUG: 1, CONSOLE: 2, DOM_EXC: 3, TBUF: 4, DEBUGGER: 6, XENOPROF: 7, CON_RING: 8,
  PCPU_STATE: 9, MEM_EVENT: 10, ARGO: 11, ENOMEM: 12, XENPMU: 13, ARCH_0: 16, ARCH_7: 23,
} as const;
export const NR_VIRQS = 24;

/** Ports per bucket: PAGE_SIZE / next_pow2(sizeof(struct evtchn)) with a 64-byte struct evtchn. */
export const EVTCHNS_PER_BUCKET = 64;
/** libxl's default max_event_channels is 1023 (xen/common/domain.c takes it from the config). */
export const DEFAULT_MAX_EVTCHN_PORT = 1023;
/** nr_pirqs of a domU: nr_static_irqs (host GSIs, here 24) + extra_domU_irqs (32). Host-dependent. */
export const DEFAULT_NR_PIRQS = 56;
export const FIFO_PRIORITY_DEFAULT = 7;

/** One struct evtchn (the Xen-private part; guest-visible bits live in guest memory). */
export interface Channel {
  port: number;
  state: EcsState;
  notifyVcpu: number;
  /** UNBOUND: the domain allowed to bind. */
  unboundRemote: number;
  /** INTERDOMAIN: peer domain id and port. */
  remoteDom: number;
  remotePort: number;
  virq: number;
  pirq: number;
  /** FIFO priority, 0 (highest) .. 15. */
  priority: number;
  /** FIFO: the queue the event was last linked on (fifo_lastq). */
  lastVcpu: number;
  lastPriority: number;
  /** FIFO: pending while its event-array page was missing (evtchn->pending). */
  fifoPending: boolean;
}

/** The operations that differ between ABIs (struct evtchn_port_ops, xen/include/xen/event.h). */
export interface PortOps {
  readonly abi: '2l' | 'fifo';
  /** Number of ports the ABI can address (max_evtchns). */
  maxPorts(d: Domain): number;
  init(d: Domain, ch: Channel): void;
  setPending(v: Vcpu, ch: Channel): void;
  clearPending(d: Domain, ch: Channel): void;
  unmask(d: Domain, ch: Channel): void;
  isPending(d: Domain, port: number): boolean;
  isMasked(d: Domain, port: number): boolean;
  isBusy(d: Domain, port: number): boolean;
  /** null: the ABI has no set_priority (-ENOSYS). */
  setPriority: ((d: Domain, ch: Channel, prio: number) => number) | null;
}

export interface DomainEvtchn {
  chans: Channel[];
  ops: PortOps;
  pirqToPort: Map<number, number>;
  /** Every port below this one is in use: where the lowest-free-port search starts. */
  freeHint: number;
}

export interface VcpuEvtchn {
  virqToPort: number[];
  /** Upcalls raised (0->1 transitions of evtchn_upcall_pending made by Xen). */
  upcalls: number;
}

const domStates = new WeakMap<Domain, DomainEvtchn>();
const vcpuStates = new WeakMap<Vcpu, VcpuEvtchn>();
/** shared_info contents while the guest has not mapped it (Xen's page exists regardless). */
const hiddenSharedInfo = new WeakMap<Domain, GuestMemory>();

export function newChannel(port: number): Channel {
  return {
    port, state: ECS.free, notifyVcpu: 0, unboundRemote: 0, remoteDom: 0, remotePort: 0,
    virq: 0, pirq: 0, priority: FIFO_PRIORITY_DEFAULT, lastVcpu: 0, lastPriority: 0, fifoPending: false,
  };
}

let opsKvm2l: PortOps | undefined;
/**
 * The 2-level ops of a domain. On model-kvm every 2-level event is raised by KVM, the VMM's
 * too (QEMU hands them to KVM_XEN_HVM_EVTCHN_SEND): the bits go where KVM's caches point,
 * or are held (kvm-evtchn.ts kvmSetPending2l). Built on first use: the modules import each other.
 */
function ops2lOf(d: Domain): PortOps {
  if (d.model.flavor !== 'kvm') return ops2l;
  return (opsKvm2l ??= { ...ops2l, setPending: kvmSetPending2l });
}

/** evtchn_init: one bucket, port 0 reserved, 2-level ops. */
export function evtchnState(d: Domain): DomainEvtchn {
  let s = domStates.get(d);
  if (!s) {
    s = { chans: [], ops: ops2lOf(d), pirqToPort: new Map(), freeHint: 1 };
    for (let i = 0; i < EVTCHNS_PER_BUCKET; i++) s.chans.push(newChannel(i));
    s.chans[0].state = ECS.reserved;
    domStates.set(d, s);
  }
  return s;
}

export function vcpuEvtchn(v: Vcpu): VcpuEvtchn {
  let s = vcpuStates.get(v);
  if (!s) {
    s = { virqToPort: new Array(NR_VIRQS).fill(0), upcalls: 0 };
    vcpuStates.set(v, s);
  }
  return s;
}

export function setPortOps(d: Domain, ops: PortOps): void {
  evtchnState(d).ops = ops;
}

/** Where the domain's shared_info contents are: the guest's mapping, or Xen's unmapped page. */
export function sharedInfoMem(d: Domain): { mem: GuestMemory; base: number } {
  if (d.sharedInfoGpa !== null) return { mem: d.memory, base: d.sharedInfoGpa };
  let m = hiddenSharedInfo.get(d);
  if (!m) {
    m = new GuestMemory(PAGE_SIZE);
    hiddenSharedInfo.set(d, m);
  }
  return { mem: m, base: 0 };
}

/** Atomic bit helpers on little-endian guest memory (bit n of the bitmap at `base`). */
export function testBit(mem: GuestMemory, base: number, bit: number): boolean {
  return ((mem.u8(base + (bit >> 3)) >> (bit & 7)) & 1) === 1;
}
export function testAndSetBit(mem: GuestMemory, base: number, bit: number): boolean {
  const a = base + (bit >> 3);
  const b = mem.u8(a);
  const was = ((b >> (bit & 7)) & 1) === 1;
  if (!was) mem.setU8(a, b | (1 << (bit & 7)));
  return was;
}
export function testAndClearBit(mem: GuestMemory, base: number, bit: number): boolean {
  const a = base + (bit >> 3);
  const b = mem.u8(a);
  const was = ((b >> (bit & 7)) & 1) === 1;
  if (was) mem.setU8(a, b & ~(1 << (bit & 7)));
  return was;
}

const pendingListeners: Array<(d: Domain, port: number) => void> = [];

/** evtchn_check_pollers: wake vCPUs polling this port. */
export function checkPollers(d: Domain, port: number): void {
  for (const fn of pendingListeners) fn(d, port);
}

/** Called on each 0->1 of evtchn_upcall_pending: how the upcall is raised (hvm-op.ts). */
export const upcallAssertHooks: Array<(v: Vcpu) => void> = [];
/** hvm_local_events_need_delivery, provided by hvm-op.ts when it loads. */
export const hvmDelivery: { needed: ((v: Vcpu) => boolean) | null } = { needed: null };

/**
 * vcpu_mark_events_pending (xen/arch/x86/domain.c): test-and-set
 * evtchn_upcall_pending; on 0->1 the HVM upcall is raised (hvm_assert_evtchn_irq).
 * A vCPU without a vcpu_info (id >= 32, none registered) writes a dummy: nothing is seen.
 */
export function markEventsPending(v: Vcpu): void {
  const vi = v.vcpuInfoAddress();
  if (vi === null) return;
  if (testAndSetBit(v.domain.memory, vi, 0)) return;
  vcpuEvtchn(v).upcalls++;
  for (const h of upcallAssertHooks) h(v);
}

/** port_is_valid: below valid_evtchns (grows bucket by bucket, never shrinks). */
export function portIsValid(d: Domain, port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port < evtchnState(d).chans.length;
}

export function channel(d: Domain, port: number): Channel | undefined {
  return portIsValid(d, port) ? evtchnState(d).chans[port] : undefined;
}

/** evtchn_usable: a port the guest uses (state beyond RESERVED; the model has no Xen-consumer ports). */
export function usable(ch: Channel): boolean {
  return ch.state > ECS.reserved;
}

/** evtchn_port_set_pending: only for usable ports, on d->vcpu[vcpu_id]. */
export function portSetPending(d: Domain, vcpuId: number, ch: Channel): void {
  const v = d.vcpus[vcpuId];
  if (!v || !usable(ch)) return;
  const ops = evtchnState(d).ops;
  if (d.hostDelivery && ops.abi === '2l') {
    // The kernel sets the bits (Domain.hostDelivery); pollers of this model still learn
    // of a port that went pending, as setPending would tell them.
    const was = ops.isPending(d, ch.port);
    if (d.hostDelivery(v, ch.port)) {
      if (!was && ops.isPending(d, ch.port)) checkPollers(d, ch.port);
      return;
    }
  }
  ops.setPending(v, ch);
}

export function maxEvtchnPort(d: Domain): number {
  return d.limit('max_evtchn_port', DEFAULT_MAX_EVTCHN_PORT);
}

/** get_free_port + evtchn_allocate_port: lowest free, not busy port; -ENOSPC past the limits. */
export function getFreePort(d: Domain): number {
  if (d.dying) return err('EINVAL');
  const s = evtchnState(d);
  const max = maxEvtchnPort(d) + (hasBug(d.model, 'evtchn_limit_off_by_one') ? 1 : 0);
  let port = s.freeHint;
  let firstFree: number | undefined;
  for (; port < s.chans.length; port++) {
    if (port > max) return err('ENOSPC');
    const ch = s.chans[port];
    if (ch.state !== ECS.free) continue;
    firstFree ??= port;
    if (!s.ops.isBusy(d, port)) {
      // Not past `port`: the caller may still leave it free if its own checks fail.
      s.freeHint = firstFree;
      return port;
    }
  }
  if (firstFree !== undefined) s.freeHint = firstFree;
  if (port > max || port >= s.ops.maxPorts(d)) return err('ENOSPC');
  for (let i = 0; i < EVTCHNS_PER_BUCKET; i++) s.chans.push(newChannel(port + i));
  return port;
}

/** free_evtchn: clear pending (ABI), back to FREE on vCPU 0. */
function freeChannel(d: Domain, ch: Channel): void {
  if (!hasBug(d.model, 'close_keeps_pending')) evtchnState(d).ops.clearPending(d, ch);
  ch.state = ECS.free;
  ch.notifyVcpu = 0;
  const st = evtchnState(d);
  st.freeHint = Math.min(st.freeHint, ch.port);
}

/** evtchn_close (__evtchn_close). */
export function closePort(d: Domain, port: number): number {
  const ch = channel(d, port);
  if (!ch) return err('EINVAL');
  if (ch.state > ECS.reserved && d.model.flavor === 'kvm') kvmOffloadClose(d, ch, ch.virq === VIRQ.TIMER, stopSingleshot);
  switch (ch.state) {
    case ECS.free:
    case ECS.reserved:
      return err('EINVAL');
    case ECS.unbound:
    case ECS.ipi:
      break;
    case ECS.pirq:
      evtchnState(d).pirqToPort.delete(ch.pirq);
      break;
    case ECS.virq:
      for (const v of d.vcpus) {
        const vs = vcpuEvtchn(v);
        if (vs.virqToPort[ch.virq] === port) vs.virqToPort[ch.virq] = 0;
      }
      break;
    case ECS.interdomain: {
      const rd = d.model.domain(ch.remoteDom);
      const rch = rd ? channel(rd, ch.remotePort) : undefined;
      if (rch && rch.state === ECS.interdomain) {
        rch.state = ECS.unbound;
        rch.unboundRemote = d.id;
      }
      break;
    }
  }
  freeChannel(d, ch);
  return 0;
}

/** virq_is_global: TIMER, DEBUG, XENOPROF, XENPMU are per-vCPU; x86 arch VIRQs are global. */
export function virqIsGlobal(virq: number): boolean {
  return !(virq === VIRQ.TIMER || virq === VIRQ.DEBUG || virq === VIRQ.XENOPROF || virq === VIRQ.XENPMU);
}

// ---------------------------------------------------------------------------
// The operations. Each takes the caller's context and the copied-in struct.

const asInt32 = (v: number): number => v | 0;

function allocUnbound(ctx: HypercallContext, dom: number, remoteDom: number): number {
  const d = ctx.model.lookupDomain(ctx.domain, dom);
  if (!d) return err('ESRCH');
  const port = getFreePort(d);
  if (port < 0) return port;
  // xsm_evtchn_unbound(XSM_TARGET): only the domain itself or a privileged caller.
  if (d !== ctx.domain && !ctx.domain.privileged) return err('EPERM');
  const s = evtchnState(d);
  const ch = s.chans[port];
  ch.state = ECS.unbound;
  ch.unboundRemote = remoteDom === DOMID_SELF ? ctx.domain.id : remoteDom;
  s.ops.init(d, ch);
  return port;
}

function bindInterdomain(ctx: HypercallContext, remoteDom: number, remotePort: number): number {
  const ld = ctx.domain;
  const rd = ctx.model.lookupDomain(ld, remoteDom);
  if (!rd) return err('ESRCH');
  const lport = getFreePort(ld);
  if (lport < 0) return lport;
  const rch = channel(rd, remotePort);
  if (!rch) return err('EINVAL');
  if (rch.state !== ECS.unbound || rch.unboundRemote !== ld.id) return err('EINVAL');
  const lch = evtchnState(ld).chans[lport];
  lch.state = ECS.interdomain;
  lch.remoteDom = rd.id;
  lch.remotePort = remotePort;
  evtchnState(ld).ops.init(ld, lch);
  rch.state = ECS.interdomain;
  rch.remoteDom = ld.id;
  rch.remotePort = lport;
  // Notifications sent while the remote end was unbound may be lost: always raise the local port.
  portSetPending(ld, lch.notifyVcpu, lch);
  return lport;
}

function bindVirq(ctx: HypercallContext, virqIn: number, vcpuIn: number): number {
  const d = ctx.domain;
  const virq = asInt32(virqIn);
  const vcpu = asInt32(vcpuIn);
  if (virq < 0 || virq >= NR_VIRQS) return err('EINVAL');
  if (virqIsGlobal(virq) && vcpu !== 0) return err('EINVAL');
  const v = d.vcpu(vcpu);
  if (!v) return err('ENOENT');
  // Global VIRQs (other than the per-domain VIRQ_ARGO) belong to their handler
  // domain, by default the hardware domain (get_global_virq_handler): refused to
  // others since Xen 4.21 (commit eba922abdb). Xen 4.17.7 binds it (seen on the xen
  // target), as every Xen before 4.21 does. The kvm flavour keeps the check.
  const refuseGlobal = d.model.flavor !== 'xen' || xenAtLeast(d.model.config.xenVersion, 4, 21);
  if (refuseGlobal && virqIsGlobal(virq) && virq !== VIRQ.ARGO && !d.privileged) return err('EBUSY');
  const vs = vcpuEvtchn(v);
  if (vs.virqToPort[virq] !== 0) return err('EEXIST');
  const port = getFreePort(d);
  if (port < 0) return port;
  const ch = evtchnState(d).chans[port];
  ch.state = ECS.virq;
  ch.notifyVcpu = vcpu;
  ch.virq = virq;
  evtchnState(d).ops.init(d, ch);
  vs.virqToPort[virq] = port;
  if (d.model.flavor === 'kvm') kvmOffloadBind(d, ch, virq === VIRQ.TIMER);
  return port;
}

function bindIpi(ctx: HypercallContext, vcpuIn: number): number {
  const d = ctx.domain;
  const vcpu = asInt32(vcpuIn);
  if (!d.vcpu(vcpu)) return err('ENOENT');
  const port = getFreePort(d);
  if (port < 0) return port;
  const ch = evtchnState(d).chans[port];
  ch.state = ECS.ipi;
  ch.notifyVcpu = vcpu;
  evtchnState(d).ops.init(d, ch);
  if (d.model.flavor === 'kvm') kvmOffloadBind(d, ch, false);
  return port;
}

function bindPirq(ctx: HypercallContext, pirqIn: number): number {
  const d = ctx.domain;
  const pirq = asInt32(pirqIn);
  if (pirq < 0 || pirq >= d.limit('nr_pirqs', DEFAULT_NR_PIRQS)) return err('EINVAL');
  // HVM: no pirq_access_permitted check (that -EPERM is PV only).
  const s = evtchnState(d);
  if (s.pirqToPort.has(pirq)) return err('EEXIST');
  const port = getFreePort(d);
  if (port < 0) return port;
  const ch = s.chans[port];
  ch.state = ECS.pirq;
  ch.pirq = pirq;
  ch.notifyVcpu = 0;
  s.pirqToPort.set(pirq, port);
  s.ops.init(d, ch);
  return port;
}

/** evtchn_send. */
export function sendPort(d: Domain, port: number): number {
  const ch = channel(d, port);
  if (!ch) return err('EINVAL');
  switch (ch.state) {
    case ECS.interdomain: {
      const rd = d.model.domain(ch.remoteDom);
      const rch = rd ? channel(rd, ch.remotePort) : undefined;
      if (rd && rch) portSetPending(rd, rch.notifyVcpu, rch);
      return 0;
    }
    case ECS.ipi:
      portSetPending(d, ch.notifyVcpu, ch);
      return 0;
    case ECS.unbound:
      return 0; // silently dropped
    default:
      return err('EINVAL');
  }
}

/**
 * The channel a VMM raising `port` of `d` from outside may raise (QEMU's xen-event-inject:
 * an allocated port, whatever it is bound to), or null when it refuses (-EINVAL: a free
 * port, port 0 or a port past the table). The kvm target asks this before its kernel send.
 */
function vmmInjectChannel(d: Domain, port: number): Channel | null {
  const ch = channel(d, port);
  return ch && usable(ch) ? ch : null;
}

/** Where a VMM's raise of `port` lands: the port and its notify vCPU, or null (-EINVAL). */
export function vmmInjectTarget(d: Domain, port: number): { port: number; vcpu: number } | null {
  const ch = vmmInjectChannel(d, port);
  return ch ? { port: ch.port, vcpu: ch.notifyVcpu } : null;
}

/**
 * A VMM raising one of the guest's ports from outside: QEMU's xen-event-inject
 * (hw/i386/kvm/xen_evtchn.c set_port_pending); on Xen, what the remote end's
 * EVTCHNOP_send does to this end (xen/common/event_channel.c evtchn_send ->
 * evtchn_port_set_pending on the port's notify vCPU).
 */
export function vmmInject(d: Domain, port: number): number {
  const ch = vmmInjectChannel(d, port);
  if (!ch) return err('EINVAL');
  portSetPending(d, ch.notifyVcpu, ch);
  return 0;
}

interface StatusOut { status: number; vcpu: number; u: Array<[number, number, 2 | 4]> }

function status(ctx: HypercallContext, dom: number, port: number): StatusOut | number {
  const d = ctx.model.lookupDomain(ctx.domain, dom);
  if (!d) return err('ESRCH');
  const ch = channel(d, port);
  if (!ch) return err('EINVAL');
  if (d !== ctx.domain && !ctx.domain.privileged) return err('EPERM'); // xsm_evtchn_status(XSM_TARGET)
  const out: StatusOut = { status: EVTCHNSTAT.closed, vcpu: ch.notifyVcpu, u: [] };
  switch (ch.state) {
    case ECS.unbound:
      out.status = EVTCHNSTAT.unbound;
      out.u.push([16, ch.unboundRemote, 2]);
      break;
    case ECS.interdomain:
      out.status = EVTCHNSTAT.interdomain;
      out.u.push([16, ch.remoteDom, 2], [20, ch.remotePort, 4]);
      break;
    case ECS.pirq:
      out.status = EVTCHNSTAT.pirq;
      out.u.push([16, ch.pirq, 4]);
      break;
    case ECS.virq:
      out.status = EVTCHNSTAT.virq;
      out.u.push([16, ch.virq, 4]);
      break;
    case ECS.ipi:
      out.status = EVTCHNSTAT.ipi;
      break;
  }
  return out;
}

function bindVcpu(ctx: HypercallContext, port: number, vcpuId: number): number {
  const d = ctx.domain;
  if (!d.vcpu(vcpuId)) return err('ENOENT');
  const ch = channel(d, port);
  if (!ch) return err('EINVAL');
  switch (ch.state) {
    case ECS.virq:
      if (!virqIsGlobal(ch.virq)) return err('EINVAL');
      ch.notifyVcpu = vcpuId;
      return 0;
    case ECS.unbound:
    case ECS.interdomain:
    case ECS.pirq:
      ch.notifyVcpu = vcpuId;
      return 0;
    default:
      return err('EINVAL');
  }
}

/** EVTCHNOP_unmask (evtchn_unmask + evtchn_port_unmask). */
export function unmaskPort(d: Domain, port: number): number {
  const ch = channel(d, port);
  if (!ch) return err('EINVAL');
  if (usable(ch)) evtchnState(d).ops.unmask(d, ch);
  return 0;
}

/**
 * EVTCHNOP_reset, and EVTCHNOP_reset_cont (`resuming`: evtchn_reset(d, true)). The model
 * never preempts a reset, so none is ever in progress to resume: d->next_evtchn is 0 and
 * Xen answers -EBUSY (xen/common/event_channel.c, evtchn_reset; seen on Xen 4.17.7).
 */
function reset(ctx: HypercallContext, dom: number, resuming = false): number {
  const d = ctx.model.lookupDomain(ctx.domain, dom);
  if (!d) return err('ESRCH');
  if (d !== ctx.domain && !ctx.domain.privileged) return err('EPERM'); // xsm_evtchn_reset(XSM_TARGET)
  // Resetting another domain needs it paused by its controller; the model never pauses domains.
  if (d !== ctx.domain) return err('EINVAL');
  if (resuming) return err('EBUSY');
  const s = evtchnState(d);
  for (let p = 1; p < s.chans.length; p++) if (s.chans[p].state > ECS.reserved) closePort(d, p);
  if (s.ops.abi === 'fifo') {
    fifoDestroy(d);
    s.ops = ops2lOf(d);
  }
  return 0;
}

function setPriority(ctx: HypercallContext, port: number, prio: number): number {
  const d = ctx.domain;
  const ch = channel(d, port);
  if (!ch) return err('EINVAL');
  const ops = evtchnState(d).ops;
  if (!ops.setPriority) return err('ENOSYS');
  if (!usable(ch)) return err('EACCES');
  return ops.setPriority(d, ch, prio);
}

/** The struct EVTCHNOP_alloc_unbound copies back (reused: a store copies from it). */
const allocUnboundOut = new Uint8Array(8);

/**
 * EVTCHNOP_alloc_unbound as inOut runs it, written out (evtchn.alloc_many loops on it):
 * copy_from_guest of the 8-byte struct (dom and remote_dom are all of it that is read),
 * then on success copy_to_guest of the whole struct as copied in, with port set.
 */
function allocUnboundOp(ctx: HypercallContext, arg: bigint): number {
  const gva = Number(arg);
  const mem = ctx.domain.memory;
  if (!Number.isSafeInteger(gva) || !mem.contains(gva, 8)) return err('EFAULT');
  const head = mem.u32(gva);
  const r = allocUnbound(ctx, head & 0xffff, head >>> 16);
  kvmEnterGuest(ctx.vcpu);
  if (r < 0) return r;
  const b = allocUnboundOut;
  setU32(b, 0, head);
  setU32(b, 4, r >>> 0);
  mem.write(gva, b);
  return 0;
}

/** do_event_channel_op. Structs are identical in 64-bit and compat (spec 3.1). */
export function eventChannelOp(ctx: HypercallContext, args: bigint[]): number {
  const a0 = args[0];
  // The command as an int (a small one without a BigInt of its own).
  const cmd = a0 >= 0n && a0 <= 0x7fff_ffffn ? Number(a0) : Number(BigInt.asIntN(32, a0));
  const arg = args[1];
  if (cmd === EVTCHNOP.alloc_unbound) return allocUnboundOp(ctx, arg);
  // On KVM: the operation was served in-kernel (an exit after which KVM delivers what it holds).
  let inKernel = false;
  // copy_from_guest, the operation, then (on success only) copy_to_guest of the whole struct.
  const inOut = (size: number, fn: (a: GuestStruct) => number, write?: (a: GuestStruct, r: number) => void): number => {
    const a = ctx.view(arg, size);
    if (!a) return err('EFAULT');
    const r = fn(a);
    // On KVM the caller then resumes the guest, which may take what KVM held for it.
    kvmEnterGuest(ctx.vcpu, inKernel);
    if (r < 0) return r;
    if (write) {
      write(a, r);
      if (!a.commit()) return err('EFAULT');
    }
    return 0;
  };
  switch (cmd) {
    case EVTCHNOP.bind_interdomain:
      return inOut(12, (a) => bindInterdomain(ctx, a.u16(0), a.u32(4)), (a, p) => a.setU32(8, p));
    case EVTCHNOP.bind_virq:
      return inOut(12, (a) => bindVirq(ctx, a.u32(0), a.u32(4)), (a, p) => a.setU32(8, p));
    case EVTCHNOP.bind_pirq:
      return inOut(12, (a) => bindPirq(ctx, a.u32(0)), (a, p) => a.setU32(8, p));
    case EVTCHNOP.bind_ipi:
      return inOut(8, (a) => bindIpi(ctx, a.u32(0)), (a, p) => a.setU32(4, p));
    case EVTCHNOP.close:
      return inOut(4, (a) => closePort(ctx.domain, a.u32(0)));
    case EVTCHNOP.send:
      // On KVM, a port the VMM registered with KVM_XEN_ATTR_TYPE_EVTCHN is served in-kernel.
      return inOut(4, (a) => {
        const k = ctx.domain.model.flavor === 'kvm' ? kvmEvtchnSend(ctx.domain, a.u32(0)) : null;
        inKernel = k !== null;
        return k === null ? sendPort(ctx.domain, a.u32(0)) : Number(k);
      });
    case EVTCHNOP.status: {
      let st: StatusOut | undefined;
      return inOut(24, (a) => {
        const r = status(ctx, a.u16(0), a.u32(4));
        if (typeof r === 'number') return r;
        st = r;
        return 0;
      }, (a) => {
        a.setU32(8, st!.status);
        a.setU32(12, st!.vcpu);
        for (const [o, v, size] of st!.u) if (size === 2) a.setU16(o, v); else a.setU32(o, v);
      });
    }
    case EVTCHNOP.bind_vcpu:
      return inOut(8, (a) => bindVcpu(ctx, a.u32(0), a.u32(4)));
    case EVTCHNOP.unmask:
      return inOut(4, (a) => unmaskPort(ctx.domain, a.u32(0)));
    case EVTCHNOP.reset:
      return inOut(2, (a) => reset(ctx, a.u16(0)));
    case EVTCHNOP.reset_cont:
      return inOut(2, (a) => reset(ctx, a.u16(0), true));
    case EVTCHNOP.init_control:
      return inOut(24, (a) => evtchnFifoInitControl(ctx, a.u64(0), a.u32(8), a.u32(12)), (a) => a.setU8(16, 17));
    case EVTCHNOP.expand_array:
      return inOut(8, (a) => evtchnFifoExpandArray(ctx, a.u64(0)));
    case EVTCHNOP.set_priority:
      return inOut(8, (a) => setPriority(ctx, a.u32(0), a.u32(4)));
  }
  return err('ENOSYS');
}

registerHypercalls({ [HYPERVISOR.event_channel_op]: eventChannelOp });

/** Raise a VIRQ as send_guest_vcpu_virq / send_guest_global_virq do; dropped when unbound. */
export function sendVirq(v: Vcpu, virq: number): void {
  if (virq < 0 || virq >= NR_VIRQS) return;
  const d = v.domain;
  if (!virqIsGlobal(virq)) {
    const port = vcpuEvtchn(v).virqToPort[virq];
    const ch = port ? channel(d, port) : undefined;
    if (ch) portSetPending(d, v.id, ch);
    return;
  }
  const v0 = d.vcpus[0];
  if (!v0) return;
  const port = vcpuEvtchn(v0).virqToPort[virq];
  const ch = port ? channel(d, port) : undefined;
  if (ch) portSetPending(d, ch.notifyVcpu, ch);
}

provideEventChannels({
  sendVirq,
  raisePort(v, port) {
    kvmRaisePort(v, port);
  },
  portPending(d, port) {
    const ch = channel(d, port);
    if (!ch || !usable(ch)) return null;
    return evtchnState(d).ops.isPending(d, port);
  },
  eventsDeliverable(v) {
    // Xen asks whether the HVM vCPU would take an interrupt now (xen/arch/x86/include/asm/event.h
    // local_events_need_delivery -> hvm_local_events_need_delivery); the kvm flavour's VMM
    // looks at evtchn_upcall_pending.
    if (v.domain.model.config.flavor === 'xen' && hvmDelivery.needed) return hvmDelivery.needed(v);
    const vi = v.vcpuInfoAddress();
    return vi !== null && v.domain.memory.u8(vi) !== 0;
  },
  onPending(fn) {
    pendingListeners.push(fn);
  },
});

// Domain destruction closes every port (evtchn_destroy): peers of interdomain
// channels become UNBOUND towards the dying domain.
modelHooks.destroy.push((_m: XenModel, d: Domain) => {
  const s = domStates.get(d);
  if (!s) return;
  for (let p = 1; p < s.chans.length; p++) if (s.chans[p].state > ECS.reserved) closePort(d, p);
});
