// The FIFO event channel ABI: per-port event words in guest-supplied event
// array pages, per-vCPU control blocks with READY bits and queue heads, 16
// priority queues per vCPU whose tails are Xen-private.
// Source: xen/common/event_fifo.c (evtchn_fifo_init_control, map_control_block,
// setup_ports, evtchn_fifo_expand_array, add_page_to_event_array,
// evtchn_fifo_set_pending, evtchn_fifo_set_link, evtchn_fifo_unmask,
// evtchn_fifo_clear_pending, evtchn_fifo_is_busy, evtchn_fifo_set_priority,
// evtchn_fifo_init, evtchn_fifo_destroy), xen/include/public/event_channel.h.

import { err } from './errno.js';
import type { Domain, Vcpu } from './domain.js';
import { PAGE_SIZE } from './guest-memory.js';
import type { HypercallContext } from './hypercall.js';
import { registerArea } from './areas.js';
import type { StructLayout } from './memory-layout.js';
import {
  checkPollers, evtchnState, FIFO_PRIORITY_DEFAULT, markEventsPending, portIsValid, setPortOps,
  testBit, type Channel, type PortOps,
} from './evtchn.js';
import { pendingBase, wordBits } from './evtchn-2l.js';

export const EVTCHN_FIFO = {
  PENDING: 31, MASKED: 30, LINKED: 29, BUSY: 28,
  LINK_BITS: 17, LINK_MASK: 0x1ffff, NR_CHANNELS: 1 << 17, MAX_QUEUES: 16,
  PRIORITY_MAX: 0, PRIORITY_DEFAULT: 7, PRIORITY_MIN: 15,
  EVENT_WORDS_PER_PAGE: 1024, MAX_EVENT_ARRAY_PAGES: 128,
} as const;

/** struct evtchn_fifo_control_block: 72 bytes. */
export const CONTROL_BLOCK_SIZE = 72;

const PENDING = 1 << EVTCHN_FIFO.PENDING;
const MASKED = 1 << EVTCHN_FIFO.MASKED;
const LINKED = 1 << EVTCHN_FIFO.LINKED;
const BUSY = 1 << EVTCHN_FIFO.BUSY;

interface FifoDomain {
  /** gpa of each event array page, by slot. */
  pages: number[];
}

interface FifoVcpu {
  /** gpa of the control block, or null until init_control for this vCPU. */
  controlBlock: number | null;
  /** Xen-private queue tails, one per priority. */
  tails: number[];
}

const fifoDomains = new WeakMap<Domain, FifoDomain>();
const fifoVcpus = new WeakMap<Vcpu, FifoVcpu>();

function fifoVcpu(v: Vcpu): FifoVcpu {
  let s = fifoVcpus.get(v);
  if (!s) {
    s = { controlBlock: null, tails: new Array(EVTCHN_FIFO.MAX_QUEUES).fill(0) };
    fifoVcpus.set(v, s);
  }
  return s;
}

/** gpa of a port's event word, or null if its array page is not there (evtchn_fifo_word_from_port). */
export function wordAddress(d: Domain, port: number): number | null {
  const f = fifoDomains.get(d);
  if (!f || port < 0) return null;
  const slot = Math.floor(port / EVTCHN_FIFO.EVENT_WORDS_PER_PAGE);
  if (slot >= f.pages.length) return null;
  return f.pages[slot] + (port % EVTCHN_FIFO.EVENT_WORDS_PER_PAGE) * 4;
}

export function controlBlockAddress(v: Vcpu): number | null {
  return fifoVcpus.get(v)?.controlBlock ?? null;
}

/** Xen-private tail of a queue (for invariant checks). */
export function queueTail(v: Vcpu, prio: number): number {
  return fifoVcpus.get(v)?.tails[prio] ?? 0;
}

const readWord = (d: Domain, a: number): number => d.memory.u32(a);
const writeWord = (d: Domain, a: number, w: number): void => d.memory.setU32(a, w >>> 0);

/** Atomically set LINK of the tail word iff it is still LINKED (try_set_link, no contention in the model). */
function setLink(d: Domain, tailAddr: number, port: number): boolean {
  const w = readWord(d, tailAddr);
  if (!(w & LINKED)) return false;
  writeWord(d, tailAddr, (w & ~(BUSY | EVTCHN_FIFO.LINK_MASK)) | port);
  return true;
}

