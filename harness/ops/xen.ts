// Ops for xen_version, vm_assist and memory_op: the hypercalls every HVM guest
// makes first. Struct layouts: xen/include/public/{version.h,memory.h}.

import { z } from 'zod';
import { defineConstants } from './constants.js';
import { defineOp, int, reader, structCall, StructWriter, type Action, type OutValue } from './types.js';
import { HYPERVISOR } from '../model/hypercall.js';
import { XENFEAT, XENVER, XENVER_SIZE } from '../model/version.js';
import { VMASST_CMD, VMASST_TYPE } from '../model/vm-assist.js';
import { XENMAPSPACE, XENMEM } from '../model/memory-op.js';

defineConstants('XENVER_', XENVER);
defineConstants('XENFEAT_', XENFEAT);
defineConstants('VMASST_CMD_', VMASST_CMD);
defineConstants('VMASST_TYPE_', VMASST_TYPE);
defineConstants('XENMEM_', XENMEM);
defineConstants('XENMAPSPACE_', XENMAPSPACE);

/** Size of the OUT buffer of each xen_version sub-op in a given mode. */
function versionBuffer(cmd: number, compat: boolean): number {
  switch (cmd) {
    case XENVER.extraversion: return XENVER_SIZE.extraversion;
    case XENVER.compile_info: return XENVER_SIZE.compile_info;
    case XENVER.capabilities: return XENVER_SIZE.capabilities;
    case XENVER.changeset: return XENVER_SIZE.changeset;
    case XENVER.platform_parameters: return compat ? 4 : 8;
    case XENVER.get_features: return 8;
    case XENVER.guest_handle: return XENVER_SIZE.guest_handle;
    case XENVER.commandline: return XENVER_SIZE.commandline;
    default: return 0;
  }
}

function decodeVersion(cmd: number, compat: boolean) {
  return (b: Uint8Array): Record<string, OutValue> => {
    const r = reader(b);
    switch (cmd) {
      case XENVER.extraversion:
      case XENVER.capabilities:
      case XENVER.changeset:
      case XENVER.commandline:
        return { text: r.cstr(0, b.length) };
      case XENVER.compile_info:
        return { compiler: r.cstr(0, 64), compile_by: r.cstr(64, 16), compile_domain: r.cstr(80, 32), compile_date: r.cstr(112, 32) };
      case XENVER.platform_parameters:
        return { virt_start: compat ? r.u32(0) : r.u64(0) };
      case XENVER.get_features:
        return { submap_idx: r.u32(0), submap: r.u32(4) };
      case XENVER.guest_handle:
        return { handle: r.hex(0, 16) };
    }
    return {};
  };
}

export const xenVersion = defineOp({
  name: 'xen.version',
  summary: 'HYPERVISOR_xen_version(cmd, arg): arg points at a buffer sized for the sub-op (or is `arg` when given)',
  args: z.strictObject({ cmd: int(), arg: int().optional(), submap_idx: int().optional() }),
  requires: ['hypercall.intercept'],
  out: ['text', 'compiler', 'compile_by', 'compile_domain', 'compile_date', 'virt_start', 'submap_idx', 'submap', 'handle'],
  encode(a, ctx): Action {
    const cmd = Number(a.cmd);
    const compat = ctx.width === 32;
    const size = versionBuffer(cmd, compat);
    if (a.arg !== undefined || size === 0) {
      return { kind: 'hypercall', nr: HYPERVISOR.xen_version, args: [a.cmd, a.arg ?? 0n], writes: [] };
    }
    const w = new StructWriter(size);
    if (cmd === XENVER.get_features) w.u32(0, a.submap_idx ?? 0n);
    return structCall(ctx, HYPERVISOR.xen_version, [a.cmd], w, decodeVersion(cmd, compat));
  },
});

export const vmAssist = defineOp({
  name: 'xen.vm_assist',
  summary: 'HYPERVISOR_vm_assist(cmd, type)',
  args: z.strictObject({ cmd: int(), type: int() }),
  requires: ['hypercall.intercept'],
  encode: (a): Action => ({ kind: 'hypercall', nr: HYPERVISOR.vm_assist, args: [a.cmd, a.type], writes: [] }),
});

export const addToPhysmap = defineOp({
  name: 'memory.add_to_physmap',
  summary: 'XENMEM_add_to_physmap: map a Xen page (shared_info, grant frame, ...) at guest frame `gpfn`',
  args: z.strictObject({ domid: int().optional(), space: int(), idx: int().optional(), gpfn: int(), size: int().optional() }),
  requires: ['hypercall.intercept'],
  encode(a, ctx): Action {
    const compat = ctx.width === 32;
    const w = new StructWriter(compat ? 16 : 24);
    w.u16(0, a.domid ?? 0x7ff0n).u16(2, a.size ?? 0n).u32(4, a.space);
    if (compat) w.u32(8, a.idx ?? 0n).u32(12, a.gpfn);
    else w.u64(8, a.idx ?? 0n).u64(16, a.gpfn);
    return structCall(ctx, HYPERVISOR.memory_op, [BigInt(XENMEM.add_to_physmap)], w);
  },
});

export const memoryOpRaw = defineOp({
  name: 'memory.op',
  summary: 'HYPERVISOR_memory_op(cmd, arg) with a raw argument',
  args: z.strictObject({ cmd: int(), arg: int().optional() }),
  requires: ['hypercall.intercept'],
  encode: (a): Action => ({ kind: 'hypercall', nr: HYPERVISOR.memory_op, args: [a.cmd, a.arg ?? 0n], writes: [] }),
});
