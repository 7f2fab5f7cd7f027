// Ops for HYPERVISOR_grant_table_op and the grant-table guest/host actions.
// Struct layouts: xen/include/public/grant_table.h (spec/xen-abi.md 4.3).
// Guest-side conveniences (writing grant entries, ending access) and the
// backend-kernel model (backend_map, XSA-300 accounting) are host-kind actions
// with a model implementation.

import { z } from 'zod';
import { defineConstants } from './constants.js';
import { defineOp, int, reader, StructWriter, type Action, type Outcome, type OutValue } from './types.js';
import { HYPERVISOR } from '../model/hypercall.js';
import {
  entryField, GNTCOPY, GNTMAP, GNTPIN, GNTST, GNTTABOP, gnttabState, GTF, maptrackUsed, MAPTRACK_PER_PAGE,
  readMapped, setEntryField, statusWord, writeMapped, XENMAPIDX_grant_table_status,
} from '../model/gnttab.js';
import { BACKEND_KIND, BACKEND_POLICY, backendMap, backendStats, backendUnmap, backendUnmapAll } from '../model/backend-memory.js';
import type { Domain } from '../model/domain.js';

defineConstants('GNTTABOP_', GNTTABOP);
defineConstants('GTF_', GTF);
defineConstants('GNTMAP_', GNTMAP);
defineConstants('GNTST_', GNTST);
defineConstants('GNTCOPY_', GNTCOPY);
defineConstants('BACKEND_POLICY_', BACKEND_POLICY);
defineConstants('BACKEND_KIND_', BACKEND_KIND);
defineConstants('', { XENMAPIDX_grant_table_status });

const CAPS = ['gnttab.v1'] as const;
const opt = () => int().optional();

function call(ctx: { scratch: number }, cmd: bigint | number, bytes: Uint8Array, count: bigint | number, decode?: (b: Uint8Array) => Record<string, OutValue>, uop?: bigint): Action {
  const gpa = ctx.scratch;
  return {
    kind: 'hypercall', nr: HYPERVISOR.grant_table_op,
    args: [BigInt(cmd), uop ?? BigInt(gpa), BigInt(count)],
    writes: [{ gpa, bytes }],
    out: decode ? { gpa, size: bytes.length, decode } : undefined,
  };
}

const mapElem = z.strictObject({ host_addr: int(), flags: opt(), ref: int(), dom: int() });

export const map = defineOp({
  name: 'gnttab.map',
  summary: 'GNTTABOP_map_grant_ref with one element (flags default GNTMAP_host_map); OUT status, handle, dev_bus_addr',
  args: z.strictObject({ host_addr: int(), flags: opt(), ref: int(), dom: int(), count: opt(), cmd: opt() }),
  requires: CAPS,
  out: ['status', 'handle', 'dev_bus_addr'],
  encode(a, ctx): Action {
    const w = new StructWriter(32).u64(0, a.host_addr).u32(8, a.flags ?? BigInt(GNTMAP.host_map)).u32(12, a.ref).u16(16, a.dom);
    return call(ctx, a.cmd ?? BigInt(GNTTABOP.map_grant_ref), w.bytes, a.count ?? 1n, (b) => {
      const r = reader(b);
      return { status: r.i16(18), handle: r.u32(20), dev_bus_addr: r.u64(24) };
    });
  },
});

export const mapBatch = defineOp({
  name: 'gnttab.map_batch',
  summary: 'GNTTABOP_map_grant_ref with several elements; OUT statuses[], handles[]',
  args: z.strictObject({ ops: z.array(mapElem).min(1).max(120) }),
  requires: CAPS,
  out: ['statuses', 'handles'],
  encode(a, ctx): Action {
    const w = new StructWriter(32 * a.ops.length);
    a.ops.forEach((o, i) => w.u64(i * 32, o.host_addr).u32(i * 32 + 8, o.flags ?? BigInt(GNTMAP.host_map)).u32(i * 32 + 12, o.ref).u16(i * 32 + 16, o.dom));
    return call(ctx, GNTTABOP.map_grant_ref, w.bytes, a.ops.length, (b) => {
      const r = reader(b);
      return { statuses: a.ops.map((_, i) => r.i16(i * 32 + 18)), handles: a.ops.map((_, i) => r.u32(i * 32 + 20)) };
    });
  },
});

