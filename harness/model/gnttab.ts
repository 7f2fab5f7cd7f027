// HYPERVISOR_grant_table_op for HVM guests: grant tables of granting domains
// (v1/v2 entries in guest-visible frames, v2 status frames), the active-entry
// pin counters, and the maptrack table of mapping domains.
// Sources: xen/common/grant_table.c (do_grant_table_op, map_grant_ref,
// unmap_common, get_maptrack_handle, gnttab_set_version, gnttab_copy,
// swap_grant_ref, gnttab_map_frame, gnttab_setup_table), xen/arch/x86/hvm/hypercall.c
// (hvm_grant_table_op: the HVM filter), xen/arch/x86/mm/p2m.c
// (create_grant_p2m_mapping, replace_grant_p2m_mapping),
// xen/include/public/grant_table.h (layouts, GTF_*, GNTMAP_*, GNTST_*).
//
// Model decisions (documented, not in Xen):
// * Machine frames do not exist; a frame is named by (granting domain, gfn) and
//   dev_bus_addr reports the model address ((domid << 40 | gfn) << 12).
// * A grant mapped into a mapper's p2m is an overlay keyed by the mapper gfn; the
//   mapped bytes are read/written through it (readMapped/writeMapped) and stay in
//   the granter's memory. Mapping over a gfn that holds the mapper's RAM orphans
//   that RAM page (counted in `orphaned`), as Xen does.
// * steal_maptrack_handle starts at a random vCPU in Xen; the model starts at the
//   vCPU after the caller, so runs are deterministic.
// * Transitive grants are not modelled for copy: a transitive entry copies as
//   general_error. v2 -> v1 with copies in flight (-EAGAIN) cannot happen here.

import { err } from './errno.js';
import { hasBug } from './variant.js';
import { PAGE_SHIFT, PAGE_SIZE } from './guest-memory.js';
import { DOMID_SELF, modelHooks, type Domain, type Vcpu, type XenModel } from './domain.js';
import { HYPERVISOR, registerHypercalls, type HypercallContext } from './hypercall.js';
import { physmapSpaces, XENMAPSPACE } from './memory-op.js';
import { registerArea } from './areas.js';
import type { StructLayout } from './memory-layout.js';

export const GNTTABOP = {
  map_grant_ref: 0, unmap_grant_ref: 1, setup_table: 2, dump_table: 3, transfer: 4, copy: 5,
  query_size: 6, unmap_and_replace: 7, set_version: 8, get_status_frames: 9, get_version: 10,
  swap_grant_ref: 11, cache_flush: 12,
} as const;

export const GTF = {
  invalid: 0, permit_access: 1, accept_transfer: 2, transitive: 3, type_mask: 3,
  readonly: 1 << 2, reading: 1 << 3, writing: 1 << 4, PWT: 1 << 5, PCD: 1 << 6, PAT: 1 << 7,
  sub_page: 1 << 8, transfer_committed: 1 << 2, transfer_completed: 1 << 3,
} as const;

export const GNTMAP = {
  device_map: 1 << 0, host_map: 1 << 1, readonly: 1 << 2, application_map: 1 << 3, contains_pte: 1 << 4,
} as const;

export const GNTST = {
  okay: 0, general_error: -1, bad_domain: -2, bad_gntref: -3, bad_handle: -4, bad_virt_addr: -5,
  bad_dev_addr: -6, no_device_space: -7, permission_denied: -8, bad_page: -9, bad_copy_arg: -10,
  address_too_big: -11, eagain: -12, no_space: -13,
} as const;

export const GNTCOPY = { source_gref: 1 << 0, dest_gref: 1 << 1 } as const;

export const XENMAPIDX_grant_table_status = 0x80000000;
export const GNTTAB_NR_RESERVED_ENTRIES = 8;
export const MAPTRACK_PER_PAGE = 256;
const V1_PER_FRAME = PAGE_SIZE / 8;
const V2_PER_FRAME = PAGE_SIZE / 16;
const STATUS_PER_FRAME = PAGE_SIZE / 2;
const GNTTABOP_CMD_MASK = 0xfff;
const INVALID_GFN = (1n << 64n) - 1n;

/** Pin counter word: host-write 7:0, host-read 15:8, device-write 23:16, device-read 31:24. */
export const GNTPIN = {
  hstw_inc: 1 << 0, hstr_inc: 1 << 8, devw_inc: 1 << 16, devr_inc: 1 << 24,
  hstw_mask: 0xff, hstr_mask: 0xff00, devw_mask: 0xff0000, devr_mask: 0xff000000,
} as const;
const PIN_OVERFLOW_MASK = 0x80808080;

/** Default limits (Xen's gnttab_max_frames / gnttab_max_maptrack_frames). */
export const GNTTAB_DEFAULTS = { max_grant_frames: 64, max_maptrack_frames: 1024, max_grant_version: 2 };

interface Frame { gpa: number | null; backing: Uint8Array | null }

export interface ActiveEntry {
  pin: number;
  /** Domain id holding the pins. */
  domid: number;
  gfn: number;
  isSubPage: boolean;
  start: number;
  length: number;
}

export interface MaptrackEntry {
  /** GNTMAP_* flags still held; 0 = free. */
  flags: number;
  ref: number;
  granter: Domain | null;
  vcpu: number;
  /** Free-list link (Xen reuses the `ref` field for it). */
  next: number;
  hostGfn: number;
}

export interface GrantMapping { granter: Domain; gfn: number; readonly: boolean }

export interface GnttabState {
  version: 1 | 2;
  maxVersion: number;
  maxFrames: number;
  shared: Frame[];
  status: Frame[];
  active: Map<number, ActiveEntry>;
  // Mapping-domain side.
  maptrack: MaptrackEntry[];
  maxMaptrackFrames: number;
  /** The mapper's p2m grant overlay: gfn -> mapped frame. */
  p2m: Map<number, GrantMapping>;
  /** gfns whose RAM is gone (unmapped grant slots, ballooned pages). */
  holes: Set<number>;
  orphaned: number;
}

