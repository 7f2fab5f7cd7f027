// Ops for event channels: every EVTCHNOP with its argument struct marshalled
// into the scratch page (public/event_channel.h; identical in 64-bit and
// compat), plus host/guest actions: a host-raised event (KVM_XEN_HVM_EVTCHN_SEND),
// the guest's upcall handler as Linux runs it (drivers/xen/events/events_2l.c,
// events_fifo.c, events_base.c), guest mask writes, and a Linux-style switch to FIFO.

import { z } from 'zod';
import { defineConstants } from './constants.js';
import { defineOp, int, reader, structCall, StructWriter, type Action, type OpContext, type Outcome } from './types.js';
import { HYPERVISOR, hypercall, type Regs } from '../model/hypercall.js';
import type { Domain, Vcpu, XenModel } from '../model/domain.js';
import { PAGE_SIZE } from '../model/guest-memory.js';
import {
  channel, EVTCHNOP, EVTCHNSTAT, evtchnState, newChannel, testAndClearBit, testBit, vcpuEvtchn, VIRQ, vmmInject,
} from '../model/evtchn.js';
import { maskBase, pendingBase, pendingSelAddress } from '../model/evtchn-2l.js';
import { controlBlockAddress, EVTCHN_FIFO, wordAddress } from '../model/evtchn-fifo.js';
import { callbackAsserted, HVM_PARAM, HVMOP, hvmVcpu } from '../model/hvm-op.js';
import { takeUpcalls } from '../model/upcall-take.js';
import { kvmSharedInfoInactive } from '../model/kvm-evtchn.js';

defineConstants('EVTCHNOP_', EVTCHNOP);
defineConstants('EVTCHNSTAT_', EVTCHNSTAT);
defineConstants('VIRQ_', VIRQ);
defineConstants('HVMOP_', HVMOP);
defineConstants('HVM_PARAM_', HVM_PARAM);
defineConstants('EVTCHN_FIFO_', {
  PENDING: EVTCHN_FIFO.PENDING, MASKED: EVTCHN_FIFO.MASKED, LINKED: EVTCHN_FIFO.LINKED, BUSY: EVTCHN_FIFO.BUSY,
  LINK_MASK: EVTCHN_FIFO.LINK_MASK, NR_CHANNELS: EVTCHN_FIFO.NR_CHANNELS,
});

/** Where `evtchn.use_fifo` puts the control block of vCPU n and event array page i (Linux picks any free pages). */
export const FIFO_LAYOUT = { controlBase: 0x200000, arrayBase: 0x300000 } as const;
defineConstants('FIFO_', { CONTROL_BASE: FIFO_LAYOUT.controlBase, ARRAY_BASE: FIFO_LAYOUT.arrayBase });

const call = (ctx: OpContext, cmd: number, w: StructWriter, decode?: Parameters<typeof structCall>[4]): Action =>
  structCall(ctx, HYPERVISOR.event_channel_op, [BigInt(cmd)], w, decode);

const DOMID_SELF = 0x7ff0n;

export const allocUnbound = defineOp({
  name: 'evtchn.alloc_unbound',
  summary: 'EVTCHNOP_alloc_unbound {dom u16@0, remote_dom u16@2, port u32@4 OUT}',
  args: z.strictObject({ dom: int().optional(), remote_dom: int().optional() }),
  requires: ['evtchn.2l'],
  out: ['port'],
  encode: (a, ctx) => call(ctx, EVTCHNOP.alloc_unbound,
    new StructWriter(8).u16(0, a.dom ?? DOMID_SELF).u16(2, a.remote_dom ?? DOMID_SELF),
    (b) => ({ port: reader(b).u32(4) })),
});

export const bindInterdomain = defineOp({
  name: 'evtchn.bind_interdomain',
  summary: 'EVTCHNOP_bind_interdomain {remote_dom u16@0, remote_port u32@4, local_port u32@8 OUT}',
  args: z.strictObject({ remote_dom: int().optional(), remote_port: int() }),
  requires: ['evtchn.2l'],
  out: ['local_port'],
  encode: (a, ctx) => call(ctx, EVTCHNOP.bind_interdomain,
    new StructWriter(12).u16(0, a.remote_dom ?? DOMID_SELF).u32(4, a.remote_port),
    (b) => ({ local_port: reader(b).u32(8) })),
});

