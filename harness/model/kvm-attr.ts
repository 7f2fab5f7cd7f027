// model-kvm: what KVM holds in its Xen attributes after the same history, read back
// with KVM_XEN_HVM_GET_ATTR / KVM_XEN_VCPU_GET_ATTR, and the rules its SET_ATTR applies.
// Source: linux arch/x86/kvm/xen.c (6.1 and 6.12 agree on everything modelled here):
// kvm_xen_hvm_get_attr, kvm_xen_vcpu_get_attr, kvm_xen_vcpu_set_attr, kvm_xen_init_vcpu;
// virt/kvm/kvm_main.c, kvm_vm_ioctl_create_vcpu.
// The VMM (QEMU, or the kvm target's VMM layer) keeps KVM told of shared_info, vcpu_info,
// the width and the upcall vectors, so KVM's values follow the model's Xen state.
import type { Domain, Vcpu, XenModel } from './domain.js';
import { kvmLatchWidth, kvmSharedInfoInit, sharedInfoPlaced, type Placed } from './kvm-shared-info.js';
import { callbackVector, hvmVcpu } from './hvm-op.js';
import { kvmVcpuAttrs as attrsOf } from './kvm-vcpu.js';
import { kvmInjectHeldTimer, kvmStartTimer, stopSingleshot, timerOf } from './timer.js';
import { runstateOf } from './runstate.js';
import { VMASST_TYPE, vmAssistEnabled } from './vm-assist.js';
import { VCPU_INFO_SIZE, VCPU_TIME_INFO } from './memory-layout.js';
import { kvmNoteVcpuInfo } from './kvm-evtchn.js';

/** KVM_XEN_INVALID_GFN / _GPA: all ones (include/uapi/linux/kvm.h; GPA_INVALID in 6.1). */
export const KVM_XEN_INVALID = (1n << 64n) - 1n;
/** KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL, the only priority KVM accepts. */
export const KVM_XEN_PRIO_2LEVEL = 0xffffffffn;
/** KVM_MAX_VCPUS on x86 without CONFIG_MAXSMP (arch/x86/include/asm/kvm_host.h). */
export const KVM_MAX_VCPUS = 1024n;

export const KVM_XEN_GET_ATTRS = [
  'long_mode', 'shared_info', 'xen_version', 'callback_vector',
  'vcpu_info', 'vcpu_id', 'upcall_vector', 'timer_port', 'timer_priority', 'timer_expires',
  'shared_info_hva', 'vcpu_info_hva', 'vcpu_time_info', 'runstate_addr', 'runstate_current', 'runstate_update_flag',
] as const;
export type KvmXenGetAttr = (typeof KVM_XEN_GET_ATTRS)[number];

export const KVM_XEN_SET_ATTRS = ['long_mode', 'shared_info', 'shared_info_hva', 'vcpu_info', 'vcpu_info_hva', 'vcpu_time_info'] as const;
export type KvmXenSetAttr = (typeof KVM_XEN_SET_ATTRS)[number];

/**
 * Where the VMM last pointed KVM itself (kvm.xen_set_attr), by guest address or by host
 * address (`hva`: the guest page that host address maps); null = deactivated. Until then
 * KVM's values follow the model's Xen state, which the VMM keeps KVM told of.
 */
const vcpuInfoPlaced = new WeakMap<Vcpu, Placed>();

/** The guest registered its vcpu_info and the VMM told KVM: KVM's is the guest's from now on. */
export function kvmGuestVcpuInfo(v: Vcpu): void {
  vcpuInfoPlaced.delete(v);
  attrsOf(v).vcpuInfoOff = false;
  const gpa = v.vcpuInfoAddress();
  kvmNoteVcpuInfo(v, gpa === null ? null : BigInt(gpa), false);
}
const timeInfoPlaced = new WeakMap<Vcpu, bigint>();