const MAPTRACK_TAIL = -1;
interface FreeList { head: number; tail: number }

const states = new WeakMap<Domain, GnttabState>();
const freeLists = new WeakMap<Vcpu, FreeList>();

export function gnttabState(d: Domain): GnttabState {
  let s = states.get(d);
  if (!s) {
    s = {
      version: 1,
      maxVersion: d.limit('max_grant_version', GNTTAB_DEFAULTS.max_grant_version),
      maxFrames: d.limit('max_grant_frames', GNTTAB_DEFAULTS.max_grant_frames),
      shared: [], status: [], active: new Map(), maptrack: [],
      maxMaptrackFrames: d.limit('max_maptrack_frames', GNTTAB_DEFAULTS.max_maptrack_frames),
      p2m: new Map(), holes: new Set(), orphaned: 0,
    };
    // INITIAL_NR_GRANT_FRAMES = 1 (grant_table_init).
    growTable(d, s, 1);
    states.set(d, s);
  }
  return s;
}

function freeList(v: Vcpu): FreeList {
  let f = freeLists.get(v);
  if (!f) { f = { head: MAPTRACK_TAIL, tail: MAPTRACK_TAIL }; freeLists.set(v, f); }
  return f;
}

const perFrame = (s: GnttabState): number => (s.version === 1 ? V1_PER_FRAME : V2_PER_FRAME);
export const nrGrantEntries = (s: GnttabState): number => s.shared.length * perFrame(s);
const statusFramesFor = (grantFrames: number): number => Math.ceil((grantFrames * V2_PER_FRAME) / STATUS_PER_FRAME);

/** gnttab_grow_table: add shared (and, for v2, status) frames; never shrinks. */
function growTable(d: Domain, s: GnttabState, nr: number): boolean {
  if (nr > s.maxFrames) return false;
  while (s.shared.length < nr) s.shared.push({ gpa: null, backing: new Uint8Array(PAGE_SIZE) });
  if (s.version === 2) while (s.status.length < statusFramesFor(s.shared.length)) s.status.push({ gpa: null, backing: new Uint8Array(PAGE_SIZE) });
  return true;
}

function frameRead(d: Domain, f: Frame, off: number, len: number): Uint8Array {
  return f.gpa !== null ? d.memory.read(f.gpa + off, len) : f.backing!.slice(off, off + len);
}
function frameWrite(d: Domain, f: Frame, off: number, bytes: Uint8Array): void {
  if (f.gpa !== null) d.memory.write(f.gpa + off, bytes);
  else f.backing!.set(bytes, off);
}
function le(bytes: Uint8Array): bigint {
  if (bytes.length <= 4) {
    let n = 0;
    for (let i = bytes.length - 1; i >= 0; i--) n = n * 256 + bytes[i];
    return BigInt(n);
  }
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  return v;
}
function toLe(v: bigint | number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  if (typeof v === 'bigint' && v >= 0n && v <= 0xffffffffn) v = Number(v);
  if (n <= 4 && typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) {
    let y = v % 2 ** (n * 8);
    for (let i = 0; i < n; i++) { b[i] = y & 0xff; y = Math.floor(y / 256); }
    return b;
  }
  let x = BigInt.asUintN(n * 8, BigInt(v));
  for (let i = 0; i < n; i++) { b[i] = Number(x & 0xffn); x >>= 8n; }
  return b;
}

/** Read a field of a shared entry: offset/size inside the 8- or 16-byte entry. */
export function entryField(d: Domain, ref: number, off: number, size: number): bigint {
  const s = gnttabState(d);
  const pf = perFrame(s);
  const esz = s.version === 1 ? 8 : 16;
  return le(frameRead(d, s.shared[Math.floor(ref / pf)], (ref % pf) * esz + off, size));
}
export function setEntryField(d: Domain, ref: number, off: number, size: number, v: bigint | number): void {
  const s = gnttabState(d);
  const pf = perFrame(s);
  const esz = s.version === 1 ? 8 : 16;
  frameWrite(d, s.shared[Math.floor(ref / pf)], (ref % pf) * esz + off, toLe(v, size));
}
/** The u16 that holds GTF_reading/GTF_writing: the entry flags (v1) or the status entry (v2). */
export function statusWord(d: Domain, ref: number): number {
  const s = gnttabState(d);
  if (s.version === 1) return Number(entryField(d, ref, 0, 2));
  return Number(le(frameRead(d, s.status[Math.floor(ref / STATUS_PER_FRAME)], (ref % STATUS_PER_FRAME) * 2, 2)));
}
function setStatusWord(d: Domain, ref: number, v: number): void {
  const s = gnttabState(d);
  if (s.version === 1) setEntryField(d, ref, 0, 2, v);
  else frameWrite(d, s.status[Math.floor(ref / STATUS_PER_FRAME)], (ref % STATUS_PER_FRAME) * 2, toLe(v, 2));
}

// ---------------------------------------------------------------- frames in the physmap

function placeFrame(d: Domain, s: GnttabState, status: boolean, idx: number, gpa: number): void {
  const list = status ? s.status : s.shared;
  const f = list[idx];
  // Whatever Xen frame was at gpa before moves out (its contents kept in backing).
  for (const [l, st] of [[s.shared, false], [s.status, true]] as const) {
    l.forEach((o, i) => {
      if (o !== f && o.gpa === gpa) {
        o.backing = d.memory.read(gpa, PAGE_SIZE);
        o.gpa = null;
        d.areas.delete(`${st ? 'grant_status_frame' : 'grant_frame'}/${i}`);
      }
    });
  }
  const contents = f.gpa !== null ? d.memory.read(f.gpa, PAGE_SIZE) : f.backing!;
  // The frame it leaves becomes a hole (xen/arch/x86/mm.c xenmem_add_to_physmap_one).
  if (f.gpa !== null && f.gpa !== gpa) d.memory.unmapFrame(f.gpa / PAGE_SIZE);
  d.memory.mapFrame(gpa / PAGE_SIZE);
  d.memory.write(gpa, contents);
  f.gpa = gpa;
  f.backing = null;
  d.areas.set(`${status ? 'grant_status_frame' : 'grant_frame'}/${idx}`, gpa);
}

