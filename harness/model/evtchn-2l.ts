// The 2-level event channel ABI: pending and mask bitmaps in shared_info, the
// selector word and upcall flag in the notified vCPU's vcpu_info.
// Source: xen/common/event_2l.c (evtchn_2l_set_pending, evtchn_2l_clear_pending,
// evtchn_2l_unmask, evtchn_2l_is_pending, evtchn_2l_is_masked, evtchn_2l_init),
// xen/include/xen/event.h (max_evtchns: BITS_PER_EVTCHN_WORD^2).

import { modelHooks, type Domain, type Vcpu } from './domain.js';
import { SHARED_INFO } from './memory-layout.js';
import { kvmHoldSelectorBit, kvmHoldsSelector, kvmVcpuAttrs } from './kvm-vcpu.js';
import {
  checkPollers, evtchnState, markEventsPending, sharedInfoMem, testAndClearBit, testAndSetBit, testBit,
  type Channel, type PortOps,
} from './evtchn.js';

/** Bits per bitmap word: the latched shared_info width (has_32bit_shinfo). */
export function wordBits(d: Domain): 32 | 64 {
  return d.width;
}

export function pendingBase(d: Domain): { mem: ReturnType<typeof sharedInfoMem>['mem']; base: number } {
  const si = sharedInfoMem(d);
  return { mem: si.mem, base: si.base + SHARED_INFO[d.width].fields.evtchn_pending.offset };
}

export function maskBase(d: Domain): { mem: ReturnType<typeof sharedInfoMem>['mem']; base: number } {
  const si = sharedInfoMem(d);
  return { mem: si.mem, base: si.base + SHARED_INFO[d.width].fields.evtchn_mask.offset };
}

/** Byte address of a vCPU's evtchn_pending_sel, or null without a vcpu_info. */
export function pendingSelAddress(v: Vcpu): number | null {
  const vi = v.vcpuInfoAddress();
  if (vi === null) return null;
  return vi + (v.domain.width === 64 ? 8 : 4);
}

/**
 * The selector bit of `port` in the vCPU's vcpu_info, and the upcall when it was clear.
 * KVM without a vcpu_info to write (the VMM took it away) holds the bit in-kernel instead
 * and delivers it at the vCPU's next entry (arch/x86/kvm/xen.c kvm_xen_set_evtchn_fast).
 */
function raiseSelector(v: Vcpu, port: number): void {
  const word = Math.floor(port / wordBits(v.domain));
  if (kvmHoldsSelector(v)) {
    kvmHoldSelectorBit(v, word);
    return;
  }
  const sel = pendingSelAddress(v);
  if (sel !== null && !testAndSetBit(v.domain.memory, sel, word)) markEventsPending(v);
}

/**
 * kvm_xen_inject_pending_events, at a vCPU's entry that delivers: the selector bits KVM
 * held go into vcpu_info once it has one again, with the upcall (and its vector).
 */
export function kvmFlushHeldSelector(v: Vcpu): void {
  if (v.domain.model.flavor !== 'kvm') return;
  const a = kvmVcpuAttrs(v);
  // Only at an entry that delivers (kvm-evtchn.ts kvmEnterGuest, run first, decides).
  if (a.heldSel === 0n || a.vcpuInfoOff || !a.due) return;
  const sel = pendingSelAddress(v);
  if (sel === null) return;
  for (let w = 0; w < wordBits(v.domain); w++) if ((a.heldSel >> BigInt(w)) & 1n) testAndSetBit(v.domain.memory, sel, w);
  a.heldSel = 0n;
  markEventsPending(v);
}

function setPending(v: Vcpu, ch: Channel): void {
  const d = v.domain;
  const port = ch.port;
  const p = pendingBase(d);
  // Already pending: nothing more, not even a poll wake-up.
  if (testAndSetBit(p.mem, p.base, port)) return;
  const m = maskBase(d);
  if (!testBit(m.mem, m.base, port)) raiseSelector(v, port);
  checkPollers(d, port);
}

function clearPending(d: Domain, ch: Channel): void {
  const p = pendingBase(d);
  testAndClearBit(p.mem, p.base, ch.port);
}

/** Re-deliver only if the mask bit was set at the time of the call, and the port is pending. */
function unmask(d: Domain, ch: Channel): void {
  const m = maskBase(d);
  const p = pendingBase(d);
  const v = d.vcpus[ch.notifyVcpu];
  if (!v) return;
  if (testAndClearBit(m.mem, m.base, ch.port) && testBit(p.mem, p.base, ch.port)) raiseSelector(v, ch.port);
}

export const ops2l: PortOps = {
  abi: '2l',
  maxPorts: (d) => wordBits(d) * wordBits(d),
  init: () => {},
  setPending,
  clearPending,
  unmask,
  isPending(d, port) {
    const p = pendingBase(d);
    return port < wordBits(d) * wordBits(d) && testBit(p.mem, p.base, port);
  },
  isMasked(d, port) {
    const m = maskBase(d);
    return port >= wordBits(d) * wordBits(d) || testBit(m.mem, m.base, port);
  },
  isBusy: () => false,
  setPriority: null,
};

/** Whether the domain currently uses the 2-level ABI. */
export function is2l(d: Domain): boolean {
  return evtchnState(d).ops.abi === '2l';
}

modelHooks.guestEntry.push(kvmFlushHeldSelector);
