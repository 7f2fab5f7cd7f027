// vCPU runstate: accounting, the guest-visible vcpu_runstate_info area and its
// update protocols, and KVM's host-side runstate attributes.
// Sources: xen/common/sched/core.c (vcpu_runstate_change, vcpu_runstate_get),
// xen/common/domain.c (VCPUOP_register_runstate_memory_area / _phys_area,
// map_guest_area, runstate_area_populate), xen/arch/x86/domain.c
// (update_runstate_area, update_guest_memory_policy), xen/include/public/vcpu.h
// (struct vcpu_runstate_info, XEN_RUNSTATE_UPDATE), arch/x86/kvm/xen.c
// (kvm_xen_update_runstate, kvm_xen_update_runstate_guest, kvm_xen_vcpu_set_attr
// RUNSTATE_ADDR / RUNSTATE_CURRENT / RUNSTATE_DATA / RUNSTATE_ADJUST).
// spec/xen-abi.md section 6.

import { err } from './errno.js';
import { PAGE_SIZE } from './guest-memory.js';
import { registerArea } from './areas.js';
import { vmAssistEnabled, VMASST_TYPE } from './vm-assist.js';
import { modelHooks, type Domain, type Vcpu, type XenModel } from './domain.js';
import type { StructLayout, Width } from './memory-layout.js';

export const RUNSTATE = { running: 0, runnable: 1, blocked: 2, offline: 3 } as const;
export const XEN_RUNSTATE_UPDATE = 1n << 63n;
const U64 = (1n << 64n) - 1n;

/** struct vcpu_runstate_info: 48 bytes native, 44 compat (packed u64 at 4-byte alignment). */
export const RUNSTATE_INFO: Record<Width, StructLayout> = {
  64: {
    name: 'vcpu_runstate_info',
    size: 48,
    fields: {
      state: { offset: 0, type: 'i32' },
      state_entry_time: { offset: 8, type: 'u64' },
      time: { offset: 16, type: 'u64', count: 4 },
    },
  },
  32: {
    name: 'vcpu_runstate_info',
    size: 44,
    fields: {
      state: { offset: 0, type: 'i32' },
      state_entry_time: { offset: 4, type: 'u64' },
      time: { offset: 12, type: 'u64', count: 4 },
    },
  },
};

/** Offset of the byte carrying XEN_RUNSTATE_UPDATE (byte 7 of state_entry_time). */
export function flagByteOffset(width: Width): number {
  return RUNSTATE_INFO[width].fields.state_entry_time.offset + 7;
}

export interface RunstateInfo {
  state: number;
  entry: bigint;
  time: [bigint, bigint, bigint, bigint];
}

/** Where the guest asked for its runstate copy. */
export type RunstateArea =
  | { kind: 'virtual'; gva: number }
  | { kind: 'phys'; gpa: number }
  | { kind: 'kvm'; gpa: number };

interface VcpuRunstate {
  info: RunstateInfo;
  /** Xen: the vCPU's creation time (sum(time) == entry - created). KVM: always 0. */
  created: bigint;
  /** Xen's virtual area (VCPUOP 5) and physical area (VCPUOP 14); KVM's RUNSTATE_ADDR. */
  virtual: number | null;
  phys: number | null;
  kvm: number | null;
}

const states = new WeakMap<Vcpu, VcpuRunstate>();

/**
 * A vCPU's runstate. In the model every domain is created and unpaused at
 * system time 0, so each vCPU starts running at 0 with nothing accounted
 * (Xen: offline -> running with delta 0 is not accounted; KVM: entry time 0).
 */
export function runstateOf(v: Vcpu): VcpuRunstate {
  let s = states.get(v);
  if (!s) {
    s = {
      info: { state: RUNSTATE.running, entry: 0n, time: [0n, 0n, 0n, 0n] },
      created: 0n,
      virtual: null,
      phys: null,
      kvm: null,
    };
    states.set(v, s);
  }
  return s;
}

export function cloneInfo(i: RunstateInfo): RunstateInfo {
  return { state: i.state, entry: i.entry, time: [...i.time] as RunstateInfo['time'] };
}

/** Serialise a runstate into the layout of `width`. */
export function encodeRunstate(i: RunstateInfo, width: Width): Uint8Array {
  const L = RUNSTATE_INFO[width];
  const b = new Uint8Array(L.size);
  const dv = new DataView(b.buffer);
  dv.setInt32(0, i.state, true);
  dv.setBigUint64(L.fields.state_entry_time.offset, BigInt.asUintN(64, i.entry), true);
  for (let k = 0; k < 4; k++) dv.setBigUint64(L.fields.time.offset + 8 * k, BigInt.asUintN(64, i.time[k]), true);
  return b;
}