function unplaceFrame(d: Domain, f: Frame, key: string): void {
  if (f.gpa !== null) {
    f.backing = d.memory.read(f.gpa, PAGE_SIZE);
    d.memory.unmapFrame(f.gpa / PAGE_SIZE); // guest_physmap_remove_page: a hole
    f.gpa = null;
  }
  d.areas.delete(key);
}

/** XENMAPSPACE_grant_table (xenmem_add_to_physmap_one -> gnttab_map_frame). */
function mapGrantFrame(_ctx: HypercallContext, d: Domain, idxArg: bigint, gpfn: bigint): number {
  const s = gnttabState(d);
  const gpa = Number(gpfn) * PAGE_SIZE;
  if (!Number.isSafeInteger(gpa) || !d.memory.contains(gpa, PAGE_SIZE)) return err('EINVAL');
  let idx = idxArg;
  if (s.version === 2 && (idx & BigInt(XENMAPIDX_grant_table_status)) !== 0n) {
    // gnttab_get_status_frame_mfn
    idx &= ~BigInt(XENMAPIDX_grant_table_status);
    if (idx >= BigInt(s.status.length)) {
      const nrStatus = Number(idx) + 1;
      const nrGrant = nrStatus * (STATUS_PER_FRAME / V2_PER_FRAME);
      if (nrGrant <= s.maxFrames) growTable(d, s, nrGrant);
      if (idx >= BigInt(s.status.length)) return err('EINVAL');
    }
    placeFrame(d, s, true, Number(idx), gpa);
    return 0;
  }
  // gnttab_get_shared_frame_mfn
  if (idx >= BigInt(s.shared.length)) {
    if (idx >= BigInt(s.maxFrames)) return err('EINVAL');
    if (!growTable(d, s, Number(idx) + 1)) return err('ENOMEM');
  }
  placeFrame(d, s, false, Number(idx), gpa);
  return 0;
}

physmapSpaces.set(XENMAPSPACE.grant_table, mapGrantFrame);

// ---------------------------------------------------------------- maptrack

function maptrackLimit(s: GnttabState): number {
  return s.maptrack.length;
}

/** __get_maptrack_handle: take the head unless it is the list's last (sentinel) entry. */
function takeFromList(s: GnttabState, v: Vcpu): number {
  const fl = freeList(v);
  if (fl.head === MAPTRACK_TAIL) return -1;
  const next = s.maptrack[fl.head].next;
  if (next === MAPTRACK_TAIL) return -1;
  const h = fl.head;
  fl.head = next;
  return h;
}

function stealHandle(s: GnttabState, d: Domain, curr: Vcpu): number {
  const n = d.vcpus.length;
  const first = (curr.id + 1) % n;
  let i = first;
  do {
    const h = takeFromList(s, d.vcpus[i]);
    if (h >= 0) {
      s.maptrack[h].vcpu = curr.id;
      return h;
    }
    i = (i + 1) % n;
  } while (i !== first);
  return -1;
}

/** get_maptrack_handle. */
function getMaptrackHandle(s: GnttabState, d: Domain, curr: Vcpu): number {
  let h = takeFromList(s, curr);
  if (h >= 0) return h;
  const fl = freeList(curr);
  if (maptrackLimit(s) / MAPTRACK_PER_PAGE >= s.maxMaptrackFrames && !hasBug(d.model, 'maptrack_unlimited')) {
    if (fl.tail === MAPTRACK_TAIL) {
      // Uninitialised free list: steal an extra entry for its tail sentinel.
      h = stealHandle(s, d, curr);
      if (h < 0) return -1;
      s.maptrack[h].next = MAPTRACK_TAIL;
      fl.tail = h;
      if (fl.head === MAPTRACK_TAIL) fl.head = h;
    }
    return stealHandle(s, d, curr);
  }
  // A new frame: the first entry is returned, the rest go to the head of the list.
  h = maptrackLimit(s);
  for (let i = 0; i < MAPTRACK_PER_PAGE; i++) {
    s.maptrack.push({ flags: 0, ref: 0, granter: null, vcpu: curr.id, next: h + i + 1, hostGfn: 0 });
  }
  if (fl.tail === MAPTRACK_TAIL) fl.tail = h + MAPTRACK_PER_PAGE - 1;
  s.maptrack[h + MAPTRACK_PER_PAGE - 1].next = fl.head;
  fl.head = h + 1;
  return h;
}

/** put_maptrack_handle: the entry becomes the tail of the list of the vCPU recorded in it. */
function putMaptrackHandle(s: GnttabState, d: Domain, h: number): void {
  const e = s.maptrack[h];
  e.next = MAPTRACK_TAIL;
  e.flags = 0;
  e.granter = null;
  const fl = freeList(d.vcpus[e.vcpu]);
  const tail = fl.tail;
  fl.tail = h;
  if (tail !== MAPTRACK_TAIL) s.maptrack[tail].next = h;
  else fl.head = h;
}

export function maptrackUsed(d: Domain): number {
  return gnttabState(d).maptrack.reduce((n, e) => n + (e.flags !== 0 ? 1 : 0), 0);
}

// ---------------------------------------------------------------- map / unmap

/** Model machine address of a granter frame. */
export function modelMaddr(granter: Domain, gfn: number): bigint {
  return ((BigInt(granter.id) << 40n) | BigInt(gfn)) << 12n;
}

