// HYPERVISOR_xen_version. Source: xen/common/kernel.c (do_xen_version),
// xen/include/xsm/dummy.h (xsm_xen_version: which sub-ops an unprivileged
// guest may read), xen/include/public/version.h (sub-op numbers and buffers).

import { err } from './errno.js';
import { HYPERVISOR, registerHypercalls, type HypercallContext } from './hypercall.js';

export const XENVER = {
  version: 0, extraversion: 1, compile_info: 2, capabilities: 3, changeset: 4,
  platform_parameters: 5, get_features: 6, pagesize: 7, guest_handle: 8,
  commandline: 9, build_id: 10, extraversion2: 11, capabilities2: 12, changeset2: 13,
  commandline2: 14,
} as const;

export const XENFEAT = {
  writable_page_tables: 0, writable_descriptor_tables: 1, auto_translated_physmap: 2,
  supervisor_mode_kernel: 3, pae_pgdir_above_4gb: 4, mmu_pt_update_preserve_ad: 5,
  highmem_assist: 6, gnttab_map_avail_bits: 7, hvm_callback_vector: 8, hvm_safe_pvclock: 9,
  hvm_pirqs: 10, dom0: 11, grant_map_identity: 12, memory_op_vnode_supported: 13,
  ARM_SMCCC_supported: 14, linux_rsdp_unrestricted: 15, not_direct_mapped: 16,
  direct_mapped: 17, runstate_phys_area: 18, vcpu_time_phys_area: 19, dm_msix_all_writes: 20,
} as const;

/** Buffer sizes of the fixed-size sub-ops (public/version.h). */
export const XENVER_SIZE = {
  extraversion: 16, compile_info: 144, capabilities: 1024, changeset: 64,
  guest_handle: 16, commandline: 1024,
} as const;

/** What the model reports for the build-time strings. */
export const MODEL_BUILD = {
  compiler: 'xconf reference model',
  compile_by: 'xconf',
  compile_domain: 'model',
  compile_date: 'deterministic',
  changeset: 'xconf-model',
  // arch_get_xen_caps (xen/arch/x86/setup.c): PV built in, 32-bit PV off, HVM on, each
  // entry followed by a space. Xen 4.17.7 answered exactly this (found by xconf fuzz
  // --target=xen; the model had "hvm-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p").
  capabilities: 'xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64 ',
  commandline: 'console=none',
};

/** xen_deny(): what a sub-op reads as when XSM denies it. */
const DENIED = '<denied>';

function cstr(s: string, size: number): Uint8Array {
  const out = new Uint8Array(size);
  const enc = new TextEncoder().encode(s);
  out.set(enc.subarray(0, size - 1)); // safe_strcpy: always NUL-terminated
  return out;
}

/** Sub-ops any guest may read; the rest need XSM_PLAT_CTRL (dummy policy: privileged domains). */
function denied(ctx: HypercallContext, cmd: number): boolean {
  switch (cmd) {
    case XENVER.version:
    case XENVER.platform_parameters:
    case XENVER.get_features:
    case XENVER.extraversion:
    case XENVER.compile_info:
    case XENVER.capabilities:
    case XENVER.changeset:
    case XENVER.pagesize:
    case XENVER.guest_handle:
      return false;
    default:
      return !ctx.domain.privileged;
  }
}

/** Whether the modelled Xen is at least major.minor (setup.xen_version): where releases differ. */
export function xenAtLeast(v: { major: number; minor: number }, major: number, minor: number): boolean {
  return v.major > major || (v.major === major && v.minor >= minor);
}

export function featureSubmap(ctx: HypercallContext): number {
  // HVM domain: translated paging, not direct-mapped, no PV-only features.
  let m = (1 << XENFEAT.memory_op_vnode_supported) | (1 << XENFEAT.writable_page_tables) |
    (1 << XENFEAT.auto_translated_physmap) | (1 << XENFEAT.hvm_safe_pvclock) |
    (1 << XENFEAT.hvm_callback_vector) | (1 << XENFEAT.not_direct_mapped);
  // Bits newer Xens added (xen/include/public/features.h at each release, and
  // xen/common/kernel.c setting them); real Xen 4.17.7 answers 0x12305 without them.
  const v = ctx.model.config.xenVersion;
  if (xenAtLeast(v, 4, 18)) m |= (1 << XENFEAT.runstate_phys_area) | (1 << XENFEAT.vcpu_time_phys_area);
  if (xenAtLeast(v, 4, 19)) m |= 1 << XENFEAT.dm_msix_all_writes;
  if (ctx.domain.privileged) m |= 1 << XENFEAT.dom0;
  return m >>> 0;
}

export function xenVersion(ctx: HypercallContext, args: bigint[]): number {
  const cmd = Number(BigInt.asIntN(32, args[0]));
  const arg = args[1];
  const deny = denied(ctx, cmd);
  const v = ctx.model.config.xenVersion;
  const put = (bytes: Uint8Array): number => (ctx.copyTo(arg, bytes) ? 0 : err('EFAULT'));
  switch (cmd) {
    case XENVER.version:
      return ((v.major << 16) | v.minor) >>> 0;
    case XENVER.extraversion:
      return put(cstr(deny ? DENIED : v.extra, XENVER_SIZE.extraversion));
    case XENVER.compile_info: {
      const b = new Uint8Array(XENVER_SIZE.compile_info);
      b.set(cstr(MODEL_BUILD.compiler, 64), 0);
      b.set(cstr(MODEL_BUILD.compile_by, 16), 64);
      b.set(cstr(MODEL_BUILD.compile_domain, 32), 80);
      b.set(cstr(MODEL_BUILD.compile_date, 32), 112);
      return put(b);
    }
    case XENVER.capabilities:
      return put(cstr(MODEL_BUILD.capabilities, XENVER_SIZE.capabilities));
    case XENVER.changeset:
      return put(cstr(MODEL_BUILD.changeset, XENVER_SIZE.changeset));
    case XENVER.platform_parameters:
      // virt_start is 0 for HVM vCPUs; xen_ulong_t wide in 64-bit, u32 in compat.
      return put(new Uint8Array(ctx.compat ? 4 : 8));
    case XENVER.get_features: {
      const fi = ctx.view(arg, 8);
      if (!fi) return err('EFAULT');
      if (fi.u32(0) !== 0) return err('EINVAL');
      fi.setU32(4, featureSubmap(ctx));
      return fi.commit() ? 0 : err('EFAULT');
    }
    case XENVER.pagesize:
      return arg !== 0n ? err('EINVAL') : 4096;
    case XENVER.guest_handle:
      return put(ctx.domain.handle);
    case XENVER.commandline: {
      if (deny) return put(cstr(DENIED, DENIED.length + 1));
      return put(cstr(MODEL_BUILD.commandline, XENVER_SIZE.commandline));
    }
    case XENVER.build_id:
    case XENVER.extraversion2:
    case XENVER.capabilities2:
    case XENVER.changeset2:
    case XENVER.commandline2:
      // Variable-length sub-ops: denied for unprivileged guests; the model has no
      // build id, and privileged callers get the length-request answer of 0 bytes.
      if (deny) return err('EPERM');
      return err('ENODATA');
  }
  return err('ENOSYS');
}

registerHypercalls({ [HYPERVISOR.xen_version]: xenVersion });