export function decodeRunstate(b: Uint8Array, width: Width): RunstateInfo {
  const L = RUNSTATE_INFO[width];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const t = (k: number) => dv.getBigUint64(L.fields.time.offset + 8 * k, true);
  return {
    state: dv.getInt32(0, true),
    entry: dv.getBigUint64(L.fields.state_entry_time.offset, true),
    time: [t(0), t(1), t(2), t(3)],
  };
}

/** Sum of the four times, modulo 2^64 as the u64 arithmetic in both implementations. */
export function timeSum(i: RunstateInfo): bigint {
  return (i.time[0] + i.time[1] + i.time[2] + i.time[3]) & U64;
}

/** The flavour's accounting invariant (spec/xen-abi.md 6.4). */
export function sumRuleHolds(m: XenModel, v: Vcpu, i: RunstateInfo = runstateOf(v).info): boolean {
  const s = runstateOf(v);
  const want = m.flavor === 'kvm' ? i.entry & U64 : BigInt.asUintN(64, i.entry - s.created);
  return timeSum(i) === want;
}

// ---------------------------------------------------------------------------
// Writers. Each performs the stores of one update separately, in the order the
// implementation makes them, so GuestMemory observers (the torn-read checker)
// see every intermediate state.

/** How an update is written. `correct` is the implementation; the rest are faulty test-only variants. */
export type RunstateWriter =
  | 'correct'
  /** the update-flag protocol left out: one struct copy */
  | 'no_flag'
  /** the flag is cleared before the times are written */
  | 'flag_cleared_early'
  /** the flag set and cleared with whole 8-byte stores (pre-5ec3289b31ab KVM), not byte 7 */
  | 'whole_word_flag'
  /** a page-crossing area written as one block, flag protocol left out */
  | 'block_no_flag';

/** Writer used for updates; tests swap in a faulty one. */
let activeWriter: RunstateWriter = 'correct';

export function setRunstateWriter(w: RunstateWriter): void {
  activeWriter = w;
}

export type Protocol = 'none' | 'byte' | 'word';

/**
 * Write `info` at `gpa` in `width` layout with a protocol:
 * - none: one struct copy (Xen virtual area without VMASST_TYPE_runstate_update_flag);
 * - byte: Xen virtual area with the flag / KVM with RUNSTATE_UPDATE_FLAG: byte 7 with the
 *   flag, the struct (its entry time carrying the flag), byte 7 without the flag;
 * - word: Xen physical area: 8-byte write_atomic of state_entry_time with the flag,
 *   the struct, 8-byte write without the flag.
 * Returns false if the area is not in guest RAM (the update is skipped).
 */
export function writeRunstate(d: Domain, gpa: number, width: Width, info: RunstateInfo, protocol: Protocol, writer: RunstateWriter = d.model.config.variant?.runstateWriter ?? activeWriter): boolean {
  const L = RUNSTATE_INFO[width];
  if (!d.memory.contains(gpa, L.size)) return false;
  const entryOff = L.fields.state_entry_time.offset;
  const flagged: RunstateInfo = { ...cloneInfo(info), entry: info.entry | XEN_RUNSTATE_UPDATE };
  const body = encodeRunstate(flagged, width);
  const plain = encodeRunstate(info, width);
  const hiByte = (e: bigint) => Number((e >> 56n) & 0xffn);
  const mem = d.memory;
  if (protocol === 'none' || writer === 'no_flag' || writer === 'block_no_flag') {
    mem.write(gpa, plain);
    return true;
  }
  switch (writer) {
    case 'correct':
      if (protocol === 'byte') {
        mem.setU8(gpa + entryOff + 7, hiByte(flagged.entry)); // smp_wmb()
        mem.write(gpa, body); // smp_wmb()
        mem.setU8(gpa + entryOff + 7, hiByte(info.entry));
      } else {
        mem.setU64(gpa + entryOff, flagged.entry); // write_atomic; smp_wmb()
        mem.write(gpa, body); // smp_wmb()
        mem.setU64(gpa + entryOff, info.entry);
      }
      return true;
    case 'flag_cleared_early':
      mem.setU8(gpa + entryOff + 7, hiByte(flagged.entry));
      mem.write(gpa, body.subarray(0, entryOff + 8));
      mem.setU8(gpa + entryOff + 7, hiByte(info.entry));
      mem.write(gpa + entryOff + 8, plain.subarray(entryOff + 8));
      return true;
    case 'whole_word_flag':
      mem.setU64(gpa + entryOff, flagged.entry);
      mem.write(gpa, body);
      mem.setU64(gpa + entryOff, info.entry);
      return true;
  }
  return true;
}

/** Domains whose KVM area a live kernel writes itself: the model (a VMM layer's) leaves it alone. */
const kernelWritten = new WeakSet<Domain>();