/** _set_status (v1 / v2): validate on first pin and set GTF_reading/GTF_writing. */
function setStatus(rd: Domain, rs: GnttabState, ref: number, act: ActiveEntry, readonly: boolean, mapflag: boolean, ldomid: number): number {
  let mask: number = GTF.type_mask;
  if (mapflag) mask |= GTF.sub_page;
  const flags = Number(entryField(rd, ref, 0, 2));
  const domid = Number(entryField(rd, ref, 2, 2));
  if (rs.version === 1) {
    if (act.pin === 0 && ((flags & mask) !== GTF.permit_access || domid !== ldomid)) return GNTST.general_error;
    let nf = flags | GTF.reading;
    if (!readonly) {
      nf |= GTF.writing;
      if (flags & GTF.readonly) return GNTST.general_error;
    }
    setEntryField(rd, ref, 0, 2, nf);
    return GNTST.okay;
  }
  if (act.pin === 0 && ((((flags & mask) !== GTF.permit_access) && (mapflag || (flags & mask) !== GTF.transitive)) || domid !== ldomid)) {
    return GNTST.general_error;
  }
  if (!readonly && (flags & GTF.readonly)) return GNTST.general_error;
  let st = statusWord(rd, ref) | GTF.reading;
  if (!readonly) st |= GTF.writing;
  setStatusWord(rd, ref, st);
  return GNTST.okay;
}

/** Reduce GTF_reading/GTF_writing to what the remaining pins need (unmap_common_complete). */
function reduceStatus(rd: Domain, ref: number, act: ActiveEntry): void {
  let st = statusWord(rd, ref);
  if ((act.pin & (GNTPIN.hstw_mask | GNTPIN.devw_mask)) === 0) st &= ~GTF.writing;
  if (act.pin === 0) st &= ~(GTF.reading | GTF.writing);
  setStatusWord(rd, ref, st);
}

function activeEntry(s: GnttabState, ref: number): ActiveEntry {
  let a = s.active.get(ref);
  if (!a) { a = { pin: 0, domid: 0, gfn: 0, isSubPage: false, start: 0, length: PAGE_SIZE }; s.active.set(ref, a); }
  return a;
}

/** get_paged_frame: the granter's gfn must be its own RAM (no grant overlay). */
function pagedFrameOk(rd: Domain, gfn: number | bigint): boolean {
  const g = Number(gfn);
  if (!Number.isSafeInteger(g) || g < 0) return false;
  const rs = gnttabState(rd);
  if (rs.p2m.has(g) || rs.holes.has(g)) return false;
  return rd.memory.contains(g * PAGE_SIZE, PAGE_SIZE);
}

export interface MapRequest {
  hostAddr: bigint; flags: number; ref: number; dom: number;
  /**
   * An in-host backend (the VMM that emulates Xen also serves the device): the
   * grant is pinned and tracked, but no frame of the mapper's p2m is used.
   * Model-only; a guest's hypercall never sets it.
   */
  inHost?: boolean;
}
export interface MapResult { status: number; handle?: number; devBusAddr?: bigint }

/** map_grant_ref, with Xen's check order (spec 4.6). */
export function mapGrantRef(model: XenModel, vcpu: Vcpu, op: MapRequest): MapResult {
  const ld = vcpu.domain;
  const ls = gnttabState(ld);
  // 1. Neither host nor device mapping requested.
  if ((op.flags & (GNTMAP.device_map | GNTMAP.host_map)) === 0) return { status: GNTST.bad_gntref };
  // 2. Translated (HVM) mappers cannot ask for device/application/PTE mappings.
  if (op.flags & (GNTMAP.device_map | GNTMAP.application_map | GNTMAP.contains_pte)) return { status: GNTST.general_error };
  // 3. rcu_lock_domain_by_id: DOMID_SELF is not accepted.
  const rd = op.dom === DOMID_SELF ? undefined : model.domain(op.dom);
  if (!rd) return { status: GNTST.bad_domain };
  // 4. XSM (dummy policy): grant mapping is always allowed.
  // 5. A maptrack handle.
  const handle = getMaptrackHandle(ls, ld, vcpu);
  if (handle < 0) return { status: GNTST.no_space };
  const rs = gnttabState(rd);
  const fail = (status: number): MapResult => {
    putMaptrackHandle(ls, ld, handle);
    return { status };
  };
  // 6. Reference inside the granter's table.
  if (op.ref >= nrGrantEntries(rs)) return fail(GNTST.bad_gntref);
  const act = activeEntry(rs, op.ref);
  // 7. Pinned by another domain, a pin counter about to overflow, or a sub-page pin.
  if (act.pin !== 0 && (act.domid !== ld.id || (act.pin & PIN_OVERFLOW_MASK) >>> 0 !== 0 || act.isSubPage)) {
    return fail(GNTST.general_error);
  }
  const readonly = (op.flags & GNTMAP.readonly) !== 0;
  const firstPin = act.pin === 0;
  const statusBefore = statusWord(rd, op.ref);
  // 8. Validate and update the granter's entry.
  if (firstPin || (!readonly && (act.pin & (GNTPIN.hstw_mask | GNTPIN.devw_mask)) === 0)) {
    const rc = setStatus(rd, rs, op.ref, act, readonly, true, ld.id);
    if (rc !== GNTST.okay) return fail(rc);
    if (firstPin) {
      // 9. The granted frame.
      const gfn = rs.version === 1 ? entryField(rd, op.ref, 4, 4) : entryField(rd, op.ref, 8, 8);
      if (!pagedFrameOk(rd, gfn)) {
        setStatusWord(rd, op.ref, statusBefore);
        return fail(GNTST.bad_page);
      }
      act.gfn = Number(gfn);
      act.domid = ld.id;
      act.start = 0;
      act.length = PAGE_SIZE;
      act.isSubPage = false;
    }
  }
  // 10. Pin, then create the p2m mapping (create_grant_p2m_mapping).
  const pinIncr = readonly ? GNTPIN.hstr_inc : GNTPIN.hstw_inc;
  const oldPin = act.pin;
  act.pin += pinIncr;
  const hostGfn = op.hostAddr >> BigInt(PAGE_SHIFT);
  const rollback = (): MapResult => {
    act.pin = oldPin;
    reduceStatus(rd, op.ref, act);
    return fail(GNTST.general_error);
  };
  // create_grant_p2m_mapping refuses cache attributes, but map_grant_ref hands it the
  // entry's GTF_PWT/PCD/PAT only for I/O memory; a frame the granter owns is mapped with
  // cache_flags 0, so those bits do not matter here (xen/common/grant_table.c
  // map_grant_ref; real Xen 4.17.7 mapped such a grant).
  if ((op.flags & ~GNTMAP.readonly) !== GNTMAP.host_map) return rollback();
  let g = -1;
  if (!op.inHost) {
    // guest_physmap_add_entry: a gfn past the p2m's range, or one already holding a grant, fails.
    if (hostGfn >= 1n << 40n || ls.p2m.has(Number(hostGfn))) return rollback();
    g = Number(hostGfn);
    if (!ls.holes.has(g) && ld.memory.contains(g * PAGE_SIZE, PAGE_SIZE)) ls.orphaned++;
    ls.holes.delete(g);
    ls.p2m.set(g, { granter: rd, gfn: act.gfn, readonly });
  }
  // 11. Fill the maptrack entry.
  const e = ls.maptrack[handle];
  e.flags = op.flags;
  e.ref = op.ref;
  e.granter = rd;
  e.hostGfn = g;
  return { status: GNTST.okay, handle, devBusAddr: modelMaddr(rd, act.gfn) };
}