export const bindVirq = defineOp({
  name: 'evtchn.bind_virq',
  summary: 'EVTCHNOP_bind_virq {virq u32@0, vcpu u32@4, port u32@8 OUT}',
  args: z.strictObject({ virq: int(), vcpu: int().optional() }),
  requires: ['evtchn.2l'],
  out: ['port'],
  encode: (a, ctx) => call(ctx, EVTCHNOP.bind_virq,
    new StructWriter(12).u32(0, a.virq).u32(4, a.vcpu ?? 0n),
    (b) => ({ port: reader(b).u32(8) })),
});

export const bindPirq = defineOp({
  name: 'evtchn.bind_pirq',
  summary: 'EVTCHNOP_bind_pirq {pirq u32@0, flags u32@4, port u32@8 OUT}',
  args: z.strictObject({ pirq: int(), flags: int().optional() }),
  requires: ['evtchn.2l'],
  out: ['port'],
  encode: (a, ctx) => call(ctx, EVTCHNOP.bind_pirq,
    new StructWriter(12).u32(0, a.pirq).u32(4, a.flags ?? 0n),
    (b) => ({ port: reader(b).u32(8) })),
});

export const bindIpi = defineOp({
  name: 'evtchn.bind_ipi',
  summary: 'EVTCHNOP_bind_ipi {vcpu u32@0, port u32@4 OUT}',
  args: z.strictObject({ vcpu: int().optional() }),
  requires: ['evtchn.2l'],
  out: ['port'],
  encode: (a, ctx) => call(ctx, EVTCHNOP.bind_ipi, new StructWriter(8).u32(0, a.vcpu ?? 0n), (b) => ({ port: reader(b).u32(4) })),
});

export const close = defineOp({
  name: 'evtchn.close',
  summary: 'EVTCHNOP_close {port u32@0}',
  args: z.strictObject({ port: int() }),
  requires: ['evtchn.2l'],
  encode: (a, ctx) => call(ctx, EVTCHNOP.close, new StructWriter(4).u32(0, a.port)),
});

export const send = defineOp({
  name: 'evtchn.send',
  summary: 'EVTCHNOP_send {port u32@0}',
  args: z.strictObject({ port: int() }),
  requires: ['evtchn.send'],
  encode: (a, ctx) => call(ctx, EVTCHNOP.send, new StructWriter(4).u32(0, a.port)),
});

export const status = defineOp({
  name: 'evtchn.status',
  summary: 'EVTCHNOP_status {dom u16@0, port u32@4; status u32@8, vcpu u32@12, union@16} (24 bytes)',
  args: z.strictObject({ dom: int().optional(), port: int() }),
  requires: ['evtchn.2l'],
  out: ['status', 'vcpu', 'remote_dom', 'remote_port', 'pirq', 'virq'],
  encode: (a, ctx) => call(ctx, EVTCHNOP.status, new StructWriter(24).u16(0, a.dom ?? DOMID_SELF).u32(4, a.port), (b) => {
    const r = reader(b);
    return { status: r.u32(8), vcpu: r.u32(12), remote_dom: r.u16(16), remote_port: r.u32(20), pirq: r.u32(16), virq: r.u32(16) };
  }),
});

export const bindVcpu = defineOp({
  name: 'evtchn.bind_vcpu',
  summary: 'EVTCHNOP_bind_vcpu {port u32@0, vcpu u32@4}',
  args: z.strictObject({ port: int(), vcpu: int() }),
  requires: ['evtchn.2l'],
  encode: (a, ctx) => call(ctx, EVTCHNOP.bind_vcpu, new StructWriter(8).u32(0, a.port).u32(4, a.vcpu)),
});

export const unmask = defineOp({
  name: 'evtchn.unmask',
  summary: 'EVTCHNOP_unmask {port u32@0}',
  args: z.strictObject({ port: int() }),
  requires: ['evtchn.2l'],
  encode: (a, ctx) => call(ctx, EVTCHNOP.unmask, new StructWriter(4).u32(0, a.port)),
});