/** A VMM layer on a live KVM: KVM writes the RUNSTATE_ADDR area, with its own clock and accounting. */
export function setKernelWritesRunstate(d: Domain): void {
  kernelWritten.add(d);
}

/** Push the current runstate to every registered area of the vCPU (update_runstate_area). */
export function updateRunstateGuest(m: XenModel, v: Vcpu): void {
  const s = runstateOf(v);
  const d = v.domain;
  const flag = vmAssistEnabled(d, VMASST_TYPE.runstate_update_flag);
  if (m.flavor === 'kvm') {
    if (s.kvm !== null && !kernelWritten.has(d)) writeRunstate(d, s.kvm, d.width, s.info, flag ? 'byte' : 'none');
    return;
  }
  // xen/arch/x86/domain.c update_runstate_area: the physical area wins and always uses the flag.
  if (s.phys !== null) {
    writeRunstate(d, s.phys, d.width, s.info, 'word');
    return;
  }
  if (s.virtual !== null) writeRunstate(d, s.virtual, d.width, s.info, flag ? 'byte' : 'none');
}

/**
 * A state change at the current time.
 * Xen (vcpu_runstate_change): delta = now - entry; only if delta > 0 is it
 * accounted to the old state and the entry time moved; the state always changes.
 * KVM (kvm_xen_update_runstate): an entry time of 0 means "never updated" and
 * forces the old state to offline; delta (minus `steal` if the vCPU was running,
 * which goes to runnable) is accounted unconditionally; entry = now.
 */
export function runstateChange(m: XenModel, v: Vcpu, state: number, steal = 0n): void {
  const s = runstateOf(v);
  const i = s.info;
  const now = m.now;
  if (m.flavor === 'kvm') {
    if (i.entry === 0n) i.state = RUNSTATE.offline;
    let delta = (now - i.entry) & U64;
    if (i.state === RUNSTATE.running) {
      delta = (delta - steal) & U64;
      i.time[RUNSTATE.runnable] = (i.time[RUNSTATE.runnable] + steal) & U64;
    }
    i.time[i.state] = (i.time[i.state] + delta) & U64;
    i.state = state;
    i.entry = now;
  } else {
    const delta = now - i.entry;
    if (delta > 0n) {
      i.time[i.state] += delta;
      i.entry = now;
    }
    i.state = state;
  }
  updateRunstateGuest(m, v);
}

/** vcpu_runstate_get: the stored runstate with the in-progress time added to the current state. */
export function runstateGet(m: XenModel, v: Vcpu): RunstateInfo {
  const i = cloneInfo(runstateOf(v).info);
  const delta = m.now - i.entry;
  if (delta > 0n) i.time[i.state] += delta;
  return i;
}

// ---------------------------------------------------------------------------
// Guest registration (xen/common/domain.c).

/** VCPUOP_register_runstate_memory_area: a guest virtual address (identity-mapped here). */
export function registerVirtual(m: XenModel, caller: Vcpu, v: Vcpu, gva: number): void {
  const s = runstateOf(v);
  const d = v.domain;
  if (m.flavor === 'kvm') {
    // The VMM translates the address and sets KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADDR.
    hostSetAddr(m, v, BigInt(gva));
    return;
  }
  s.virtual = gva;
  d.areas.set(`runstate/${v.id}`, gva);
  // For the calling vCPU the stored values, for another the in-progress time
  // added; a plain copy without the flag, silently dropped if it faults.
  const info = v === caller ? s.info : runstateGet(m, v);
  if (s.phys === null) writeRunstate(d, gva, d.width, info, 'none', 'correct');
}

/** VCPUOP_register_runstate_phys_area (map_guest_area). */
export function registerPhys(m: XenModel, caller: Vcpu, v: Vcpu, gpa: bigint, width: Width): number {
  const s = runstateOf(v);
  const d = v.domain;
  if (gpa === U64) {
    s.phys = null;
    if (s.virtual !== null) d.areas.set(`runstate/${v.id}`, s.virtual);
    else d.areas.delete(`runstate/${v.id}`);
    return 0;
  }
  const size = RUNSTATE_INFO[width].size;
  const a = Number(gpa);
  if (Math.floor(a / PAGE_SIZE) !== Math.floor((a + size - 1) / PAGE_SIZE)) return err('ENXIO');
  const align = d.width === 32 ? 4 : 8;
  if (a % align !== 0) return err('ENXIO');
  if (!d.memory.contains(a, size)) return err('EINVAL'); // check_get_page_from_gfn: no page
  s.phys = a;
  d.areas.set(`runstate/${v.id}`, a);
  // runstate_area_populate fills the area only for the calling vCPU.
  if (v === caller) writeRunstate(d, a, d.width, s.info, 'none', 'correct');
  return 0;
}