const unmapElem = z.strictObject({ host_addr: int(), dev_bus_addr: opt(), handle: int() });

export const unmap = defineOp({
  name: 'gnttab.unmap',
  summary: 'GNTTABOP_unmap_grant_ref with one element; OUT status',
  args: z.strictObject({ host_addr: int(), dev_bus_addr: opt(), handle: int(), count: opt() }),
  requires: CAPS,
  out: ['status'],
  encode(a, ctx): Action {
    const w = new StructWriter(24).u64(0, a.host_addr).u64(8, a.dev_bus_addr ?? 0n).u32(16, a.handle);
    return call(ctx, GNTTABOP.unmap_grant_ref, w.bytes, a.count ?? 1n, (b) => ({ status: reader(b).i16(20) }));
  },
});

export const unmapBatch = defineOp({
  name: 'gnttab.unmap_batch',
  summary: 'GNTTABOP_unmap_grant_ref with several elements; OUT statuses[]',
  args: z.strictObject({ ops: z.array(unmapElem).min(1).max(160) }),
  requires: CAPS,
  out: ['statuses'],
  encode(a, ctx): Action {
    const w = new StructWriter(24 * a.ops.length);
    a.ops.forEach((o, i) => w.u64(i * 24, o.host_addr).u64(i * 24 + 8, o.dev_bus_addr ?? 0n).u32(i * 24 + 16, o.handle));
    return call(ctx, GNTTABOP.unmap_grant_ref, w.bytes, a.ops.length, (b) => ({ statuses: a.ops.map((_, i) => reader(b).i16(i * 24 + 20)) }));
  },
});

export const setupTable = defineOp({
  name: 'gnttab.setup_table',
  summary: 'GNTTABOP_setup_table (frame list after the struct, or at `frame_list`); OUT status, frames[]',
  args: z.strictObject({ dom: opt(), nr_frames: int(), frame_list: opt(), count: opt() }),
  requires: CAPS,
  out: ['status', 'frames'],
  encode(a, ctx): Action {
    const compat = ctx.width === 32;
    const hdr = compat ? 16 : 24;
    const esz = compat ? 4 : 8;
    const n = Math.min(Number(a.nr_frames), 64);
    const w = new StructWriter(hdr + n * esz).u16(0, a.dom ?? 0x7ff0n).u32(4, a.nr_frames);
    const list = a.frame_list ?? BigInt(ctx.scratch + hdr);
    if (compat) w.u32(12, list);
    else w.u64(16, list);
    return call(ctx, GNTTABOP.setup_table, w.bytes, a.count ?? 1n, (b) => {
      const r = reader(b);
      const frames = a.frame_list === undefined ? Array.from({ length: n }, (_, i) => (compat ? r.u32(hdr + i * 4) : r.u64(hdr + i * 8))) : [];
      return { status: r.i16(8), frames };
    });
  },
});

export const querySize = defineOp({
  name: 'gnttab.query_size',
  summary: 'GNTTABOP_query_size; OUT nr_frames, max_nr_frames, status',
  args: z.strictObject({ dom: opt(), count: opt() }),
  requires: CAPS,
  out: ['nr_frames', 'max_nr_frames', 'status'],
  encode(a, ctx): Action {
    const w = new StructWriter(16).u16(0, a.dom ?? 0x7ff0n);
    return call(ctx, GNTTABOP.query_size, w.bytes, a.count ?? 1n, (b) => {
      const r = reader(b);
      return { nr_frames: r.u32(4), max_nr_frames: r.u32(8), status: r.i16(12) };
    });
  },
});