export interface UnmapRequest { hostAddr: bigint; devBusAddr: bigint; handle: number }

/** unmap_common + unmap_common_complete (spec 4.7). */
export function unmapGrantRef(model: XenModel, vcpu: Vcpu, op: UnmapRequest): number {
  const ld = vcpu.domain;
  const ls = gnttabState(ld);
  if (op.handle < 0 || op.handle >= maptrackLimit(ls)) return GNTST.bad_handle;
  const map = ls.maptrack[op.handle];
  if (map.flags === 0 || !map.granter) return GNTST.bad_handle;
  const rd = map.granter;
  const rs = gnttabState(rd);
  if (map.ref >= nrGrantEntries(rs)) return GNTST.bad_handle;
  const act = activeEntry(rs, map.ref);
  const flags = map.flags;
  if (op.devBusAddr !== 0n && (flags & GNTMAP.device_map) && op.devBusAddr !== modelMaddr(rd, act.gfn)) return GNTST.bad_dev_addr;
  let done = 0;
  if (op.hostAddr !== 0n && (flags & GNTMAP.host_map)) {
    // replace_grant_p2m_mapping: the gfn must hold a grant mapping of this frame.
    const g = op.hostAddr >> BigInt(PAGE_SHIFT);
    const m = g < 1n << 40n && map.hostGfn >= 0 ? ls.p2m.get(Number(g)) : undefined;
    if (!m || m.granter !== rd || m.gfn !== act.gfn) return GNTST.general_error;
    ls.p2m.delete(Number(g));
    ls.holes.add(Number(g));
    map.flags &= ~GNTMAP.host_map;
    done = GNTMAP.host_map | (flags & GNTMAP.readonly);
  }
  if (done === 0) return GNTST.okay;
  const ref = map.ref;
  if ((map.flags & (GNTMAP.device_map | GNTMAP.host_map)) === 0) putMaptrackHandle(ls, ld, op.handle);
  // unmap_common_complete: drop the pin and reduce the status bits.
  act.pin -= done & GNTMAP.readonly ? GNTPIN.hstr_inc : GNTPIN.hstw_inc;
  reduceStatus(rd, ref, act);
  return GNTST.okay;
}

/** Release every mapping a domain holds (gnttab_release_mappings at domain death). */
export function releaseMappings(d: Domain): number {
  const ls = gnttabState(d);
  let n = 0;
  ls.maptrack.forEach((map, h) => {
    if (releaseHandle(d, h)) n++;
  });
  for (const l of releaseListeners) l(d);
  return n;
}

/** Drop one mapping whatever its address (domain death, in-host backend unmap). */
export function releaseHandle(d: Domain, h: number): boolean {
  const ls = gnttabState(d);
  const map = ls.maptrack[h];
  if (!map || map.flags === 0 || !map.granter) return false;
  const rd = map.granter;
  const act = activeEntry(gnttabState(rd), map.ref);
  act.pin -= map.flags & GNTMAP.readonly ? GNTPIN.hstr_inc : GNTPIN.hstw_inc;
  reduceStatus(rd, map.ref, act);
  if (map.hostGfn >= 0) {
    ls.p2m.delete(map.hostGfn);
    ls.holes.add(map.hostGfn);
  }
  putMaptrackHandle(ls, d, h);
  return true;
}

const releaseListeners: Array<(d: Domain) => void> = [];
/** Subsystems that track mappings (backend accounting) hear about mass releases. */
export function onMappingsReleased(fn: (d: Domain) => void): void {
  releaseListeners.push(fn);
}

/** Read through a mapper's p2m: grant overlay first, then its own RAM. */
export function readMapped(d: Domain, gfn: number, off: number, len: number): Uint8Array | null {
  const m = gnttabState(d).p2m.get(gfn);
  if (!m) return null;
  return m.granter.memory.read(m.gfn * PAGE_SIZE + off, len);
}
export function writeMapped(d: Domain, gfn: number, off: number, bytes: Uint8Array): 'ok' | 'unmapped' | 'readonly' {
  const m = gnttabState(d).p2m.get(gfn);
  if (!m) return 'unmapped';
  if (m.readonly) return 'readonly';
  m.granter.memory.write(m.gfn * PAGE_SIZE + off, bytes);
  return 'ok';
}