/**
 * KVM_XEN_HVM_SET_ATTR / KVM_XEN_VCPU_SET_ATTR for the areas: all ones (or 0 for an
 * address by hva) deactivates; shared_info by hva must be page aligned (-EINVAL); vcpu_info
 * 4-byte aligned (-ENXIO). (kvm_xen_hvm_set_attr, kvm_xen_vcpu_set_attr)
 * An area by guest address goes through kvm_gpc_activate (virt/kvm/pfncache.c, 6.1 and
 * 6.12 alike): one crossing a page is -EINVAL and changes nothing; one with no memory slot
 * behind it is -EFAULT, and the cache stays active at that address, unusable (it reads
 * back; shared_info gets no wallclock; vcpu_info events are held in KVM).
 */
export function kvmXenSetAttr(d: Domain, v: Vcpu, attr: KvmXenSetAttr, value: bigint): bigint {
  const byHva = attr === 'shared_info_hva' || attr === 'vcpu_info_hva';
  const off = byHva ? value === 0n : value === KVM_XEN_INVALID;
  switch (attr) {
    case 'long_mode':
      kvmLatchWidth(d, value !== 0n ? 64 : 32, true);
      return 0n;
    case 'shared_info':
    case 'shared_info_hva': {
      if (byHva && value % 4096n !== 0n) return EINVAL;
      const gpa = off ? null : byHva ? value : BigInt.asUintN(64, value << 12n);
      sharedInfoPlaced.set(d, { gpa, hva: byHva });
      if (gpa !== null && !byHva && !backed(d, gpa, 4096)) return EFAULT;
      if (!off) kvmSharedInfoInit(d);
      return 0n;
    }
    case 'vcpu_info':
    case 'vcpu_info_hva':
      if (!off && value % 4n !== 0n) return ENXIO;
      if (!off && !byHva && crossesPage(value, VCPU_INFO_SIZE)) return EINVAL;
      vcpuInfoPlaced.set(v, { gpa: off ? null : value, hva: byHva });
      // Where KVM raises this vCPU's selector and upcall flag from now on (kvm_xen_set_evtchn_fast).
      kvmNoteVcpuInfo(v, off ? null : value, byHva);
      if (!off && !byHva && !backed(d, value, VCPU_INFO_SIZE)) {
        attrsOf(v).vcpuInfoOff = true;
        return EFAULT;
      }
      attrsOf(v).vcpuInfoOff = off;
      return 0n;
    case 'vcpu_time_info':
      if (!off && crossesPage(value, VCPU_TIME_INFO.size)) return EINVAL;
      timeInfoPlaced.set(v, value);
      return off || backed(d, value, VCPU_TIME_INFO.size) ? 0n : EFAULT;
  }
}

/** kvm_gpc_activate's length check: the area must fit in its page. */
function crossesPage(gpa: bigint, len: number): boolean {
  return (gpa & 0xfffn) + BigInt(len) > 4096n;
}

/** A memory slot is behind [gpa, gpa + len) (else hva_to_pfn has nothing: -EFAULT). */
function backed(d: Domain, gpa: bigint, len: number): boolean {
  return gpa <= BigInt(Number.MAX_SAFE_INTEGER) && d.memory.contains(Number(gpa), len);
}