export const setVersion = defineOp({
  name: 'gnttab.set_version',
  summary: 'GNTTABOP_set_version; OUT version (always the current version after the call)',
  args: z.strictObject({ version: int() }),
  requires: CAPS,
  out: ['version'],
  encode(a, ctx): Action {
    return call(ctx, GNTTABOP.set_version, new StructWriter(4).u32(0, a.version).bytes, 1, (b) => ({ version: reader(b).u32(0) }));
  },
});

export const getVersion = defineOp({
  name: 'gnttab.get_version',
  summary: 'GNTTABOP_get_version; OUT version',
  args: z.strictObject({ dom: opt() }),
  requires: CAPS,
  out: ['version'],
  encode(a, ctx): Action {
    return call(ctx, GNTTABOP.get_version, new StructWriter(8).u16(0, a.dom ?? 0x7ff0n).bytes, 1, (b) => ({ version: reader(b).u32(4) }));
  },
});

export const copy = defineOp({
  name: 'gnttab.copy',
  summary: 'GNTTABOP_copy with one element (src/dst: gref or gmfn per flags); OUT status',
  args: z.strictObject({
    src: int(), src_dom: opt(), src_off: opt(), dst: int(), dst_dom: opt(), dst_off: opt(), len: int(), flags: opt(),
  }),
  requires: CAPS,
  out: ['status'],
  encode(a, ctx): Action {
    const compat = ctx.width === 32;
    const w = new StructWriter(compat ? 24 : 40);
    const side = (base: number, ptr: bigint, dom: bigint | undefined, off: bigint | undefined) => {
      if (compat) w.u32(base, ptr).u16(base + 4, dom ?? 0x7ff0n).u16(base + 6, off ?? 0n);
      else w.u64(base, ptr).u16(base + 8, dom ?? 0x7ff0n).u16(base + 10, off ?? 0n);
    };
    side(0, a.src, a.src_dom, a.src_off);
    side(compat ? 8 : 16, a.dst, a.dst_dom, a.dst_off);
    w.u16(compat ? 16 : 32, a.len).u16(compat ? 18 : 34, a.flags ?? 0n);
    return call(ctx, GNTTABOP.copy, w.bytes, 1, (b) => ({ status: reader(b).i16(compat ? 20 : 36) }));
  },
});

export const swap = defineOp({
  name: 'gnttab.swap',
  summary: 'GNTTABOP_swap_grant_ref with one element; OUT status',
  args: z.strictObject({ ref_a: int(), ref_b: int() }),
  requires: CAPS,
  out: ['status'],
  encode(a, ctx): Action {
    return call(ctx, GNTTABOP.swap_grant_ref, new StructWriter(12).u32(0, a.ref_a).u32(4, a.ref_b).bytes, 1, (b) => ({ status: reader(b).i16(8) }));
  },
});

export const raw = defineOp({
  name: 'gnttab.raw',
  summary: 'HYPERVISOR_grant_table_op(cmd, uop, count) with raw arguments (uop defaults to the scratch page)',
  args: z.strictObject({ cmd: int(), uop: opt(), count: opt() }),
  requires: CAPS,
  encode(a, ctx): Action {
    return { kind: 'hypercall', nr: HYPERVISOR.grant_table_op, args: [a.cmd, a.uop ?? BigInt(ctx.scratch), a.count ?? 1n], writes: [] };
  },
});

// ---------------------------------------------------------------- guest-side actions

function placed(d: Domain, ref: number): boolean {
  const s = gnttabState(d);
  const per = s.version === 1 ? 512 : 256;
  return ref < s.shared.length * per && d.areas.has(`grant_frame/${Math.floor(ref / per)}`);
}

