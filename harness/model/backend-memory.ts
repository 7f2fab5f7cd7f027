// Backend memory accounting: what a backend kernel (a domain that maps its
// frontends' grants) spends to give every grant mapping a guest frame. This is
// the XSA-300 / CVE-2019-17351 surface: an HVM backend has no spare frames, so
// pre-fix Linux ballooned out a RAM page per mapping with no bound.
// Sources: spec/xen-abi.md section 5; Linux drivers/xen/balloon.c
// (alloc_xenballooned_pages, add_ballooned_pages: the a1078e821b60 fix refuses
// when available memory is short, max_retry_count 4), drivers/xen/unpopulated-alloc.c
// (xen_alloc_unpopulated_pages: unused physical address space, no RAM).
//
// Per backend domain, from `limits:`
//   backend_pages            RAM pages the backend kernel owns (default: its memory size)
//   backend_used_pages       pages already in use at start (default 0)
//   backend_reserve_pages    pages the kernel must keep free (default 0)
//   backend_policy           BACKEND_POLICY (below; default balloon_reserve)
//   backend_max_retries      balloon retries before giving up (default 4)
//   backend_max_per_frontend grant mappings one frontend may hold (default unlimited)
//   backend_unpopulated_pages frames of unused address space (policy 2; default 65536)
//
// Policies:
//   0 balloon_unlimited  pre-fix Linux: every mapping balloons out a RAM page, no
//                        reserve, no per-frontend bound, unbounded retries. When free
//                        RAM runs out the backend is OOM-killed: all its mappings are
//                        torn down (the OOM event is counted) and the map fails.
//   1 balloon_reserve    the Linux fix: refuse (-ENOMEM, status GNTST_no_space) when the
//                        page would take free RAM below the reserve, after at most
//                        backend_max_retries retries; per-frontend bound enforced.
//   2 unpopulated        mappings use unpopulated address space (no RAM); when that is
//                        exhausted, falls back to policy 1 ballooning.
// A backend-side refusal (-ENOMEM for memory, -ENOSPC for the per-frontend bound)
// makes no hypercall; a Xen failure returns the frame and reports Xen's status.
//
// Backend kinds (limit `backend_kind`):
//   0 guest  a backend kernel in an HVM guest. It must map with GNTMAP_host_map
//            into a frame of its own p2m: Xen refuses GNTMAP_device_map alone
//            (general_error, check 2 of map_grant_ref), so the policy above decides
//            where that frame comes from.
//   1 host   an in-host backend (the VMM that emulates Xen, or xen-shim serving the
//            device itself). It asks for no guest mapping at all: the grant is
//            validated, pinned (GTF_reading/GTF_writing, pin counters) and tracked in
//            the backend's maptrack (so max_maptrack_frames still bounds it), but no
//            guest frame is used, no RAM is ballooned and the policy is irrelevant.
//            Only the per-frontend bound applies.

import { PAGE_SIZE } from './guest-memory.js';
import { type Domain, type Vcpu, type XenModel } from './domain.js';
import { GNTMAP, GNTST, gnttabState, maptrackUsed, mapGrantRef, onMappingsReleased, releaseHandle, unmapGrantRef } from './gnttab.js';
import { err } from './errno.js';

export const BACKEND_POLICY = { balloon_unlimited: 0, balloon_reserve: 1, unpopulated: 2 } as const;
export const BACKEND_KIND = { guest: 0, host: 1 } as const;

interface BackendMapping { gfn: number; frontend: number; source: 'balloon' | 'unpopulated' | 'host'; hostAddr: bigint }

export interface BackendState {
  kind: number;
  policy: number;
  pages: number;
  reserve: number;
  maxRetries: number;
  perFrontend: number;
  unpopulatedPages: number;
  free: number;
  initialFree: number;
  minFree: number;
  ballooned: number;
  unpopulatedUsed: number;
  oom: number;
  retries: number;
  refusals: number;
  mappings: Map<number, BackendMapping>;
  /** How many of `mappings` each frontend has (kept with it: a flood checks it on every map). */
  perFrontendCount: Map<number, number>;
  /** gfns ballooned out earlier and now free for reuse, and the next fresh one. */
  balloonPool: number[];
  nextBalloonGfn: number;
  unpopPool: number[];
  nextUnpopGfn: number;
}

const states = new WeakMap<Domain, BackendState>();