function setPending(v: Vcpu, ch: Channel): void {
  const d = v.domain;
  const port = ch.port;
  const word = wordAddress(d, port);
  if (word === null) {
    ch.fifoPending = true;
    return;
  }
  const vf = fifoVcpu(v);
  // Control block not mapped: the event is dropped (Xen only logs a warning).
  // Current Xen checks this before setting PENDING (spec/xen-abi.md 3.5); some
  // earlier 4.x releases set PENDING first and then dropped the linking.
  if (vf.controlBlock === null) return;
  const q = { vcpu: v, prio: ch.priority };
  const oldV = d.vcpus[ch.lastVcpu];
  const oldQ = oldV ? fifoVcpu(oldV) : undefined;
  let w = readWord(d, word);
  const wasPending = (w & PENDING) !== 0;
  w |= PENDING;
  writeWord(d, word, w);
  let linked = true;
  if (!(w & MASKED) && !(w & LINKED)) {
    writeWord(d, word, w | LINKED);
    // If this event was the old queue's tail, that queue is now empty.
    if (oldQ && oldQ.tails[ch.lastPriority] === port) oldQ.tails[ch.lastPriority] = 0;
    ch.lastVcpu = v.id;
    ch.lastPriority = q.prio;
    linked = false;
    const tail = vf.tails[q.prio];
    if (tail) {
      const tw = wordAddress(d, tail);
      linked = tw !== null && setLink(d, tw, port);
    }
    if (!linked) d.memory.setU32(vf.controlBlock + 8 + 4 * q.prio, port);
    vf.tails[q.prio] = port;
  }
  if (!linked) {
    const cb = vf.controlBlock;
    const ready = d.memory.u32(cb);
    const bit = 1 << q.prio;
    if (!(ready & bit)) {
      d.memory.setU32(cb, (ready | bit) >>> 0);
      markEventsPending(v);
    }
  }
  if (!wasPending) checkPollers(d, port);
}

function clearPending(d: Domain, ch: Channel): void {
  const a = wordAddress(d, ch.port);
  if (a === null) return;
  writeWord(d, a, readWord(d, a) & ~PENDING);
}

function unmask(d: Domain, ch: Channel): void {
  const v = d.vcpus[ch.notifyVcpu];
  const a = wordAddress(d, ch.port);
  if (a === null || !v) return;
  const w = readWord(d, a) & ~MASKED;
  writeWord(d, a, w);
  if (w & PENDING) setPending(v, ch);
}

export const opsFifo: PortOps = {
  abi: 'fifo',
  maxPorts: () => EVTCHN_FIFO.NR_CHANNELS,
  init(_d, ch) {
    ch.priority = FIFO_PRIORITY_DEFAULT;
  },
  setPending,
  clearPending,
  unmask,
  isPending(d, port) {
    const a = wordAddress(d, port);
    return a !== null && (readWord(d, a) & PENDING) !== 0;
  },
  isMasked(d, port) {
    const a = wordAddress(d, port);
    return a === null || (readWord(d, a) & MASKED) !== 0;
  },
  isBusy(d, port) {
    const a = wordAddress(d, port);
    return a !== null && (readWord(d, a) & LINKED) !== 0;
  },
  setPriority(_d, ch, prio) {
    if (prio > EVTCHN_FIFO.PRIORITY_MIN) return err('EINVAL');
    ch.priority = prio;
    return 0;
  },
};

/** A guest frame Xen can map writable: inside guest RAM. */
function frameGpa(d: Domain, gfn: bigint): number | null {
  const gpa = Number(gfn) * PAGE_SIZE;
  if (gfn > BigInt(Number.MAX_SAFE_INTEGER) / BigInt(PAGE_SIZE) || !d.memory.contains(gpa, PAGE_SIZE)) return null;
  return gpa;
}