/** Write a grant entry as a guest does: domid and frame first, then flags. */
function grantOne(d: Domain, ref: number, domid: number, frame: bigint, flags: number): boolean {
  if (!placed(d, ref)) return false;
  const s = gnttabState(d);
  setEntryField(d, ref, 2, 2, domid);
  if (s.version === 1) setEntryField(d, ref, 4, 4, frame);
  else setEntryField(d, ref, 8, 8, frame);
  setEntryField(d, ref, 0, 2, flags);
  return true;
}

export const grant = defineOp({
  name: 'gnttab.grant',
  summary: 'Guest writes grant entry `ref` (domid, frame, then flags; default GTF_permit_access) in its placed table',
  args: z.strictObject({ ref: int(), domid: int(), frame: int(), flags: opt() }),
  requires: CAPS,
  encode: (a): Action => ({ kind: 'host', op: 'gnttab.grant', args: a }),
  model(_m, a, { dom }): Outcome {
    return grantOne(dom, Number(a.ref), Number(a.domid), a.frame, Number(a.flags ?? BigInt(GTF.permit_access)))
      ? {} : { fault: `grant entry ${a.ref} is not in a placed grant frame` };
  },
});

export const grantRange = defineOp({
  name: 'gnttab.grant_range',
  summary: 'Guest grants `count` refs from `first_ref` to `domid`, frames first_frame.. (frame_step, default 1)',
  args: z.strictObject({ first_ref: int(), count: int(), domid: int(), first_frame: int(), frame_step: opt(), flags: opt() }),
  requires: CAPS,
  encode: (a): Action => ({ kind: 'host', op: 'gnttab.grant_range', args: a }),
  model(_m, a, { dom }): Outcome {
    for (let i = 0; i < Number(a.count); i++) {
      const ok = grantOne(dom, Number(a.first_ref) + i, Number(a.domid), a.first_frame + BigInt(i) * (a.frame_step ?? 1n), Number(a.flags ?? BigInt(GTF.permit_access)));
      if (!ok) return { fault: `grant entry ${Number(a.first_ref) + i} is not in a placed grant frame` };
    }
    return {};
  },
});

/** gnttab_end_foreign_access_ref: revoke only if Xen holds no reading/writing bit. */
function endAccess(d: Domain, ref: number): boolean {
  if (statusWord(d, ref) & (GTF.reading | GTF.writing)) return false;
  setEntryField(d, ref, 0, 2, 0);
  return true;
}

export const endAccessOp = defineOp({
  name: 'gnttab.end_access',
  summary: 'Guest revokes grant `ref` (count refs from ref); ret 0, or -EBUSY if any is still in use; OUT busy',
  args: z.strictObject({ ref: int(), count: opt() }),
  requires: CAPS,
  out: ['busy'],
  encode: (a): Action => ({ kind: 'host', op: 'gnttab.end_access', args: a }),
  model(_m, a, { dom }): Outcome {
    let busy = 0;
    for (let i = 0; i < Number(a.count ?? 1n); i++) {
      if (!placed(dom, Number(a.ref) + i)) return { fault: `grant entry ${Number(a.ref) + i} is not in a placed grant frame` };
      if (!endAccess(dom, Number(a.ref) + i)) busy++;
    }
    return { ret: busy ? -16n : 0n, out: { busy: BigInt(busy) } };
  },
});

export const active = defineOp({
  name: 'gnttab.active',
  summary: 'Read Xen\'s active entry of `ref` in this (granting) domain; OUT pin, pin_hstw, pin_hstr, mapper, status_bits',
  args: z.strictObject({ ref: int() }),
  requires: CAPS,
  out: ['pin', 'pin_hstw', 'pin_hstr', 'mapper', 'status_bits', 'entry_flags'],
  encode: (a): Action => ({ kind: 'host', op: 'gnttab.active', args: a }),
  model(_m, a, { dom }): Outcome {
    const s = gnttabState(dom);
    const ref = Number(a.ref);
    const act = s.active.get(ref);
    const pin = act?.pin ?? 0;
    const inTable = ref < s.shared.length * (s.version === 1 ? 512 : 256);
    return {
      out: {
        pin: BigInt(pin), pin_hstw: BigInt(pin & GNTPIN.hstw_mask), pin_hstr: BigInt((pin & GNTPIN.hstr_mask) >> 8),
        mapper: BigInt(pin ? act!.domid : 0),
        status_bits: inTable ? BigInt(statusWord(dom, ref) & (GTF.reading | GTF.writing)) : 0n,
        entry_flags: inTable ? entryField(dom, ref, 0, 2) : 0n,
      },
    };
  },
});

