// HYPERVISOR_vcpu_op(cmd, vcpuid, arg): dispatch by command.
// Sources: xen/common/domain.c (do_vcpu_op, map_guest_area, vcpu_info_populate),
// xen/common/compat/domain.c (compat_vcpu_op: 4-byte handles), xen/arch/x86/domain.c
// (arch_do_vcpu_op: VCPUOP_register_vcpu_time_memory_area), xen/include/public/vcpu.h,
// arch/x86/kvm/xen.c (kvm_xen_hcall_vcpu_op: singleshot timers in the kernel).
// spec/xen-abi.md 2.4, 6.2, 7.1.

import { err } from './errno.js';
import { xenAtLeast } from './version.js';
import { PAGE_SHIFT, PAGE_SIZE } from './guest-memory.js';
import { HYPERVISOR, registerHypercalls, type HypercallContext } from './hypercall.js';
import { VCPU_INFO, VCPU_INFO_SIZE, VCPU_TIME_INFO, XEN_LEGACY_MAX_VCPUS } from './memory-layout.js';
import type { Vcpu } from './domain.js';
import { domainShutdown, SHUTDOWN } from './sched.js';
import {
  encodeRunstate, registerPhys, registerVirtual, RUNSTATE, runstateChange, runstateGet,
} from './runstate.js';
import { registerTimeArea, updateVcpuTime } from './time.js';
import { MIN_PERIOD_NS, setPeriodic, setSingleshot, STIME_DELTA_MAX, stopSingleshot } from './timer.js';
import { kvmTimerPort, kvmVcpuAttrs } from './kvm-vcpu.js';
import { kvmGuestVcpuInfo } from './kvm-attr.js';

export const VCPUOP = {
  initialise: 0, up: 1, down: 2, is_up: 3, get_runstate_info: 4, register_runstate_memory_area: 5,
  set_periodic_timer: 6, stop_periodic_timer: 7, set_singleshot_timer: 8, stop_singleshot_timer: 9,
  register_vcpu_info: 10, send_nmi: 11, get_physid: 12, register_vcpu_time_memory_area: 13,
  register_runstate_phys_area: 14, register_vcpu_time_phys_area: 15,
} as const;

export const VCPU_SSHOTTMR_future = 1;
const U64 = (1n << 64n) - 1n;

/** VCPUOP_register_vcpu_info: {u64 mfn @0; u32 offset @8; u32 rsvd @12}. */
function registerVcpuInfo(ctx: HypercallContext, v: Vcpu, arg: bigint): number {
  const a = ctx.view(arg, 16);
  if (!a) return err('EFAULT');
  const mfn = a.u64(0);
  const offset = BigInt(a.u32(8));
  const gaddr = ((mfn << BigInt(PAGE_SHIFT)) + offset) & U64;
  const d = v.domain;
  const align = d.width === 32 ? 4 : 8;
  if (ctx.model.flavor === 'xen' && !xenAtLeast(ctx.model.config.xenVersion, 4, 18)) {
    // Xen 4.17's map_vcpu_info (xen/common/domain.c): the offset and alignment first
    // (-ENXIO), then a second registration and a frame without RAM (-EINVAL).
    if (offset > BigInt(PAGE_SIZE - VCPU_INFO_SIZE) || offset % BigInt(align) !== 0n) return err('ENXIO');
    if (v.vcpuInfoGpa !== null) return err('EINVAL');
    if (!d.memory.contains(Number(gaddr), VCPU_INFO_SIZE)) return err('EINVAL');
  }
  if (gaddr === U64 || gaddr >> BigInt(PAGE_SHIFT) !== mfn) return err('EINVAL');
  if (v.vcpuInfoGpa !== null) return err('EBUSY'); // only once per vCPU
  const g = Number(gaddr);
  // map_guest_area: within one page, aligned to xen_ulong_t (compat_ulong_t for 32-bit shared_info).
  if (Math.floor(g / PAGE_SIZE) !== Math.floor((g + VCPU_INFO_SIZE - 1) / PAGE_SIZE)) return err('ENXIO');
  if (g % align !== 0) return err('ENXIO');
  if (!d.memory.contains(g, VCPU_INFO_SIZE)) return err('EINVAL'); // no page behind the gfn
  // vcpu_info_populate: copy the old vcpu_info, or a zeroed one with the upcall mask set
  // for a vCPU that only had the dummy.
  const old = v.vcpuInfoAddress();
  let contents: Uint8Array;
  if (old !== null) contents = d.memory.read(old, VCPU_INFO_SIZE);
  else {
    contents = new Uint8Array(VCPU_INFO_SIZE);
    if (v.id >= XEN_LEGACY_MAX_VCPUS) contents[1] = 1;
  }
  d.memory.write(g, contents);
  v.vcpuInfoGpa = g;
  d.areas.set(`vcpu_info/${v.id}`, g);
  // Every selector bit set and an upcall marked pending: a spurious upcall by design.
  const sel = VCPU_INFO[d.width].fields.evtchn_pending_sel;
  if (d.width === 64) d.memory.setU64(g + sel.offset, U64);
  else d.memory.setU32(g + sel.offset, 0xffffffff);
  d.memory.setU8(g, 1);
  updateVcpuTime(ctx.model, v, true);
  return 0;
}