export const reset = defineOp({
  name: 'evtchn.reset',
  summary: 'EVTCHNOP_reset {dom u16@0}',
  args: z.strictObject({ dom: int().optional() }),
  requires: ['evtchn.2l'],
  encode: (a, ctx) => call(ctx, EVTCHNOP.reset, new StructWriter(2).u16(0, a.dom ?? DOMID_SELF)),
});

export const initControl = defineOp({
  name: 'evtchn.init_control',
  summary: 'EVTCHNOP_init_control {control_gfn u64@0, offset u32@8, vcpu u32@12; link_bits u8@16 OUT} (24 bytes)',
  args: z.strictObject({ control_gfn: int(), offset: int().optional(), vcpu: int().optional() }),
  requires: ['evtchn.fifo'],
  out: ['link_bits'],
  encode: (a, ctx) => call(ctx, EVTCHNOP.init_control,
    new StructWriter(24).u64(0, a.control_gfn).u32(8, a.offset ?? 0n).u32(12, a.vcpu ?? 0n),
    (b) => ({ link_bits: reader(b).u8(16) })),
});

export const expandArray = defineOp({
  name: 'evtchn.expand_array',
  summary: 'EVTCHNOP_expand_array {array_gfn u64@0}',
  args: z.strictObject({ array_gfn: int() }),
  requires: ['evtchn.fifo'],
  encode: (a, ctx) => call(ctx, EVTCHNOP.expand_array, new StructWriter(8).u64(0, a.array_gfn)),
});

export const setPriority = defineOp({
  name: 'evtchn.set_priority',
  summary: 'EVTCHNOP_set_priority {port u32@0, priority u32@4}',
  args: z.strictObject({ port: int(), priority: int() }),
  requires: ['evtchn.2l'],
  encode: (a, ctx) => call(ctx, EVTCHNOP.set_priority, new StructWriter(8).u32(0, a.port).u32(4, a.priority)),
});

export const evtchnOpRaw = defineOp({
  name: 'evtchn.op',
  summary: 'HYPERVISOR_event_channel_op(cmd, arg) with a raw argument pointer',
  args: z.strictObject({ cmd: int(), arg: int().optional() }),
  requires: ['evtchn.2l'],
  encode: (a): Action => ({ kind: 'hypercall', nr: HYPERVISOR.event_channel_op, args: [a.cmd, a.arg ?? 0n], writes: [] }),
});

// ---------------------------------------------------------------------------
// Guest- and host-side actions.

/** The registers of an event_channel_op(cmd, gpa) in a vCPU mode's calling convention. */
function evtchnOpRegs(mode: 32 | 64, cmd: number, gpa: number): Regs {
  return mode === 64
    ? { rax: BigInt(HYPERVISOR.event_channel_op), rdi: BigInt(cmd), rsi: BigInt(gpa) }
    : { rax: BigInt(HYPERVISOR.event_channel_op), rbx: BigInt(cmd), rcx: BigInt(gpa) };
}

/** Issue one event_channel_op from a vCPU with its struct at `gpa`, as guest code would. */
export function guestEvtchnOp(m: XenModel, v: Vcpu, cmd: number, gpa: number, struct: Uint8Array): { ret: bigint; out: Uint8Array } {
  v.domain.memory.write(gpa, struct);
  const r = hypercall(m, v, evtchnOpRegs(v.mode, cmd, gpa));
  return { ret: r.ret, out: v.domain.memory.read(gpa, struct.length) };
}

/**
 * Linux's switch to FIFO (evtchn_fifo_init / init_control_block / evtchn_fifo_setup):
 * a zeroed control block per vCPU, then event array pages (Linux fills them
 * with MASKED; `mask_all: 0` leaves them zero).
 */