export const maptrack = defineOp({
  name: 'gnttab.maptrack',
  summary: 'Maptrack usage of this (mapping) domain; OUT used, limit, frames, orphaned, p2m_grants',
  args: z.strictObject({}).optional(),
  requires: CAPS,
  out: ['used', 'limit', 'frames', 'orphaned', 'p2m_grants'],
  encode: (): Action => ({ kind: 'host', op: 'gnttab.maptrack', args: {} }),
  model(_m, _a, { dom }): Outcome {
    const s = gnttabState(dom);
    return {
      out: {
        used: BigInt(maptrackUsed(dom)), limit: BigInt(s.maptrack.length), frames: BigInt(s.maptrack.length / MAPTRACK_PER_PAGE),
        orphaned: BigInt(s.orphaned), p2m_grants: BigInt(s.p2m.size),
      },
    };
  },
});

export const readMappedOp = defineOp({
  name: 'gnttab.read_mapped',
  summary: 'This domain reads `size` bytes at `offset` of its gfn `gfn` through a grant mapping; OUT value; fault if unmapped',
  args: z.strictObject({ gfn: int(), offset: opt(), size: opt() }),
  requires: CAPS,
  out: ['value'],
  encode: (a): Action => ({ kind: 'host', op: 'gnttab.read_mapped', args: a }),
  model(_m, a, { dom }): Outcome {
    const size = Number(a.size ?? 8n);
    const b = readMapped(dom, Number(a.gfn), Number(a.offset ?? 0n), size);
    if (!b) return { fault: 'unmapped' };
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    return { out: { value: v } };
  },
});

export const writeMappedOp = defineOp({
  name: 'gnttab.write_mapped',
  summary: 'This domain writes a u64 `value` at `offset` of its gfn `gfn` through a grant mapping; fault unmapped/readonly',
  args: z.strictObject({ gfn: int(), offset: opt(), value: int() }),
  requires: CAPS,
  encode: (a): Action => ({ kind: 'host', op: 'gnttab.write_mapped', args: a }),
  model(_m, a, { dom }): Outcome {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, a.value), true);
    const r = writeMapped(dom, Number(a.gfn), Number(a.offset ?? 0n), b);
    return r === 'ok' ? {} : { fault: r };
  },
});

// ---------------------------------------------------------------- backend model (XSA-300)

export const backendMapOp = defineOp({
  name: 'gnttab.backend_map',
  summary: 'The backend (this domain) gets a frame per its policy and maps `ref` of `frontend`; ret 0 or -ENOMEM/-ENOSPC; OUT status, handle, gfn',
  args: z.strictObject({ frontend: int(), ref: int(), readonly: z.boolean().optional() }),
  requires: CAPS,
  out: ['status', 'handle', 'gfn'],
  encode: (a): Action => ({ kind: 'host', op: 'gnttab.backend_map', args: a }),
  model(m, a, { vcpu }): Outcome {
    const r = backendMap(m, vcpu, Number(a.frontend), Number(a.ref), a.readonly ?? false);
    const out: Record<string, OutValue> = { status: BigInt(r.status) };
    if (r.handle !== undefined) out.handle = BigInt(r.handle);
    if (r.gfn !== undefined) out.gfn = BigInt(r.gfn);
    return { ret: BigInt(r.ret), out };
  },
});