/** The value KVM_XEN_*_GET_ATTR reports for `attr` (the timer as its three fields). */
/** The attribute's value, or null where KVM answers -ENOENT (kvm_xen_vcpu_get_attr: RUNSTATE_ADDR without an area). */
export function kvmXenGetAttr(d: Domain, v: Vcpu, attr: KvmXenGetAttr): bigint | null {
  // The three timer fields are one KVM_XEN_VCPU_ATTR_TYPE_TIMER read, which first delivers
  // an expiry held for want of a shared_info.
  if (attr === 'timer_port' || attr === 'timer_priority' || attr === 'timer_expires') kvmInjectHeldTimer(v);
  switch (attr) {
    case 'long_mode':
      return d.width === 64 ? 1n : 0n;
    case 'shared_info': {
      const p = sharedInfoPlaced.get(d);
      if (p) return p.gpa === null || p.hva ? KVM_XEN_INVALID : p.gpa >> 12n;
      return d.sharedInfoGpa === null ? KVM_XEN_INVALID : BigInt(d.sharedInfoGpa >> 12);
    }
    case 'shared_info_hva': {
      const p = sharedInfoPlaced.get(d);
      return p?.hva && p.gpa !== null ? p.gpa : 0n;
    }
    case 'vcpu_info_hva': {
      const p = vcpuInfoPlaced.get(v);
      return p?.hva && p.gpa !== null ? p.gpa : 0n;
    }
    case 'vcpu_time_info':
      return timeInfoPlaced.get(v) ?? KVM_XEN_INVALID;
    case 'xen_version': {
      const x = d.model.config.xenVersion;
      return BigInt(((x.major << 16) | x.minor) >>> 0);
    }
    case 'callback_vector':
      return BigInt(callbackVector(d) ?? 0);
    case 'vcpu_info': {
      const p = vcpuInfoPlaced.get(v);
      if (p) return p.gpa === null || p.hva ? KVM_XEN_INVALID : p.gpa;
      const gpa = v.vcpuInfoAddress();
      return gpa === null ? KVM_XEN_INVALID : BigInt(gpa);
    }
    case 'vcpu_id':
      return attrsOf(v).vcpuId;
    case 'upcall_vector':
      return BigInt(hvmVcpu(v).upcallVector);
    case 'timer_port':
      return attrsOf(v).timerPort;
    case 'timer_priority':
      // kvm_xen_vcpu_get_attr reports 2-level whatever was set.
      return KVM_XEN_PRIO_2LEVEL;
    case 'runstate_addr': {
      // The area KVM writes (RUNSTATE_ADDR), none once deactivated or refused (6.2+:
      // kvm_xen_vcpu_set_attr deactivate_out). Linux 6.1 leaves the cache active at a refused
      // address and reports it: a 6.1 divergence (expectations/kvm-6.1.yaml), not modelled.
      const a = runstateOf(v).kvm;
      return a === null ? null : BigInt(a);
    }
    case 'runstate_current':
      return BigInt(runstateOf(v).info.state);
    case 'runstate_update_flag':
      return vmAssistEnabled(d, VMASST_TYPE.runstate_update_flag) ? 1n : 0n;
    case 'timer_expires': {
      // KVM's timer_expires: the armed deadline, 0 once fired or stopped. Without a timer
      // port KVM has no timer (the VMM keeps the guest's).
      const at = timerOf(v).singleshot;
      return attrsOf(v).timerPort === 0n || at === null ? 0n : BigInt.asUintN(64, at);
    }
  }
}

const EINVAL = -22n;
const ENXIO = -6n;
const EFAULT = -14n;

/** KVM_XEN_VCPU_ATTR_TYPE_UPCALL_VECTOR: 1..0x0f refused; else the vCPU's vector (0 = none). */
export function kvmXenSetUpcallVector(v: Vcpu, vector: bigint): bigint {
  if (vector !== 0n && vector < 0x10n) return EINVAL;
  hvmVcpu(v).upcallVector = Number(vector);
  return 0n;
}

/** KVM_XEN_VCPU_ATTR_TYPE_VCPU_ID: below KVM_MAX_VCPUS, else -EINVAL. */
export function kvmXenSetVcpuId(v: Vcpu, id: bigint): bigint {
  if (id >= KVM_MAX_VCPUS) return EINVAL;
  attrsOf(v).vcpuId = id;
  return 0n;
}

/**
 * KVM_XEN_VCPU_ATTR_TYPE_TIMER: a port needs the 2-level priority (-EINVAL); KVM stops its
 * old timer (kvm_xen_stop_timer), takes the port, and with a non-zero expiry starts the
 * timer at that absolute guest time (kvm_xen_start_timer without the Linux workaround: a
 * deadline not in the future fires at once). The model's one-shot timer is the one KVM
 * runs while it has a port (the VMM hands it over, as QEMU does).
 */
export function kvmXenSetTimer(m: XenModel, v: Vcpu, port: bigint, priority: bigint, expires: bigint): bigint {
  if (port !== 0n && priority !== KVM_XEN_PRIO_2LEVEL) return EINVAL;
  const a = attrsOf(v);
  if (a.timerPort !== 0n || port !== 0n) stopSingleshot(v);
  a.timerPort = port;
  if (port !== 0n && expires !== 0n) kvmStartTimer(m, v, BigInt.asUintN(64, expires));
  return 0n;
}