export function useFifo(m: XenModel, v: Vcpu, scratch: number, pages: number, maskAll: boolean): Outcome {
  const d = v.domain;
  for (const x of d.vcpus) {
    const cb = FIFO_LAYOUT.controlBase + x.id * PAGE_SIZE;
    d.memory.fill(cb, PAGE_SIZE, 0);
    const w = new StructWriter(24).u64(0, cb / PAGE_SIZE).u32(8, 0).u32(12, x.id);
    const r = guestEvtchnOp(m, v, EVTCHNOP.init_control, scratch, w.bytes);
    if (r.ret !== 0n) return { ret: r.ret };
  }
  for (let i = 0; i < pages; i++) {
    const page = FIFO_LAYOUT.arrayBase + i * PAGE_SIZE;
    const init = new Uint8Array(PAGE_SIZE);
    if (maskAll) for (let o = 0; o < PAGE_SIZE; o += 4) init[o + 3] = 0x40; // MASKED (bit 30)
    d.memory.write(page, init);
    const r = guestEvtchnOp(m, v, EVTCHNOP.expand_array, scratch, new StructWriter(8).u64(0, page / PAGE_SIZE).bytes);
    if (r.ret !== 0n) return { ret: r.ret };
  }
  return { ret: 0n };
}

export const useFifoOp = defineOp({
  name: 'evtchn.use_fifo',
  summary: 'Guest switches to FIFO as Linux does: init_control for every vCPU (control block of vCPU n at FIFO_CONTROL_BASE + n*4096), then `pages` event array pages at FIFO_ARRAY_BASE; `enable: 0` does nothing (2-level variant of a matrix)',
  args: z.strictObject({ enable: int().optional(), pages: int().optional(), mask_all: int().optional() }),
  requires: ['evtchn.fifo'],
  inert: (a) => a.enable === 0n,
  encode: (a, ctx): Action => ({ kind: 'host', op: 'evtchn.use_fifo', args: { ...a, scratch: BigInt(ctx.scratch) } }),
  model(m, a, at) {
    const args = a as typeof a & { scratch: bigint };
    if ((args.enable ?? 1n) === 0n) return { ret: 0n };
    return useFifo(m, at.vcpu, Number(args.scratch), Number(args.pages ?? 1n), (args.mask_all ?? 0n) !== 0n);
  },
});

/** Linux's per-CPU FIFO consumer state: the local head of each queue (events_fifo.c cpu_queue). */
const localHeads = new WeakMap<Vcpu, number[]>();

/** clear_linked: atomically clear LINKED and LINK, returning the old LINK. */
function clearLinked(d: Domain, a: number): number {
  const w = d.memory.u32(a);
  d.memory.setU32(a, (w & ~((1 << EVTCHN_FIFO.LINKED) | EVTCHN_FIFO.LINK_MASK)) >>> 0);
  return w & EVTCHN_FIFO.LINK_MASK;
}

/**
 * The guest's upcall handler (__xen_evtchn_do_upcall): clear evtchn_upcall_pending,
 * run the ABI's handler, repeat while upcall_pending was set again. Handling a
 * port clears its pending state (the irq ack). Returns the ports in the order handled.
 */
export function runUpcall(v: Vcpu): number[] {
  const d = v.domain;
  const vi = v.vcpuInfoAddress();
  const handled: number[] = [];
  if (vi === null) return handled;
  const fifo = evtchnState(d).ops.abi === 'fifo';
  for (let guard = 0; guard < 1000; guard++) {
    d.memory.setU8(vi, 0);
    if (fifo) handleFifo(v, handled);
    else handle2l(v, handled);
    if (d.memory.u8(vi) === 0) break;
  }
  return handled;
}

/**
 * evtchn_2l_handle_events: xchg the selector, scan pending & ~mask of each
 * selected word, restricted (as Linux's per-CPU cpu_evtchn_mask does) to ports
 * bound to this vCPU; Linux keeps that mask equal to the port's notify vCPU.
 */
function handle2l(v: Vcpu, handled: number[]): void {
  const d = v.domain;
  const W = d.width;
  const selAddr = pendingSelAddress(v)!;
  const size = W === 64 ? 8 : 4;
  let sel = d.memory.readU(selAddr, size);
  d.memory.writeU(selAddr, size, 0n);
  const p = pendingBase(d);
  const mk = maskBase(d);
  for (let word = 0; sel !== 0n; word++) {
    if (!((sel >> BigInt(word)) & 1n)) continue;
    sel &= ~(1n << BigInt(word));
    for (let bit = 0; bit < W; bit++) {
      const port = word * W + bit;
      const owner = channel(d, port)?.notifyVcpu ?? 0;
      if (owner === v.id && testBit(p.mem, p.base, port) && !testBit(mk.mem, mk.base, port)) {
        testAndClearBit(p.mem, p.base, port);
        handled.push(port);
      }
    }
  }
}