/** VCPUOP_register_vcpu_time_phys_area (15): map_guest_area rules, then a forced update. */
function registerTimePhys(ctx: HypercallContext, v: Vcpu, arg: bigint): number {
  const a = ctx.view(arg, 8);
  if (!a) return err('EFAULT');
  const gpa = a.u64(0);
  if (gpa === U64) {
    registerTimeArea(ctx.model, v, 0);
    return 0;
  }
  const g = Number(gpa);
  const size = VCPU_TIME_INFO.size;
  if (Math.floor(g / PAGE_SIZE) !== Math.floor((g + size - 1) / PAGE_SIZE)) return err('ENXIO');
  if (g % (v.domain.width === 32 ? 4 : 8) !== 0) return err('ENXIO');
  if (!v.domain.memory.contains(g, size)) return err('EINVAL');
  registerTimeArea(ctx.model, v, g);
  return 0;
}

export function vcpuOp(ctx: HypercallContext, args: bigint[]): number {
  const m = ctx.model;
  const cmd = Number(args[0] & 0xffffffffn);
  const vcpuid = Number(args[1] & 0xffffffffn);
  const arg = args[2];
  const d = ctx.domain;
  // KVM handles the singleshot timer in the kernel and checks only that the id is the caller's.
  // Once the VMM gave KVM the timer (kvm_xen_timer_enabled), kvm_xen_hcall_vcpu_op compares
  // it with the Xen vCPU id the VMM set (KVM_XEN_VCPU_ATTR_TYPE_VCPU_ID), not the index, and
  // acts on the calling vCPU (arch/x86/kvm/xen.c; 6.1 and 6.12 alike).
  let self: Vcpu | undefined;
  if (m.flavor === 'kvm' && (cmd === VCPUOP.set_singleshot_timer || cmd === VCPUOP.stop_singleshot_timer)) {
    const id = kvmTimerPort(ctx.vcpu) !== 0 ? Number(kvmVcpuAttrs(ctx.vcpu).vcpuId) : ctx.vcpu.id;
    if (vcpuid !== id) return err('EINVAL');
    self = ctx.vcpu;
  }
  const v = self ?? d.vcpu(vcpuid);
  if (!v) return err('ENOENT');
  // The phys-area registrations came with Xen 4.18 (xen/common/domain.c); before, no such sub-op.
  const phys = cmd === VCPUOP.register_runstate_phys_area || cmd === VCPUOP.register_vcpu_time_phys_area;
  if (phys && m.flavor === 'xen' && !xenAtLeast(m.config.xenVersion, 4, 18)) return err('ENOSYS');
  switch (cmd) {
    case VCPUOP.up:
      // Every model vCPU is initialised; bringing one up wakes it.
      if (!v.online) {
        v.online = true;
        runstateChange(m, v, RUNSTATE.running);
      }
      return 0;
    case VCPUOP.down:
      if (v.online) {
        v.online = false;
        runstateChange(m, v, RUNSTATE.offline);
        // The last vCPU going down powers the domain off.
        if (d.vcpus.every((x) => !x.online)) domainShutdown(d, SHUTDOWN.poweroff);
      }
      return 0;
    case VCPUOP.is_up:
      return v.online ? 1 : 0;
    case VCPUOP.get_runstate_info: {
      const bytes = encodeRunstate(runstateGet(m, v), ctx.width);
      return ctx.copyTo(arg, bytes) ? 0 : err('EFAULT');
    }
    case VCPUOP.register_runstate_memory_area: {
      // The compat handle is 4 bytes; the native union 8.
      const a = ctx.view(arg, ctx.compat ? 4 : 8);
      if (!a) return err('EFAULT');
      const gva = ctx.compat ? a.u32(0) : a.u64(0);
      if (gva > BigInt(Number.MAX_SAFE_INTEGER)) {
        // Not guest memory: accepted, and every later copy silently fails.
        registerVirtual(m, ctx.vcpu, v, Number.MAX_SAFE_INTEGER);
        return 0;
      }
      registerVirtual(m, ctx.vcpu, v, Number(gva));
      return 0;
    }
    case VCPUOP.register_runstate_phys_area: {
      const a = ctx.view(arg, 8);
      if (!a) return err('EFAULT');
      return registerPhys(m, ctx.vcpu, v, a.u64(0), ctx.width);
    }
    case VCPUOP.set_periodic_timer: {
      const a = ctx.view(arg, 8);
      if (!a) return err('EFAULT');
      const period = a.u64(0);
      if (period < MIN_PERIOD_NS) return err('EINVAL');
      if (period > STIME_DELTA_MAX) return err('EINVAL');
      setPeriodic(m, v, period);
      return 0;
    }
    case VCPUOP.stop_periodic_timer:
      setPeriodic(m, v, 0n);
      return 0;
    case VCPUOP.set_singleshot_timer: {
      if (v !== ctx.vcpu) return err('EINVAL');
      // {u64 timeout_abs_ns @0; u32 flags @8}: 16 bytes native, 12 compat.
      const a = ctx.view(arg, ctx.compat ? 12 : 16);
      if (!a) return err('EFAULT');
      const timeout = a.u64(0);
      // VCPU_SSHOTTMR_future is accepted and ignored. An expired (unsigned compare)
      // timeout stops the timer and sends the event now.
      if (timeout < BigInt(m.now)) {
        stopSingleshot(v);
        setSingleshot(m, v, m.now);
        return 0;
      }
      setSingleshot(m, v, BigInt.asIntN(64, timeout));
      return 0;
    }
    case VCPUOP.stop_singleshot_timer:
      if (v !== ctx.vcpu) return err('EINVAL');
      stopSingleshot(v);
      return 0;
    case VCPUOP.register_vcpu_info: {
      const r = registerVcpuInfo(ctx, v, arg);
      // The VMM hands the guest's new vcpu_info to KVM (KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO), as
      // QEMU does: whatever the VMM placed before is replaced (found by xconf fuzz --target=kvm).
      if (r === 0 && m.flavor === 'kvm') kvmGuestVcpuInfo(v);
      return r;
    }
    case VCPUOP.register_vcpu_time_memory_area: {
      const a = ctx.view(arg, ctx.compat ? 4 : 8);
      if (!a) return err('EFAULT');
      const gva = ctx.compat ? BigInt(a.u32(0)) : a.u64(0);
      if (gva > BigInt(Number.MAX_SAFE_INTEGER)) return 0;
      registerTimeArea(m, v, Number(gva));
      return 0;
    }
    case VCPUOP.register_vcpu_time_phys_area:
      return registerTimePhys(ctx, v, arg);
  }
  // initialise, send_nmi and get_physid are not modelled.
  return err('ENOSYS');
}

registerHypercalls({ [HYPERVISOR.vcpu_op]: vcpuOp });