/** EVTCHNOP_init_control. */
export function evtchnFifoInitControl(ctx: HypercallContext, gfn: bigint, offset: number, vcpuId: number): number {
  const d = ctx.domain;
  const v = d.vcpu(vcpuId);
  if (!v) return err('ENOENT');
  if (offset > PAGE_SIZE - CONTROL_BLOCK_SIZE) return err('EINVAL');
  if (offset & 7) return err('EINVAL');
  const first = !fifoDomains.has(d);
  const vf = fifoVcpu(v);
  if (vf.controlBlock !== null) return err('EINVAL');
  const page = frameGpa(d, gfn);
  if (page === null) return err('EINVAL');
  if (first) {
    // Switch the domain: per-vCPU queues, an empty event array, FIFO port ops.
    const prevPorts = wordBits(d) * wordBits(d);
    fifoDomains.set(d, { pages: [] });
    for (const x of d.vcpus) fifoVcpus.set(x, { controlBlock: null, tails: new Array(EVTCHN_FIFO.MAX_QUEUES).fill(0) });
    fifoVcpu(v).controlBlock = page + offset;
    setPortOps(d, opsFifo);
    // setup_ports: save 2-level pending state, reset priorities. Masks are not carried over.
    const p = pendingBase(d);
    const s = evtchnState(d);
    for (let port = 1; port < prevPorts; port++) {
      if (!portIsValid(d, port)) break;
      const ch = s.chans[port];
      if (testBit(p.mem, p.base, port)) ch.fifoPending = true;
      ch.priority = FIFO_PRIORITY_DEFAULT;
    }
  } else {
    vf.controlBlock = page + offset;
  }
  d.areas.set(`fifo_control/${v.id}`, page + offset);
  return 0;
}

/** EVTCHNOP_expand_array (add_page_to_event_array). */
export function evtchnFifoExpandArray(ctx: HypercallContext, gfn: bigint): number {
  const d = ctx.domain;
  const f = fifoDomains.get(d);
  if (!f) return err('EOPNOTSUPP');
  const slot = f.pages.length;
  if (slot >= EVTCHN_FIFO.MAX_EVENT_ARRAY_PAGES) return err('ENOSPC');
  const page = frameGpa(d, gfn);
  if (page === null) return err('EINVAL');
  f.pages.push(page);
  d.areas.set(`evtchn_array/${slot}`, page);
  // Re-raise events that became pending while this page was missing.
  const s = evtchnState(d);
  const end = (slot + 1) * EVTCHN_FIFO.EVENT_WORDS_PER_PAGE;
  for (let port = slot * EVTCHN_FIFO.EVENT_WORDS_PER_PAGE; port < end; port++) {
    if (!portIsValid(d, port)) break;
    const ch = s.chans[port];
    const v = d.vcpus[ch.notifyVcpu];
    if (ch.fifoPending && v) setPending(v, ch);
  }
  return 0;
}

/** evtchn_fifo_destroy: forget the array and control blocks (EVTCHNOP_reset). */
export function fifoDestroy(d: Domain): void {
  const f = fifoDomains.get(d);
  if (f) for (let i = 0; i < f.pages.length; i++) d.areas.delete(`evtchn_array/${i}`);
  fifoDomains.delete(d);
  for (const v of d.vcpus) {
    fifoVcpus.delete(v);
    d.areas.delete(`fifo_control/${v.id}`);
  }
  // The per-port saved "pending" flags are left as they are (Xen never clears them).
}

export function isFifo(d: Domain): boolean {
  return fifoDomains.has(d);
}

// Memory paths: `evtchn_word[$port].value` / `.bit[EVTCHN_FIFO_PENDING]`,
// `fifo_control[$vcpu].ready`, `fifo_control[$vcpu].head[7]`.
const EVENT_WORD: StructLayout = {
  name: 'evtchn_word',
  size: 4,
  fields: {
    value: { offset: 0, type: 'u32' },
    bit: { offset: 0, type: 'bits', wordBits: 32, count: 32 },
  },
};

const CONTROL_BLOCK: StructLayout = {
  name: 'fifo_control',
  size: CONTROL_BLOCK_SIZE,
  fields: {
    ready: { offset: 0, type: 'u32' },
    head: { offset: 8, type: 'u32', count: 16 },
  },
};

registerArea({
  name: 'evtchn_word',
  indexed: true,
  layout: () => EVENT_WORD,
  locate: (view, port) => {
    const page = view.get(`evtchn_array/${Math.floor(port / EVTCHN_FIFO.EVENT_WORDS_PER_PAGE)}`);
    return page === undefined ? undefined : page + (port % EVTCHN_FIFO.EVENT_WORDS_PER_PAGE) * 4;
  },
});

registerArea({
  name: 'fifo_control',
  indexed: true,
  layout: () => CONTROL_BLOCK,
  locate: (view, i) => view.get(`fifo_control/${i}`),
});