/** __evtchn_fifo_handle_events / consume_one_event. */
function handleFifo(v: Vcpu, handled: number[]): void {
  const d = v.domain;
  const cb = controlBlockAddress(v);
  if (cb === null) return;
  let heads = localHeads.get(v);
  if (!heads) {
    heads = new Array(EVTCHN_FIFO.MAX_QUEUES).fill(0);
    localHeads.set(v, heads);
  }
  const xchgReady = (): number => {
    const r = d.memory.u32(cb);
    d.memory.setU32(cb, 0);
    return r;
  };
  let ready = xchgReady();
  for (let guard = 0; ready !== 0 && guard < 1 << 20; guard++) {
    const q = 31 - Math.clz32(ready & -ready);
    let head = heads[q];
    if (head === 0) head = d.memory.u32(cb + 8 + 4 * q);
    const port = head;
    const word = wordAddress(d, port);
    if (word === null) {
      // A head outside the array: Linux would fault; stop consuming this queue.
      ready &= ~(1 << q);
      heads[q] = 0;
      continue;
    }
    const next = clearLinked(d, word);
    if (next === 0) ready &= ~(1 << q);
    const w = d.memory.u32(word);
    if (w & (1 << EVTCHN_FIFO.PENDING) && !(w & (1 << EVTCHN_FIFO.MASKED))) {
      d.memory.setU32(word, (d.memory.u32(word) & ~(1 << EVTCHN_FIFO.PENDING)) >>> 0);
      handled.push(port);
    }
    heads[q] = next;
    ready |= xchgReady();
  }
}

export const runUpcallOp = defineOp({
  name: 'evtchn.run_upcall',
  summary: "Run the guest's event upcall handler on the step's vCPU as Linux does; OUT handled = ports in the order handled",
  args: z.strictObject({}).optional(),
  requires: ['vcpu_info'],
  out: ['handled'],
  encode: (): Action => ({ kind: 'host', op: 'evtchn.run_upcall', args: {} }),
  model: (_m, _a, at) => ({ out: { handled: runUpcall(at.vcpu).map(BigInt) } }),
});

/** Set or clear a port's mask bit as the guest does with a plain atomic op (no hypercall). */
export function guestSetMask(d: Domain, port: number, masked: boolean): boolean {
  if (evtchnState(d).ops.abi === 'fifo') {
    const a = wordAddress(d, port);
    if (a === null) return false;
    const w = d.memory.u32(a);
    const bit = 1 << EVTCHN_FIFO.MASKED;
    d.memory.setU32(a, (masked ? w | bit : w & ~bit) >>> 0);
    return true;
  }
  if (port >= d.width * d.width) return false;
  const mk = maskBase(d);
  const a = mk.base + (port >> 3);
  const b = mk.mem.u8(a);
  mk.mem.setU8(a, masked ? b | (1 << (port & 7)) : b & ~(1 << (port & 7)));
  return true;
}

export const setMask = defineOp({
  name: 'evtchn.set_mask',
  summary: 'Guest sets (masked: 1, default) or clears (masked: 0) the mask of a port in the current ABI: shared_info evtchn_mask bit or the event word MASKED bit',
  args: z.strictObject({ port: int(), masked: int().optional() }),
  requires: ['evtchn.2l'],
  encode: (a): Action => ({ kind: 'host', op: 'evtchn.set_mask', args: a }),
  model(_m, a, at) {
    return guestSetMask(at.dom, Number(a.port), (a.masked ?? 1n) !== 0n) ? {} : { fault: `port ${a.port} has no mask bit in the current ABI` };
  },
});

/**
 * KVM_XEN_HVM_EVTCHN_SEND: the host raises `port` on `vcpu` directly (the
 * kernel has no port table: the port's state is not consulted). Priority must
 * be KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL (0); in FIFO mode the model queues
 * at the port's own priority. -EINVAL for port 0, a port past the ABI or a missing vCPU.
 */