// ---------------------------------------------------------------- set_version

function setVersion(d: Domain, want: number): { rc: number; version: number } {
  const s = gnttabState(d);
  const done = (rc: number) => ({ rc, version: s.version });
  if (want !== 1 && want !== 2) return done(err('EINVAL'));
  if (want === 2 && s.maxVersion === 1) return done(err('ENOSYS'));
  if (want === s.version) return done(0);
  const n = nrGrantEntries(s);
  for (const [ref, a] of s.active) if (ref >= GNTTAB_NR_RESERVED_ENTRIES && ref < n && a.pin !== 0) return done(err('EBUSY'));
  if (s.version === 2) {
    for (let i = 0; i < GNTTAB_NR_RESERVED_ENTRIES; i++) {
      const type = Number(entryField(d, i, 0, 2)) & GTF.type_mask;
      if (type === GTF.transitive) return done(err('ERANGE'));
      if (type === GTF.permit_access && entryField(d, i, 8, 8) >> 32n !== 0n) return done(err('ERANGE'));
    }
  }
  // Preserve the reserved entries.
  const reserved: Array<{ flags: number; domid: number; frame: bigint }> = [];
  for (let i = 0; i < GNTTAB_NR_RESERVED_ENTRIES; i++) {
    if (s.version === 1) {
      reserved.push({ flags: Number(entryField(d, i, 0, 2)), domid: Number(entryField(d, i, 2, 2)), frame: entryField(d, i, 4, 4) });
    } else {
      const flags = Number(entryField(d, i, 0, 2));
      if ((flags & GTF.type_mask) === GTF.permit_access) {
        reserved.push({ flags: (flags | statusWord(d, i)) & 0xffff, domid: Number(entryField(d, i, 2, 2)), frame: entryField(d, i, 8, 8) });
      } else reserved.push({ flags: 0, domid: 0, frame: 0n });
    }
  }
  if (want === 1) {
    // gnttab_unpopulate_status_frames: HVM status frames leave the p2m.
    s.status.forEach((f, i) => unplaceFrame(d, f, `grant_status_frame/${i}`));
    s.status = [];
  }
  for (const f of s.shared) frameWrite(d, f, 0, new Uint8Array(PAGE_SIZE));
  s.version = want;
  if (want === 2) growTable(d, s, s.shared.length); // gnttab_populate_status_frames
  for (let i = 0; i < GNTTAB_NR_RESERVED_ENTRIES; i++) {
    const r = reserved[i];
    if (want === 1) {
      setEntryField(d, i, 0, 2, r.flags);
      setEntryField(d, i, 2, 2, r.domid);
      setEntryField(d, i, 4, 4, r.frame);
    } else {
      setStatusWord(d, i, r.flags & (GTF.reading | GTF.writing));
      setEntryField(d, i, 0, 2, r.flags & ~(GTF.reading | GTF.writing));
      setEntryField(d, i, 2, 2, r.domid);
      setEntryField(d, i, 8, 8, r.frame);
    }
  }
  return done(0);
}

// ---------------------------------------------------------------- copy / swap

interface CopyBuf { d: Domain; gfn: number; start: number; length: number; ref?: number; act?: ActiveEntry; readonly: boolean }

/** acquire_grant_for_copy: a temporary pin (no maptrack entry). */
function acquireForCopy(rd: Domain, ref: number, ldomid: number, readonly: boolean): CopyBuf | number {
  const rs = gnttabState(rd);
  if (ref >= nrGrantEntries(rs)) return GNTST.bad_gntref;
  const act = activeEntry(rs, ref);
  if (act.pin !== 0 && (act.domid !== ldomid || (act.pin & PIN_OVERFLOW_MASK) >>> 0 !== 0)) return GNTST.general_error;
  const flags = Number(entryField(rd, ref, 0, 2));
  if (rs.version === 2 && (flags & GTF.type_mask) === GTF.transitive) return GNTST.general_error;
  const oldPin = act.pin;
  if (oldPin === 0 || (!readonly && (oldPin & (GNTPIN.devw_mask | GNTPIN.hstw_mask)) === 0)) {
    const before = statusWord(rd, ref);
    const rc = setStatus(rd, rs, ref, act, readonly, false, ldomid);
    if (rc !== GNTST.okay) return rc;
    let gfn: bigint;
    let sub = false;
    let start = 0;
    let length = PAGE_SIZE;
    if (rs.version === 1) gfn = entryField(rd, ref, 4, 4);
    else {
      gfn = entryField(rd, ref, 8, 8);
      if (flags & GTF.sub_page) {
        sub = true;
        start = Number(entryField(rd, ref, 4, 2));
        length = Number(entryField(rd, ref, 6, 2));
      }
    }
    if (!pagedFrameOk(rd, gfn)) {
      setStatusWord(rd, ref, before);
      return GNTST.bad_page;
    }
    if (oldPin === 0) {
      act.domid = ldomid;
      act.isSubPage = sub;
      act.start = start;
      act.length = length;
      act.gfn = Number(gfn);
    }
  }
  act.pin += readonly ? GNTPIN.hstr_inc : GNTPIN.hstw_inc;
  return { d: rd, gfn: act.gfn, start: act.start, length: act.length, ref, act, readonly };
}

function releaseCopy(b: CopyBuf): void {
  if (!b.act || b.ref === undefined) return;
  b.act.pin -= b.readonly ? GNTPIN.hstr_inc : GNTPIN.hstw_inc;
  reduceStatus(b.d, b.ref, b.act);
}