export const backendFlood = defineOp({
  name: 'gnttab.backend_flood',
  summary: 'The backend maps refs first_ref.. of `frontend` (`count` maps; `same_ref` maps one ref repeatedly); OUT ok, refused (by the backend: -ENOMEM/-ENOSPC), no_space, general_error, other, last_status',
  args: z.strictObject({ frontend: int(), first_ref: int(), count: int(), same_ref: z.boolean().optional(), readonly: z.boolean().optional() }),
  requires: CAPS,
  out: ['ok', 'refused', 'no_space', 'general_error', 'other', 'last_status'],
  encode: (a): Action => ({ kind: 'host', op: 'gnttab.backend_flood', args: a }),
  model(m, a, { vcpu }): Outcome {
    const c = { ok: 0n, refused: 0n, no_space: 0n, general_error: 0n, other: 0n, last_status: 0n };
    for (let i = 0; i < Number(a.count); i++) {
      const ref = Number(a.first_ref) + (a.same_ref ? 0 : i);
      const r = backendMap(m, vcpu, Number(a.frontend), ref, a.readonly ?? false);
      c.last_status = BigInt(r.status);
      if (r.ret < 0) c.refused++;
      else if (r.status === GNTST.okay) c.ok++;
      else if (r.status === GNTST.no_space) c.no_space++;
      else if (r.status === GNTST.general_error) c.general_error++;
      else c.other++;
    }
    return { out: c };
  },
});

export const backendUnmapOp = defineOp({
  name: 'gnttab.backend_unmap',
  summary: 'The backend unmaps its mapping `handle` and returns the frame; OUT status',
  args: z.strictObject({ handle: int() }),
  requires: CAPS,
  out: ['status'],
  encode: (a): Action => ({ kind: 'host', op: 'gnttab.backend_unmap', args: a }),
  model(m, a, { vcpu }): Outcome {
    return { out: { status: BigInt(backendUnmap(m, vcpu, Number(a.handle))) } };
  },
});

export const backendUnmapAllOp = defineOp({
  name: 'gnttab.backend_unmap_all',
  summary: 'The backend unmaps every mapping it holds (of `frontend` only, when given); OUT unmapped',
  args: z.strictObject({ frontend: opt() }),
  requires: CAPS,
  out: ['unmapped'],
  encode: (a): Action => ({ kind: 'host', op: 'gnttab.backend_unmap_all', args: a }),
  model(m, a, { vcpu }): Outcome {
    return { out: { unmapped: BigInt(backendUnmapAll(m, vcpu, a.frontend === undefined ? undefined : Number(a.frontend))) } };
  },
});

export const backendStatsOp = defineOp({
  name: 'gnttab.backend_stats',
  summary: 'Backend memory use of this domain: free_pages, above_reserve (low-water >= reserve), mapped, maptrack_used, oom, ...',
  args: z.strictObject({ frontend: opt() }),
  requires: CAPS,
  out: ['free_pages', 'reserve', 'above_reserve', 'min_free_pages', 'initial_free', 'ballooned', 'unpopulated', 'mapped',
    'maptrack_used', 'oom', 'retries', 'refusals', 'frontend_mapped', 'policy', 'kind'],
  encode: (a): Action => ({ kind: 'host', op: 'gnttab.backend_stats', args: a }),
  model(_m, a, { dom }): Outcome {
    return { out: { ...backendStats(dom, a.frontend === undefined ? undefined : Number(a.frontend)) } };
  },
});

export const domainDestroy = defineOp({
  name: 'gnttab.domain_destroy',
  summary: 'Destroy domain `domid` (its grant mappings are released; mappers of its grants keep them until they unmap)',
  args: z.strictObject({ domid: int() }),
  requires: ['domains.multi'],
  encode: (a): Action => ({ kind: 'host', op: 'gnttab.domain_destroy', args: a }),
  model(m, a): Outcome {
    if (!m.domain(Number(a.domid))) return { fault: `no domain ${a.domid}` };
    m.destroyDomain(Number(a.domid));
    return {};
  },
});