export function hostSend(m: XenModel, d: Domain, port: number, vcpuId: number, priority: number): bigint {
  void m;
  const s = evtchnState(d);
  if (priority !== 0) return -22n;
  // Port 0 is never raised: kvm_xen_hvm_evtchn_send refuses it with the ports past the ABI
  // (found by xconf fuzz --target=kvm; the model said 0).
  if (port <= 0 || port >= s.ops.maxPorts(d)) return -22n;
  if (!d.vcpu(vcpuId)) return -22n;
  // KVM's shared_info taken away: its slow path cannot refresh an inactive cache (kvm_xen_set_evtchn).
  if (kvmSharedInfoInactive(d)) return -22n;
  // Ports beyond the allocated buckets have no struct evtchn: raise a transient one.
  const ch = channel(d, port) ?? newChannel(port);
  s.ops.setPending(d.vcpus[vcpuId], ch);
  return 0n;
}

export const hostSendOp = defineOp({
  name: 'evtchn.host_send',
  summary: 'Host raises an event (KVM_XEN_HVM_EVTCHN_SEND {port, vcpu, priority}); vcpu defaults to the step vCPU',
  args: z.strictObject({ port: int(), vcpu: int().optional(), priority: int().optional() }),
  requires: ['evtchn.host_send'],
  encode: (a, ctx): Action => ({ kind: 'host', op: 'evtchn.host_send', args: { ...a, vcpu: a.vcpu ?? BigInt(ctx.vcpu) } }),
  model: (m, a, at) => ({ ret: hostSend(m, at.dom, Number(a.port), Number(a.vcpu), Number(a.priority ?? 0n)) }),
});

export const vmmInjectOp = defineOp({
  name: 'evtchn.vmm_inject',
  summary: "The VMM raises an allocated port of the guest on the port's own vCPU (QEMU: QMP xen-event-inject); -EINVAL for a free port, port 0 or one past the table",
  args: z.strictObject({ port: int() }),
  requires: ['evtchn.2l'],
  encode: (a): Action => ({ kind: 'host', op: 'evtchn.vmm_inject', args: { ...a } }),
  model: (m, a, at) => ({ ret: BigInt(vmmInject(at.dom, Number(a.port))) }),
});

export const allocMany = defineOp({
  name: 'evtchn.alloc_many',
  summary: 'Guest loop of EVTCHNOP_alloc_unbound(DOMID_SELF, remote_dom) `count` times; stops at the first error. OUT allocated (count), last (last port); ret = first error or 0',
  args: z.strictObject({ count: int(), remote_dom: int().optional() }),
  requires: ['evtchn.2l'],
  out: ['allocated', 'last'],
  encode: (a, ctx): Action => ({ kind: 'host', op: 'evtchn.alloc_many', args: { ...a, scratch: BigInt(ctx.scratch) } }),
  model(m, a, at) {
    const args = a as typeof a & { scratch: bigint };
    const v = at.vcpu;
    const gpa = Number(args.scratch);
    // The guest's struct is the same for every call (port is OUT): built once, written
    // before each call as the guest's loop does; each call is a whole modelled hypercall.
    const struct = new StructWriter(8).u16(0, DOMID_SELF).u16(2, args.remote_dom ?? DOMID_SELF).bytes;
    const regs64 = evtchnOpRegs(64, EVTCHNOP.alloc_unbound, gpa);
    const regs32 = evtchnOpRegs(32, EVTCHNOP.alloc_unbound, gpa);
    // Counted in numbers (BigInt increments cost more than the call): a count past 2^53
    // runs until the first error either way.
    const count = args.count <= 0n ? 0 : args.count > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(args.count);
    let n = 0;
    let last = 0;
    for (; n < count; n++) {
      v.domain.memory.write(gpa, struct);
      const r = hypercall(m, v, v.mode === 64 ? regs64 : regs32);
      if (r.ret !== 0n) return { ret: r.ret, out: { allocated: BigInt(n), last: BigInt(last) } };
      // The port the call wrote back (what reading the struct's OUT field gives).
      last = v.domain.memory.u32(gpa + 4);
    }
    return { ret: 0n, out: { allocated: BigInt(n), last: BigInt(last) } };
  },
});