interface CopySide { ptr: bigint; domid: number; offset: number }

function copyOne(ctx: HypercallContext, src: CopySide, dst: CopySide, len: number, flags: number): number {
  const lock = (side: CopySide, isGref: boolean): Domain | number => {
    if (side.domid !== DOMID_SELF && !isGref) return GNTST.permission_denied;
    const d = ctx.model.lookupDomain(ctx.domain, side.domid);
    return d ?? GNTST.bad_domain;
  };
  const sd = lock(src, (flags & GNTCOPY.source_gref) !== 0);
  if (typeof sd === 'number') return sd;
  const dd = lock(dst, (flags & GNTCOPY.dest_gref) !== 0);
  if (typeof dd === 'number') return dd;
  const claim = (side: CopySide, d: Domain, isGref: boolean, readonly: boolean): CopyBuf | number => {
    if (isGref) {
      if (side.ptr > 0xffffffffn) return GNTST.bad_gntref;
      return acquireForCopy(d, Number(side.ptr), ctx.domain.id, readonly);
    }
    if (!pagedFrameOk(d, side.ptr)) return GNTST.bad_page;
    return { d, gfn: Number(side.ptr), start: 0, length: PAGE_SIZE, readonly };
  };
  const sb = claim(src, sd, (flags & GNTCOPY.source_gref) !== 0, true);
  if (typeof sb === 'number') return sb;
  const db = claim(dst, dd, (flags & GNTCOPY.dest_gref) !== 0, false);
  if (typeof db === 'number') {
    releaseCopy(sb);
    return db;
  }
  let rc: number = GNTST.okay;
  if (src.offset + len > PAGE_SIZE || dst.offset + len > PAGE_SIZE) rc = GNTST.bad_copy_arg;
  else if (src.offset < sb.start || src.offset + len > sb.start + sb.length) rc = GNTST.general_error;
  else if (dst.offset < db.start || dst.offset + len > db.start + db.length) rc = GNTST.general_error;
  else db.d.memory.write(db.gfn * PAGE_SIZE + dst.offset, sb.d.memory.read(sb.gfn * PAGE_SIZE + src.offset, len));
  releaseCopy(sb);
  releaseCopy(db);
  return rc;
}

function swapGrantRef(d: Domain, a: number, b: number): number {
  const s = gnttabState(d);
  const n = nrGrantEntries(s);
  if (a >= n || b >= n) return GNTST.bad_gntref;
  if (a === b) return GNTST.okay;
  if ((s.active.get(a)?.pin ?? 0) !== 0) return GNTST.eagain;
  if ((s.active.get(b)?.pin ?? 0) !== 0) return GNTST.eagain;
  const esz = s.version === 1 ? 8 : 16;
  const ea = entryField(d, a, 0, esz);
  const eb = entryField(d, b, 0, esz);
  setEntryField(d, a, 0, esz, eb);
  setEntryField(d, b, 0, esz, ea);
  if (s.version === 2) {
    const sa = statusWord(d, a);
    setStatusWord(d, a, statusWord(d, b));
    setStatusWord(d, b, sa);
  }
  return GNTST.okay;
}

// ---------------------------------------------------------------- the hypercall

/** XSM_TARGET under the dummy policy: self, or a privileged caller. */
const targetAllowed = (caller: Domain, d: Domain): boolean => caller === d || caller.privileged;

