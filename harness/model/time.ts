// vcpu_time_info (the pvclock in vcpu_info.time and its optional secondary
// copy) and the shared_info wallclock, both with the odd/even version protocol.
// Sources: xen/arch/x86/time.c (__update_vcpu_system_time,
// update_secondary_system_time, force_update_secondary_system_time),
// xen/common/time.c (update_domain_wallclock_time, version_update_begin/end),
// xen/include/public/xen.h (struct vcpu_time_info), arch/x86/kvm/x86.c and
// arch/x86/kvm/xen.c (kvm_xen_update_tsc_info, wallclock on SHARED_INFO).
// spec/xen-abi.md 2.2, 2.3.

import { registerArea } from './areas.js';
import { SHARED_INFO, VCPU_TIME_INFO, type Width } from './memory-layout.js';
import type { Domain, Vcpu, XenModel } from './domain.js';

/**
 * The model's TSC runs at 2 GHz and is 0 at system time 0, so
 * ns = ((tsc - tsc_timestamp) * 0x80000000) >> 32 with tsc_shift 0.
 */
export const MODEL_TSC_HZ = 2_000_000_000n;
export const MODEL_TSC_MUL = 0x80000000;
export const MODEL_TSC_SHIFT = 0;
export const XEN_PVCLOCK_TSC_STABLE_BIT = 1;
export const XEN_PVCLOCK_GUEST_STOPPED = 2;

export function tscAt(ns: bigint): bigint {
  return (ns * MODEL_TSC_HZ) / 1_000_000_000n;
}

/** Version bumps of xen/include/xen/time.h (version_update_begin/end). */
export const versionBegin = (v: number): number => ((v + 1) | 1) >>> 0;
export const versionEnd = (v: number): number => (v + 1) >>> 0;

interface TimeState {
  /** VCPUOP_register_vcpu_time_memory_area: secondary copy (guest virtual = physical here). */
  secondary: number | null;
}

const timeStates = new WeakMap<Vcpu, TimeState>();

function timeOf(v: Vcpu): TimeState {
  let s = timeStates.get(v);
  if (!s) {
    s = { secondary: null };
    timeStates.set(v, s);
  }
  return s;
}

/** The body the model publishes at the current time. */
function timeBody(m: XenModel): { tsc: bigint; sys: bigint; flags: number } {
  // KVM sets PVCLOCK_TSC_STABLE_BIT (unless the VMM asked for PVCLOCK_TSC_UNSTABLE);
  // Xen sets it only when its clocksource is the TSC, which the model does not claim.
  return { tsc: tscAt(m.now), sys: m.now, flags: m.flavor === 'kvm' ? XEN_PVCLOCK_TSC_STABLE_BIT : 0 };
}

/**
 * Write one vcpu_time_info at `gpa` with the version protocol: version odd,
 * the fields, version even. `force` writes even when nothing changed.
 * Returns whether it wrote.
 */
export function writeTimeInfo(m: XenModel, d: Domain, gpa: number, force: boolean): boolean {
  if (!d.memory.contains(gpa, VCPU_TIME_INFO.size)) return false;
  const mem = d.memory;
  const b = timeBody(m);
  const body = new Uint8Array(24);
  const dv = new DataView(body.buffer);
  dv.setBigUint64(0, b.tsc, true); // tsc_timestamp @8
  dv.setBigUint64(8, b.sys, true); // system_time @16
  dv.setUint32(16, MODEL_TSC_MUL, true); // tsc_to_system_mul @24
  dv.setInt8(20, MODEL_TSC_SHIFT); // tsc_shift @28
  dv.setUint8(21, b.flags); // flags @29
  // __update_vcpu_system_time skips the update when nothing changed, unless forced.
  const cur = mem.read(gpa + 8, 24);
  if (!force && cur.every((x, i) => x === body[i])) return false;
  const v = mem.u32(gpa);
  mem.setU32(gpa, versionBegin(v)); // smp_wmb()
  mem.write(gpa + 8, body); // smp_wmb()
  mem.setU32(gpa, versionEnd(versionBegin(v)));
  return true;
}

/** update_vcpu_system_time: the vcpu_info copy, then the secondary copy. */
export function updateVcpuTime(m: XenModel, v: Vcpu, force = false): void {
  const vi = v.vcpuInfoAddress();
  if (vi !== null) writeTimeInfo(m, v.domain, vi + 32, force);
  const sec = timeOf(v).secondary;
  if (sec !== null) writeTimeInfo(m, v.domain, sec, force);
}

/** VCPUOP_register_vcpu_time_memory_area: record and force an update (no validation of the address). */
export function registerTimeArea(m: XenModel, v: Vcpu, gva: number): void {
  timeOf(v).secondary = gva === 0 ? null : gva;
  if (gva === 0) v.domain.areas.delete(`vcpu_time/${v.id}`);
  else v.domain.areas.set(`vcpu_time/${v.id}`, gva);
  if (gva !== 0) writeTimeInfo(m, v.domain, gva, true);
}

/** The system wallclock (xen/common/time.c wc_sec / wc_nsec) as last set; 0 until then. */
const systemWallclock = new WeakMap<XenModel, { sec: bigint; nsec: number }>();

/**
 * Xen rewrites a domain's wallclock whenever it latches the shared_info layout: on the
 * hypercall-page MSR write and on HVM_PARAM_CALLBACK_IRQ (xen/arch/x86/hvm/hvm.c
 * hvm_latch_shinfo_size -> update_domain_wallclock_time), with the system wallclock as
 * it stands and in the layout just latched.
 */
export function latchWallclock(d: Domain): boolean {
  const w = systemWallclock.get(d.model) ?? { sec: 0n, nsec: 0 };
  return writeWallclock(d, w.sec, w.nsec);
}

/**
 * hvm_latch_shinfo_size (xen/arch/x86/hvm/hvm.c): the writer's mode latches the
 * shared_info layout, and Xen rewrites the wallclock in it. KVM latches its own way
 * (kvm-shared-info.ts kvmLatchWidth).
 */
export function latchSharedInfoLayout(d: Domain, mode: Width): void {
  d.width = mode;
  if (d.model.flavor === 'xen') latchWallclock(d);
}

/**
 * update_domain_wallclock_time: wc_version odd, wc_sec / wc_nsec / wc_sec_hi,
 * wc_version even, in the latched shared_info layout. `sec`/`nsec` is the
 * wall time of system time 0. Returns false when shared_info is not placed.
 */
export function writeWallclock(d: Domain, sec: bigint, nsec: number): boolean {
  systemWallclock.set(d.model, { sec, nsec });
  const si = d.sharedInfoGpa;
  if (si === null) return false;
  const f = SHARED_INFO[d.width].fields;
  const mem = d.memory;
  const vAddr = si + f.wc_version.offset;
  const v = mem.u32(vAddr);
  mem.setU32(vAddr, versionBegin(v)); // smp_wmb()
  mem.setU32(si + f.wc_sec.offset, sec & 0xffffffffn);
  mem.setU32(si + f.wc_nsec.offset, nsec);
  mem.setU32(si + f.wc_sec_hi.offset, (sec >> 32n) & 0xffffffffn); // smp_wmb()
  mem.setU32(vAddr, versionEnd(versionBegin(v)));
  return true;
}

registerArea({
  name: 'vcpu_time',
  indexed: true,
  layout: () => VCPU_TIME_INFO,
  locate: (view, i) => view.get(`vcpu_time/${i}`),
});