export const upcallCount = defineOp({
  name: 'evtchn.upcall_count',
  summary: "How the step's vCPU was signalled: upcalls (0->1 transitions of evtchn_upcall_pending made by the hypervisor), vector_injections and last_vector (per-vCPU upcall vector), callback_asserted (domain callback vector / GSI line asserted for this vCPU now)",
  args: z.strictObject({}).optional(),
  requires: ['evtchn.2l'],
  out: ['upcalls', 'vector_injections', 'last_vector', 'callback_asserted'],
  encode: (): Action => ({ kind: 'host', op: 'evtchn.upcall_count', args: {} }),
  model: (_m, _a, at) => {
    const hv = hvmVcpu(at.vcpu);
    return {
      out: {
        upcalls: BigInt(vcpuEvtchn(at.vcpu).upcalls),
        vector_injections: BigInt(hv.vectorInjections),
        last_vector: BigInt(hv.lastVector),
        callback_asserted: callbackAsserted(at.vcpu) ? 1n : 0n,
      },
    };
  },
});

/** Default wait of evtchn.take_upcalls: long enough for an upcall already injected, under emulation too. */
export const TAKE_UPCALLS_DEFAULT_TIMEOUT_MS = 1000n;

export const takeUpcallsOp = defineOp({
  name: 'evtchn.take_upcalls',
  summary: "The guest on the step's vCPU enables interrupts and takes its pending upcalls (handler: record the vector, clear evtchn_upcall_pending, EOI), waiting up to timeout_ms (default 1000) for `count` (default 1) of them. OUT taken (upcall interrupts taken; a vector injected again before it was taken is taken once), last_vector (0 if none)",
  args: z.strictObject({ count: int().optional(), timeout_ms: int().optional() }).optional(),
  requires: ['vcpu_info'],
  out: ['taken', 'last_vector'],
  encode: (a): Action => ({
    kind: 'host', op: 'evtchn.take_upcalls',
    args: { count: a?.count ?? 1n, timeout_ms: a?.timeout_ms ?? TAKE_UPCALLS_DEFAULT_TIMEOUT_MS },
  }),
  // Nothing arrives while the model's guest waits: it takes what is pending now.
  model: (_m, _a, at) => {
    const { vectors } = takeUpcalls(at.vcpu);
    return { out: { taken: BigInt(vectors.length), last_vector: BigInt(vectors.at(-1) ?? 0) } };
  },
});

export const setUpcallVector = defineOp({
  name: 'hvm.set_evtchn_upcall_vector',
  summary: 'HVMOP_set_evtchn_upcall_vector {vcpu u32@0, vector u8@4} (8 bytes)',
  args: z.strictObject({ vcpu: int().optional(), vector: int() }),
  requires: ['vcpu_info'],
  encode: (a, ctx) => structCall(ctx, HYPERVISOR.hvm_op, [BigInt(HVMOP.set_evtchn_upcall_vector)],
    new StructWriter(8).u32(0, a.vcpu ?? BigInt(ctx.vcpu)).u8(4, a.vector)),
});

export const hvmSetParam = defineOp({
  name: 'hvm.set_param',
  summary: 'HVMOP_set_param {domid u16@0, index u32@4, value u64@8} (16 bytes); the model implements HVM_PARAM_CALLBACK_IRQ',
  args: z.strictObject({ domid: int().optional(), index: int(), value: int() }),
  requires: ['vcpu_info'],
  encode: (a, ctx) => structCall(ctx, HYPERVISOR.hvm_op, [BigInt(HVMOP.set_param)],
    new StructWriter(16).u16(0, a.domid ?? DOMID_SELF).u32(4, a.index).u64(8, a.value)),
});

export const hvmGetParam = defineOp({
  name: 'hvm.get_param',
  summary: 'HVMOP_get_param {domid u16@0, index u32@4; value u64@8 OUT}',
  args: z.strictObject({ domid: int().optional(), index: int() }),
  requires: ['vcpu_info'],
  out: ['value'],
  encode: (a, ctx) => structCall(ctx, HYPERVISOR.hvm_op, [BigInt(HVMOP.get_param)],
    new StructWriter(16).u16(0, a.domid ?? DOMID_SELF).u32(4, a.index), (b) => ({ value: reader(b).u64(8) })),
});
