// HYPERVISOR_memory_op, the parts an HVM guest uses to place Xen's pages.
// Source: xen/common/memory.c (do_memory_op, xenmem_add_to_physmap),
// xen/arch/x86/mm.c (arch_memory_op: XENMEM_machphys_mapping is PV-only),
// xen/include/public/memory.h (struct xen_add_to_physmap).

import { err } from './errno.js';
import { PAGE_SHIFT } from './guest-memory.js';
import { DOMID_SELF } from './domain.js';
import { HYPERVISOR, registerHypercalls, type HypercallContext } from './hypercall.js';
import type { Domain } from './domain.js';

export const XENMEM = {
  increase_reservation: 0, decrease_reservation: 1, maximum_ram_page: 2, current_reservation: 3,
  maximum_reservation: 4, machphys_mfn_list: 5, populate_physmap: 6, add_to_physmap: 7,
  memory_map: 9, machine_memory_map: 10, machphys_mapping: 12, maximum_gpfn: 14,
  remove_from_physmap: 15, add_to_physmap_batch: 23,
} as const;

export const XENMAPSPACE = {
  shared_info: 0, grant_table: 1, gmfn: 2, gmfn_range: 3, gmfn_foreign: 4, dev_mmio: 5,
} as const;

/** Handler for one XENMAPSPACE: returns 0 or a negative errno. */
export type PhysmapSpace = (ctx: HypercallContext, d: Domain, idx: bigint, gpfn: bigint) => number;

/** add_to_physmap spaces the model implements; subsystems (gnttab) add theirs. */
export const physmapSpaces = new Map<number, PhysmapSpace>([
  [XENMAPSPACE.shared_info, (_ctx, d, idx, gpfn) => {
    if (idx !== 0n) return err('EINVAL');
    const gpa = Number(gpfn) * (1 << PAGE_SHIFT);
    if (!d.memory.contains(gpa, 1 << PAGE_SHIFT)) return err('EINVAL');
    d.placeSharedInfo(gpa);
    return 0;
  }],
]);

function addToPhysmap(ctx: HypercallContext, arg: bigint): number {
  // 64-bit: domid u16@0, size u16@2, space u32@4, idx u64@8, gpfn u64@16 (24 bytes);
  // compat: idx u32@8, gpfn u32@12 (16 bytes).
  const size = ctx.compat ? 16 : 24;
  const a = ctx.view(arg, size);
  if (!a) return err('EFAULT');
  const domid = a.u16(0);
  const space = a.u32(4);
  const idx = ctx.compat ? BigInt(a.u32(8)) : a.u64(8);
  const gpfn = ctx.compat ? BigInt(a.u32(12)) : a.u64(16);
  // An HVM guest may only change its own physmap.
  const d = domid === DOMID_SELF ? ctx.domain : ctx.model.domain(domid);
  if (!d) return err('ESRCH');
  if (d !== ctx.domain && !ctx.domain.privileged) return err('EPERM');
  const fn = physmapSpaces.get(space);
  if (!fn) return err('EINVAL');
  return fn(ctx, d, idx, gpfn);
}

export function memoryOp(ctx: HypercallContext, args: bigint[]): number {
  // The low bits select the sub-op; the rest carry a continuation start extent.
  const op = Number(args[0] & 0x3fn);
  switch (op) {
    case XENMEM.add_to_physmap:
      return addToPhysmap(ctx, args[1]);
    case XENMEM.machphys_mapping:
      return err('ENOSYS'); // PV only: filtered for HVM (hypercall-defs.c, arch_memory_op)
  }
  return err('ENOSYS');
}

registerHypercalls({ [HYPERVISOR.memory_op]: memoryOp });