export function backendState(d: Domain): BackendState {
  let s = states.get(d);
  if (!s) {
    const ramPages = d.memory.size / PAGE_SIZE;
    const pages = d.limit('backend_pages', ramPages);
    const free = pages - d.limit('backend_used_pages', 0);
    s = {
      kind: d.limit('backend_kind', BACKEND_KIND.guest),
      policy: d.limit('backend_policy', BACKEND_POLICY.balloon_reserve),
      pages, reserve: d.limit('backend_reserve_pages', 0),
      maxRetries: d.limit('backend_max_retries', 4),
      perFrontend: d.limit('backend_max_per_frontend', Number.MAX_SAFE_INTEGER),
      unpopulatedPages: d.limit('backend_unpopulated_pages', 65536),
      free, initialFree: free, minFree: free,
      ballooned: 0, unpopulatedUsed: 0, oom: 0, retries: 0, refusals: 0,
      mappings: new Map(),
      perFrontendCount: new Map(),
      balloonPool: [],
      // Ballooned frames come from the top of the backend's RAM downwards.
      nextBalloonGfn: ramPages - 1,
      unpopPool: [],
      // Unpopulated space starts above RAM, leaving a 1 GiB gap.
      nextUnpopGfn: ramPages + (1 << 18),
    };
    states.set(d, s);
  }
  return s;
}

function frontendCount(s: BackendState, fe: number): number {
  return s.perFrontendCount.get(fe) ?? 0;
}

function addMapping(s: BackendState, handle: number, m: BackendMapping): void {
  const old = s.mappings.get(handle);
  if (old) removeMapping(s, handle);
  s.mappings.set(handle, m);
  s.perFrontendCount.set(m.frontend, frontendCount(s, m.frontend) + 1);
}

function removeMapping(s: BackendState, handle: number): void {
  const m = s.mappings.get(handle);
  if (!m) return;
  s.mappings.delete(handle);
  const n = frontendCount(s, m.frontend) - 1;
  if (n > 0) s.perFrontendCount.set(m.frontend, n);
  else s.perFrontendCount.delete(m.frontend);
}

function takePage(s: BackendState): { gfn: number; source: 'balloon' | 'unpopulated' } | 'enomem' | 'oom' {
  if (s.policy === BACKEND_POLICY.unpopulated && s.unpopulatedUsed < s.unpopulatedPages) {
    s.unpopulatedUsed++;
    return { gfn: s.unpopPool.pop() ?? s.nextUnpopGfn++, source: 'unpopulated' };
  }
  if (s.policy === BACKEND_POLICY.balloon_unlimited) {
    if (s.free <= 0) return 'oom';
  } else {
    // add_ballooned_pages after the fix: refuse when free memory would fall below the reserve.
    if (s.free - 1 < s.reserve) {
      s.retries += s.maxRetries;
      s.refusals++;
      return 'enomem';
    }
  }
  s.free--;
  s.ballooned++;
  s.minFree = Math.min(s.minFree, s.free);
  return { gfn: s.balloonPool.pop() ?? s.nextBalloonGfn--, source: 'balloon' };
}

function givePage(s: BackendState, m: { gfn: number; source: 'balloon' | 'unpopulated' | 'host' }): void {
  if (m.source === 'host') return;
  if (m.source === 'unpopulated') {
    s.unpopulatedUsed--;
    s.unpopPool.push(m.gfn);
  } else {
    s.free++;
    s.ballooned--;
    s.balloonPool.push(m.gfn);
  }
}

export interface BackendMapResult { ret: number; status: number; handle?: number; gfn?: number }