export function grantTableOp(ctx: HypercallContext, args: bigint[]): number {
  const rawCmd = Number(args[0] & 0xffffffffn);
  const uop = args[1];
  const count = Number(args[2] & 0xffffffffn);
  // hvm_grant_table_op: the raw command (continuation bits included) must be one of eight.
  const allowed: number[] = [GNTTABOP.query_size, GNTTABOP.setup_table, GNTTABOP.set_version, GNTTABOP.get_version,
    GNTTABOP.copy, GNTTABOP.map_grant_ref, GNTTABOP.unmap_grant_ref, GNTTABOP.swap_grant_ref];
  if (!allowed.includes(rawCmd)) return err('ENOSYS');
  if (count > 0x7fffffff) return err('EINVAL');
  const cmd = rawCmd & GNTTABOP_CMD_MASK;
  const d = ctx.domain;
  const compat = ctx.compat;
  switch (cmd) {
    case GNTTABOP.map_grant_ref: {
      for (let i = 0; i < count; i++) {
        const a = ctx.view(uop + BigInt(i * 32), 32);
        if (!a) return err('EFAULT');
        const r = mapGrantRef(ctx.model, ctx.vcpu, { hostAddr: a.u64(0), flags: a.u32(8), ref: a.u32(12), dom: a.u16(16) });
        a.setI16(18, r.status);
        if (r.handle !== undefined) a.setU32(20, r.handle);
        if (r.devBusAddr !== undefined) a.setU64(24, r.devBusAddr);
        if (!a.commit()) return err('EFAULT');
      }
      return 0;
    }
    case GNTTABOP.unmap_grant_ref: {
      for (let i = 0; i < count; i++) {
        const a = ctx.view(uop + BigInt(i * 24), 24);
        if (!a) return err('EFAULT');
        const st = unmapGrantRef(ctx.model, ctx.vcpu, { hostAddr: a.u64(0), devBusAddr: a.u64(8), handle: a.u32(16) });
        a.setI16(20, st);
        if (!a.commitRange(20, 2)) return err('EFAULT');
      }
      return 0;
    }
    case GNTTABOP.setup_table: {
      if (count !== 1) return err('EINVAL');
      const size = compat ? 16 : 24;
      const a = ctx.view(uop, size);
      if (!a) return err('EFAULT');
      const dom = a.u16(0);
      const nr = a.u32(4);
      const list = compat ? BigInt(a.u32(12)) : a.u64(16);
      let status: number = GNTST.okay;
      const td = ctx.model.lookupDomain(d, dom);
      if (!td) status = GNTST.bad_domain;
      else if (!targetAllowed(d, td)) status = GNTST.permission_denied;
      else {
        const ts = gnttabState(td);
        if (nr > ts.maxFrames) status = GNTST.general_error;
        else if (nr > ts.shared.length && !growTable(td, ts, nr)) status = GNTST.general_error;
        else {
          const esz = compat ? 4 : 8;
          for (let i = 0; i < nr; i++) {
            const f = ts.shared[i];
            const gfn = f.gpa === null ? INVALID_GFN : BigInt(f.gpa / PAGE_SIZE);
            if (!ctx.copyTo(list + BigInt(i * esz), toLe(gfn, esz))) status = GNTST.bad_virt_addr;
          }
        }
      }
      a.setI16(8, status);
      return a.commitRange(8, 2) ? 0 : err('EFAULT');
    }
    case GNTTABOP.query_size: {
      if (count !== 1) return err('EINVAL');
      const a = ctx.view(uop, 16);
      if (!a) return err('EFAULT');
      const td = ctx.model.lookupDomain(d, a.u16(0));
      if (!td) a.setI16(12, GNTST.bad_domain);
      else if (!targetAllowed(d, td)) a.setI16(12, GNTST.permission_denied);
      else {
        const ts = gnttabState(td);
        a.setU32(4, ts.shared.length);
        a.setU32(8, ts.maxFrames);
        a.setI16(12, GNTST.okay);
      }
      return a.commit() ? 0 : err('EFAULT');
    }
    case GNTTABOP.set_version: {
      const a = ctx.view(uop, 4);
      if (!a) return err('EFAULT');
      const r = setVersion(d, a.u32(0));
      a.setU32(0, r.version);
      return a.commit() ? r.rc : err('EFAULT');
    }
    case GNTTABOP.get_version: {
      const a = ctx.view(uop, 8);
      if (!a) return err('EFAULT');
      const td = ctx.model.lookupDomain(d, a.u16(0));
      if (!td) return err('ESRCH');
      if (!targetAllowed(d, td)) return err('EPERM');
      a.setU32(4, gnttabState(td).version);
      return a.commitRange(4, 4) ? 0 : err('EFAULT');
    }
    case GNTTABOP.copy: {
      const size = compat ? 24 : 40;
      for (let i = 0; i < count; i++) {
        const a = ctx.view(uop + BigInt(i * size), size);
        if (!a) return err('EFAULT');
        const side = (base: number): CopySide => compat
          ? { ptr: BigInt(a.u32(base)), domid: a.u16(base + 4), offset: a.u16(base + 6) }
          : { ptr: a.u64(base), domid: a.u16(base + 8), offset: a.u16(base + 10) };
        const src = side(0);
        const dst = side(compat ? 8 : 16);
        const len = a.u16(compat ? 16 : 32);
        const flags = a.u16(compat ? 18 : 34);
        const st = copyOne(ctx, src, dst, len, flags);
        const so = compat ? 20 : 36;
        a.setI16(so, st);
        if (!a.commitRange(so, 2)) return err('EFAULT');
      }
      return 0;
    }
    case GNTTABOP.swap_grant_ref: {
      for (let i = 0; i < count; i++) {
        const a = ctx.view(uop + BigInt(i * 12), 12);
        if (!a) return err('EFAULT');
        a.setI16(8, swapGrantRef(d, a.u32(0), a.u32(4)));
        if (!a.commitRange(8, 2)) return err('EFAULT');
      }
      return 0;
    }
  }
  // Continuation bits on an allowed command.
  return err('EINVAL');
}

registerHypercalls({ [HYPERVISOR.grant_table_op]: grantTableOp });

// ---------------------------------------------------------------- teardown

modelHooks.destroy.push((_m, d) => {
  // gnttab_release_mappings: the dying domain's own mappings go away. Its grant
  // table stays reachable by the mappers that still hold its frames (a zombie
  // domain in Xen) until they unmap.
  if (states.has(d)) releaseMappings(d);
});

// ---------------------------------------------------------------- memory-path areas

const V1_LAYOUT: StructLayout = {
  name: 'grant_entry_v1', size: 8,
  fields: { flags: { offset: 0, type: 'u16' }, domid: { offset: 2, type: 'u16' }, frame: { offset: 4, type: 'u32' } },
};
const V2_LAYOUT: StructLayout = {
  name: 'grant_entry_v2', size: 16,
  fields: {
    flags: { offset: 0, type: 'u16' }, domid: { offset: 2, type: 'u16' },
    frame: { offset: 8, type: 'u64' }, 'full_page.frame': { offset: 8, type: 'u64' },
    'sub_page.page_off': { offset: 4, type: 'u16' }, 'sub_page.length': { offset: 6, type: 'u16' },
    'sub_page.frame': { offset: 8, type: 'u64' },
    'transitive.trans_domid': { offset: 4, type: 'u16' }, 'transitive.gref': { offset: 8, type: 'u32' },
  },
};
const STATUS_LAYOUT: StructLayout = { name: 'grant_status', size: 2, fields: { status: { offset: 0, type: 'u16' } } };

function entryArea(name: string, layout: StructLayout, key: string, perFrameN: number, size: number): void {
  registerArea({
    name, indexed: true, layout: () => layout,
    locate: (v, i) => {
      const base = v.get(`${key}/${Math.floor(i / perFrameN)}`);
      return base === undefined ? undefined : base + (i % perFrameN) * size;
    },
  });
}
entryArea('grant_v1', V1_LAYOUT, 'grant_frame', V1_PER_FRAME, 8);
entryArea('grant_v2', V2_LAYOUT, 'grant_frame', V2_PER_FRAME, 16);
entryArea('grant_status', STATUS_LAYOUT, 'grant_status_frame', STATUS_PER_FRAME, 2);