// ---------------------------------------------------------------------------
// KVM host attributes (kvm_xen_vcpu_set_attr). Return 0 or a negative Linux errno.

export const KVM_XEN_INVALID_GPA = U64;

/** KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADDR: any alignment, may cross one page boundary. */
export function hostSetAddr(m: XenModel, v: Vcpu, gpa: bigint): number {
  const d = v.domain;
  if (gpa === KVM_XEN_INVALID_GPA) {
    placeKvmRunstate(v, null);
    return 0;
  }
  const size = RUNSTATE_INFO[d.width].size;
  const a = Number(gpa);
  // kvm_gpc_activate on the first page part and, if needed, the second page: not in a memslot -> -EFAULT.
  if (!Number.isSafeInteger(a) || !d.memory.contains(a, size)) {
    placeKvmRunstate(v, null);
    return err('EFAULT');
  }
  placeKvmRunstate(v, a);
  updateRunstateGuest(m, v);
  return 0;
}

/**
 * Where KVM's RUNSTATE_ADDR area is (null: deactivated), without writing it: for a VMM
 * layer whose kernel already did (the kvm driver keeps its model in step with KVM).
 */
export function placeKvmRunstate(v: Vcpu, gpa: number | null): void {
  runstateOf(v).kvm = gpa;
  if (gpa === null) v.domain.areas.delete(`runstate/${v.id}`);
  else v.domain.areas.set(`runstate/${v.id}`, gpa);
}

/** KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_CURRENT: state must be <= offline. */
export function hostSetCurrent(m: XenModel, v: Vcpu, state: bigint): number {
  if (state > BigInt(RUNSTATE.offline) || state < 0n) return err('EINVAL');
  runstateChange(m, v, Number(state));
  return 0;
}

export interface RunstateData {
  state: bigint;
  entry: bigint;
  time: [bigint, bigint, bigint, bigint];
}

/** KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_DATA: entry == sum(time) (u64) and entry <= kvmclock now. */
export function hostSetData(m: XenModel, v: Vcpu, a: RunstateData): number {
  if (a.state > BigInt(RUNSTATE.offline) || a.state < 0n) return err('EINVAL');
  const e = a.entry & U64;
  if (e !== ((a.time[0] + a.time[1] + a.time[2] + a.time[3]) & U64)) return err('EINVAL');
  if (m.now < e) return err('EINVAL');
  const s = runstateOf(v);
  s.info = { state: Number(a.state), entry: e, time: a.time.map((t) => t & U64) as RunstateInfo['time'] };
  return 0;
}

/**
 * KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADJUST: deltas that add up; state may be (u64)-1
 * (unchanged); the adjusted entry time must not pass kvmclock now.
 */
export function hostAdjust(m: XenModel, v: Vcpu, a: RunstateData): number {
  const st = a.state & U64;
  if (st > BigInt(RUNSTATE.offline) && st !== U64) return err('EINVAL');
  const de = a.entry & U64;
  if (de !== ((a.time[0] + a.time[1] + a.time[2] + a.time[3]) & U64)) return err('EINVAL');
  const s = runstateOf(v);
  if (m.now < ((s.info.entry + de) & U64)) return err('EINVAL');
  s.info.entry = (s.info.entry + de) & U64;
  for (let k = 0; k < 4; k++) s.info.time[k] = (s.info.time[k] + a.time[k]) & U64;
  if (st <= BigInt(RUNSTATE.offline)) runstateChange(m, v, Number(st));
  else updateRunstateGuest(m, v);
  return 0;
}

/**
 * KVM: every entry into the guest switches the vCPU to running (accounted, area written).
 * kvm_arch_vcpu_load makes KVM_REQ_STEAL_UPDATE on each KVM_RUN, and vcpu_enter_guest ->
 * record_steal_time (arch/x86/kvm/x86.c) calls kvm_xen_runstate_set_running ->
 * kvm_xen_update_runstate(RUNSTATE_running) while the hypercall MSR is configured
 * (kvm_xen_msr_enabled). So whatever RUNSTATE_CURRENT / _DATA / _ADJUST set does not
 * survive a guest step (Linux 6.1 and 6.12 alike).
 */
export function kvmRunstateGuestEntry(v: Vcpu): void {
  const m = v.domain.model;
  if (m.flavor === 'kvm') runstateChange(m, v, RUNSTATE.running);
}
modelHooks.guestEntry.push(kvmRunstateGuestEntry);

registerArea({
  name: 'runstate',
  indexed: true,
  layout: (w) => RUNSTATE_INFO[w],
  locate: (view, i) => view.get(`runstate/${i}`),
});