/** The backend maps `ref` of `frontend` (gnttab_alloc_pages + GNTTABOP_map_grant_ref). */
export function backendMap(model: XenModel, vcpu: Vcpu, frontend: number, ref: number, readonly: boolean): BackendMapResult {
  const d = vcpu.domain;
  const s = backendState(d);
  if ((s.kind === BACKEND_KIND.host || s.policy !== BACKEND_POLICY.balloon_unlimited) && frontendCount(s, frontend) >= s.perFrontend) {
    s.refusals++;
    return { ret: err('ENOSPC'), status: GNTST.no_space };
  }
  if (s.kind === BACKEND_KIND.host) {
    const r = mapGrantRef(model, vcpu, { hostAddr: 0n, flags: GNTMAP.host_map | (readonly ? GNTMAP.readonly : 0), ref, dom: frontend, inHost: true });
    if (r.status !== GNTST.okay || r.handle === undefined) return { ret: 0, status: r.status };
    addMapping(s, r.handle, { gfn: -1, source: 'host', frontend, hostAddr: 0n });
    return { ret: 0, status: GNTST.okay, handle: r.handle };
  }
  const page = takePage(s);
  if (page === 'enomem') return { ret: err('ENOMEM'), status: GNTST.no_space };
  if (page === 'oom') {
    // Out of memory with nothing held back: the OOM killer takes the backend's
    // mapping process; every mapping it held is unmapped.
    s.oom++;
    backendUnmapAll(model, vcpu);
    return { ret: err('ENOMEM'), status: GNTST.no_space };
  }
  const hostAddr = BigInt(page.gfn) * BigInt(PAGE_SIZE);
  // The ballooned or unpopulated frame is a hole in the backend's p2m already.
  markHole(d, page.gfn);
  const r = mapGrantRef(model, vcpu, { hostAddr, flags: GNTMAP.host_map | (readonly ? GNTMAP.readonly : 0), ref, dom: frontend });
  if (r.status !== GNTST.okay || r.handle === undefined) {
    givePage(s, page);
    return { ret: 0, status: r.status };
  }
  addMapping(s, r.handle, { ...page, frontend, hostAddr });
  return { ret: 0, status: GNTST.okay, handle: r.handle, gfn: page.gfn };
}

export function backendUnmap(model: XenModel, vcpu: Vcpu, handle: number): number {
  const s = backendState(vcpu.domain);
  const m = s.mappings.get(handle);
  if (!m) return GNTST.bad_handle;
  if (m.source === 'host') {
    if (!releaseHandle(vcpu.domain, handle)) return GNTST.bad_handle;
    removeMapping(s, handle);
    return GNTST.okay;
  }
  const st = unmapGrantRef(model, vcpu, { hostAddr: m.hostAddr, devBusAddr: 0n, handle });
  if (st === GNTST.okay) {
    removeMapping(s, handle);
    givePage(s, m);
  }
  return st;
}

/** Unmap every backend mapping (of one frontend, or all); returns how many. */
export function backendUnmapAll(model: XenModel, vcpu: Vcpu, frontend?: number): number {
  const s = backendState(vcpu.domain);
  let n = 0;
  for (const [h, m] of [...s.mappings]) {
    if (frontend !== undefined && m.frontend !== frontend) continue;
    if (backendUnmap(model, vcpu, h) === GNTST.okay) n++;
  }
  return n;
}

export interface BackendStats {
  free_pages: bigint; reserve: bigint; above_reserve: bigint; min_free_pages: bigint; initial_free: bigint;
  ballooned: bigint; unpopulated: bigint; mapped: bigint; maptrack_used: bigint; oom: bigint;
  retries: bigint; refusals: bigint; frontend_mapped: bigint; policy: bigint; kind: bigint;
}

export function backendStats(d: Domain, frontend?: number): BackendStats {
  const s = backendState(d);
  return {
    free_pages: BigInt(s.free), reserve: BigInt(s.reserve), above_reserve: s.minFree >= s.reserve ? 1n : 0n,
    min_free_pages: BigInt(s.minFree), initial_free: BigInt(s.initialFree), ballooned: BigInt(s.ballooned),
    unpopulated: BigInt(s.unpopulatedUsed), mapped: BigInt(s.mappings.size), maptrack_used: BigInt(maptrackUsed(d)),
    oom: BigInt(s.oom), retries: BigInt(s.retries), refusals: BigInt(s.refusals),
    frontend_mapped: BigInt(frontend === undefined ? s.mappings.size : frontendCount(s, frontend)),
    policy: BigInt(s.policy), kind: BigInt(s.kind),
  };
}

// The backend's grant mappings sit in holes: tell the grant-table model so the
// map does not count an orphaned RAM page.
function markHole(d: Domain, gfn: number): void {
  gnttabState(d).holes.add(gfn);
}

// When Xen releases all of a domain's mappings (its death), its backend bookkeeping goes too.
onMappingsReleased((d) => {
  const s = states.get(d);
  if (!s) return;
  for (const m of s.mappings.values()) givePage(s, m);
  s.mappings.clear();
  s.perFrontendCount.clear();
});
