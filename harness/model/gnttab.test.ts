// Unit and property tests of the grant-table model and backend accounting.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ModelDriver } from '../drivers/model/model-driver.js';
import type { SessionSetup } from '../drivers/driver.js';
import type { XenModel } from './domain.js';
import { hypercall } from './hypercall-table.js';
import { HYPERVISOR } from './hypercall.js';
import {
  entryField, GNTMAP, GNTPIN, GNTST, GNTTABOP, gnttabState, GTF, mapGrantRef, maptrackUsed, nrGrantEntries,
  setEntryField, statusWord, unmapGrantRef,
} from './gnttab.js';
import { BACKEND_KIND, BACKEND_POLICY, backendMap, backendState, backendStats, backendUnmap, backendUnmapAll } from './backend-memory.js';
import { physmapSpaces, XENMAPSPACE } from './memory-op.js';
import { HypercallContext } from './hypercall.js';

function build(domains: Array<{ id: number; vcpus?: number; limits?: Record<string, number> }>, mode: 64 | 32 = 64): XenModel {
  const setup: SessionSetup = {
    mode, xenVersion: { major: 4, minor: 19, extra: '.0' }, scratch: 0x100000,
    domains: domains.map((d) => ({
      id: d.id, vcpus: d.vcpus ?? 1, privileged: false, memoryBytes: 16 << 20, sharedInfo: 0x80000, hypercallPage: 0x81000, limits: d.limits ?? {},
    })),
  };
  return new ModelDriver('xen').build(setup);
}

function placeTable(m: XenModel, dom: number, frames = 1): void {
  const d = m.domain(dom)!;
  const fn = physmapSpaces.get(XENMAPSPACE.grant_table)!;
  for (let i = 0; i < frames; i++) expect(fn(new HypercallContext(m, d.vcpus[0]), d, BigInt(i), BigInt(0x200 + i))).toBe(0);
}

function grant(m: XenModel, dom: number, ref: number, to: number, frame: number, flags: number = GTF.permit_access): void {
  const d = m.domain(dom)!;
  setEntryField(d, ref, 2, 2, to);
  setEntryField(d, ref, 4, 4, frame);
  setEntryField(d, ref, 0, 2, flags);
}

describe('grant_table_op through the hypercall', () => {
  it('map_grant_ref writes status and handle back into the guest struct; the batch returns 0', () => {
    const m = build([{ id: 1 }, { id: 2 }]);
    placeTable(m, 1);
    grant(m, 1, 8, 2, 0x300);
    const be = m.domain(2)!;
    const uop = 0x100000;
    const op = new DataView(new ArrayBuffer(64));
    for (const [i, ref] of [[0, 8], [1, 9999]]) {
      op.setBigUint64(i * 32, BigInt(0x2000000 + i * 4096), true);
      op.setUint32(i * 32 + 8, GNTMAP.host_map, true);
      op.setUint32(i * 32 + 12, ref, true);
      op.setUint16(i * 32 + 16, 1, true);
    }
    be.memory.write(uop, new Uint8Array(op.buffer));
    const r = hypercall(m, be.vcpus[0], { rax: BigInt(HYPERVISOR.grant_table_op), rdi: BigInt(GNTTABOP.map_grant_ref), rsi: BigInt(uop), rdx: 2n });
    expect(r.ret).toBe(0n);
    expect(be.memory.u16(uop + 18)).toBe(GNTST.okay);
    expect(be.memory.u32(uop + 20)).toBe(0);
    expect(BigInt.asIntN(16, BigInt(be.memory.u16(uop + 32 + 18)))).toBe(BigInt(GNTST.bad_gntref));
    expect(statusWord(m.domain(1)!, 8) & (GTF.reading | GTF.writing)).toBe(GTF.reading | GTF.writing);
  });

  it('filters the ops HVM guests may not use with -ENOSYS, even when count is negative', () => {
    const m = build([{ id: 1 }]);
    for (const cmd of [GNTTABOP.transfer, GNTTABOP.dump_table, GNTTABOP.unmap_and_replace, GNTTABOP.get_status_frames, GNTTABOP.cache_flush]) {
      const r = hypercall(m, m.domain(1)!.vcpus[0], { rax: 20n, rdi: BigInt(cmd), rsi: 0x100000n, rdx: 0x80000000n });
      expect(r.ret).toBe(-38n);
    }
  });
});

describe('map_grant_ref rules', () => {
  it('saturates a pin counter at 128 and never wraps', () => {
    const m = build([{ id: 1 }, { id: 2 }]);
    placeTable(m, 1);
    grant(m, 1, 8, 2, 0x300);
    const v = m.domain(2)!.vcpus[0];
    const results = Array.from({ length: 130 }, (_, i) => mapGrantRef(m, v, { hostAddr: BigInt(0x2000000 + i * 4096), flags: GNTMAP.host_map, ref: 8, dom: 1 }).status);
    expect(results.filter((s) => s === GNTST.okay).length).toBe(128);
    expect(results.slice(128)).toEqual([GNTST.general_error, GNTST.general_error]);
    expect(gnttabState(m.domain(1)!).active.get(8)!.pin & GNTPIN.hstw_mask).toBe(128);
  });

  it('gives exactly 255 handles with one maptrack frame and one vCPU', () => {
    const m = build([{ id: 1 }, { id: 2, limits: { max_maptrack_frames: 1 } }]);
    placeTable(m, 1);
    for (let r = 8; r < 300; r++) grant(m, 1, r, 2, 0x300 + r);
    const v = m.domain(2)!.vcpus[0];
    const st = Array.from({ length: 260 }, (_, i) => mapGrantRef(m, v, { hostAddr: BigInt(0x2000000 + i * 4096), flags: GNTMAP.host_map, ref: 8 + i, dom: 1 }).status);
    expect(st.filter((s) => s === GNTST.okay).length).toBe(255);
    expect(st[255]).toBe(GNTST.no_space);
  });

  it('a failed map leaves the entry, the pins and the maptrack usage as they were', () => {
    const m = build([{ id: 1 }, { id: 2 }]);
    placeTable(m, 1);
    grant(m, 1, 8, 2, 0x100000); // frame outside RAM -> bad_page
    const v = m.domain(2)!.vcpus[0];
    expect(mapGrantRef(m, v, { hostAddr: 0x2000000n, flags: GNTMAP.host_map, ref: 8, dom: 1 }).status).toBe(GNTST.bad_page);
    expect(Number(entryField(m.domain(1)!, 8, 0, 2))).toBe(GTF.permit_access);
    expect(maptrackUsed(m.domain(2)!)).toBe(0);
  });

  it('v2 tables hold 256 entries per frame', () => {
    const m = build([{ id: 1 }]);
    const s = gnttabState(m.domain(1)!);
    expect(nrGrantEntries(s)).toBe(512);
  });
});

describe('backend accounting', () => {
  const setup = (policy: number) => {
    const m = build([{ id: 1 }, { id: 2, limits: { backend_policy: policy, backend_pages: 100, backend_reserve_pages: 10 } }]);
    placeTable(m, 1);
    for (let r = 8; r < 300; r++) grant(m, 1, r, 2, 0x300 + r);
    return m;
  };

  it('policy 1 stops at the reserve with -ENOMEM', () => {
    const m = setup(BACKEND_POLICY.balloon_reserve);
    const v = m.domain(2)!.vcpus[0];
    const rs = Array.from({ length: 120 }, (_, i) => backendMap(m, v, 1, 8 + i, false));
    expect(rs.filter((r) => r.status === GNTST.okay).length).toBe(90);
    expect(rs[90].ret).toBe(-12);
    expect(backendStats(m.domain(2)!).free_pages).toBe(10n);
  });

  it('policy 2 spends no RAM', () => {
    const m = setup(BACKEND_POLICY.unpopulated);
    const v = m.domain(2)!.vcpus[0];
    for (let i = 0; i < 200; i++) expect(backendMap(m, v, 1, 8 + i, false).status).toBe(GNTST.okay);
    expect(backendState(m.domain(2)!).free).toBe(100);
  });

  it('policy 0 runs out of RAM and the OOM kill tears the backend mappings down', () => {
    const m = setup(BACKEND_POLICY.balloon_unlimited);
    const v = m.domain(2)!.vcpus[0];
    for (let i = 0; i < 101; i++) backendMap(m, v, 1, 8 + i, false);
    const s = backendState(m.domain(2)!);
    expect(s.oom).toBe(1);
    expect(s.minFree).toBe(0);
    expect(s.mappings.size).toBe(0);
  });
});

// ---------------------------------------------------------------- properties

type Act =
  | { k: 'grant'; fe: number; ref: number; ro: boolean }
  | { k: 'map'; fe: number; ref: number; ro: boolean }
  | { k: 'rawmap'; fe: number; ref: number; ro: boolean; gfn: number }
  | { k: 'unmap'; pick: number }
  | { k: 'rawunmap'; pick: number }
  | { k: 'end'; fe: number; ref: number }
  | { k: 'close'; fe: number };

const FRONTENDS = [1, 3];
const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
const actArb: fc.Arbitrary<Act> = fc.oneof(
  w(1, fc.record({ k: fc.constant('grant' as const), fe: fc.constantFrom(...FRONTENDS), ref: fc.integer({ min: 6, max: 40 }), ro: fc.boolean() })),
  w(8, fc.record({ k: fc.constant('map' as const), fe: fc.constantFrom(...FRONTENDS, 99), ref: fc.oneof(w(9, fc.integer({ min: 6, max: 40 })), w(1, fc.integer({ min: 0, max: 520 }))), ro: fc.boolean() })),
  w(2, fc.record({ k: fc.constant('rawmap' as const), fe: fc.constantFrom(...FRONTENDS), ref: fc.integer({ min: 6, max: 40 }), ro: fc.boolean(), gfn: fc.integer({ min: 0x3000, max: 0x3010 }) })),
  w(2, fc.record({ k: fc.constant('unmap' as const), pick: fc.nat() })),
  w(1, fc.record({ k: fc.constant('rawunmap' as const), pick: fc.nat() })),
  w(1, fc.record({ k: fc.constant('end' as const), fe: fc.constantFrom(...FRONTENDS), ref: fc.integer({ min: 6, max: 40 }) })),
  w(1, fc.record({ k: fc.constant('close' as const), fe: fc.constantFrom(...FRONTENDS) })),
);

describe('properties', () => {
  it('after any sequence, once everything is unmapped, pins, GTF bits, maptrack and backend memory are back at rest; limits hold throughout', () => {
    fc.assert(
      fc.property(
        fc.array(actArb, { minLength: 10, maxLength: 200, size: 'max' }),
        fc.constantFrom(BACKEND_POLICY.balloon_reserve, BACKEND_POLICY.unpopulated),
        fc.integer({ min: 0, max: 3 }),
        fc.constantFrom(BACKEND_KIND.guest, BACKEND_KIND.host),
        (acts, policy, maptrackFrames, kind) => {
          const m = build([
            { id: 1 },
            { id: 2, vcpus: 2, limits: { backend_kind: kind, backend_policy: policy, backend_pages: 24, backend_reserve_pages: 8, backend_max_per_frontend: 10, max_maptrack_frames: maptrackFrames, backend_unpopulated_pages: 30 } },
            { id: 3 },
          ]);
          for (const fe of FRONTENDS) {
            placeTable(m, fe);
            for (let r = 8; r <= 40; r++) grant(m, fe, r, 2, 0x300 + r);
          }
          const be = m.domain(2)!;
          const startFree = backendState(be).free;
          const raw: Array<{ handle: number; gfn: number }> = [];
          let vi = 0;
          for (const a of acts) {
            const v = be.vcpus[vi++ % 2];
            switch (a.k) {
              case 'grant': {
                // A hostile frontend may rewrite an entry even while it is mapped.
                grant(m, a.fe, a.ref, 2, 0x300 + a.ref, GTF.permit_access | (a.ro ? GTF.readonly : 0));
                break;
              }
              case 'map': backendMap(m, v, a.fe, a.ref, a.ro); break;
              case 'rawmap': {
                const r = mapGrantRef(m, v, { hostAddr: BigInt(a.gfn) * 4096n, flags: GNTMAP.host_map | (a.ro ? GNTMAP.readonly : 0), ref: a.ref, dom: a.fe });
                if (r.status === GNTST.okay) raw.push({ handle: r.handle!, gfn: a.gfn });
                break;
              }
              case 'unmap': {
                const hs = [...backendState(be).mappings.keys()];
                if (hs.length) expect(backendUnmap(m, v, hs[a.pick % hs.length])).toBe(GNTST.okay);
                break;
              }
              case 'rawunmap': {
                if (raw.length) {
                  const [x] = raw.splice(a.pick % raw.length, 1);
                  expect(unmapGrantRef(m, v, { hostAddr: BigInt(x.gfn) * 4096n, devBusAddr: 0n, handle: x.handle })).toBe(GNTST.okay);
                }
                break;
              }
              case 'end': {
                const d = m.domain(a.fe);
                if (d) {
                  const busy = (statusWord(d, a.ref) & (GTF.reading | GTF.writing)) !== 0;
                  if (!busy) setEntryField(d, a.ref, 0, 2, 0);
                }
                break;
              }
              case 'close':
                // The backend closes a frontend's connection: it unmaps everything of that frontend.
                backendUnmapAll(m, v, a.fe);
                break;
            }
            // Limits hold at every point (plain checks: this loop runs ~10^5 times).
            const bs = backendState(be);
            const fail = (why: string) => { throw new Error(why); };
            if (bs.free < bs.reserve) fail(`free ${bs.free} below reserve ${bs.reserve}`);
            if (maptrackUsed(be) > Math.max(0, maptrackFrames * 256 - 1)) fail('maptrack over its limit');
            for (const fe of FRONTENDS) {
              let n = 0;
              for (const x of bs.mappings.values()) if (x.frontend === fe) n++;
              if (n > 10) fail(`frontend ${fe} holds ${n} mappings`);
              const fd = m.domain(fe)!;
              for (const [ref, act] of gnttabState(fd).active) {
                for (const shift of [0, 8, 16, 24]) if (((act.pin >>> shift) & 0xff) > 128) fail(`pin ${act.pin.toString(16)} overflows`);
                // GTF_writing is kept exactly while a writable pin exists.
                if ((act.pin & GNTPIN.hstw_mask) === 0 && (statusWord(fd, ref) & GTF.writing)) fail(`ref ${ref}: GTF_writing without a write pin`);
              }
            }
          }
          // Unmap everything.
          backendUnmapAll(m, be.vcpus[0]);
          for (const x of raw) expect(unmapGrantRef(m, be.vcpus[0], { hostAddr: BigInt(x.gfn) * 4096n, devBusAddr: 0n, handle: x.handle })).toBe(GNTST.okay);
          expect(maptrackUsed(be)).toBe(0);
          expect(backendState(be).free).toBe(startFree);
          expect(backendState(be).ballooned).toBe(0);
          expect(backendState(be).unpopulatedUsed).toBe(0);
          for (const fe of FRONTENDS) {
            const d = m.domain(fe)!;
            for (const [ref, act] of gnttabState(d).active) {
              expect(act.pin).toBe(0);
              expect(statusWord(d, ref) & (GTF.reading | GTF.writing)).toBe(0);
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('destroying the backend at any point releases every pin it held', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 8, max: 60 }), { maxLength: 80, size: 'max' }), (refs) => {
        const m = build([{ id: 1 }, { id: 2, limits: { backend_policy: BACKEND_POLICY.unpopulated } }]);
        placeTable(m, 1);
        for (let r = 8; r <= 60; r++) grant(m, 1, r, 2, 0x300 + r);
        const v = m.domain(2)!.vcpus[0];
        for (const r of refs) backendMap(m, v, 1, r, r % 2 === 0);
        m.destroyDomain(2);
        const fe = m.domain(1)!;
        for (let r = 8; r <= 60; r++) {
          expect(gnttabState(fe).active.get(r)?.pin ?? 0).toBe(0);
          expect(statusWord(fe, r) & (GTF.reading | GTF.writing)).toBe(0);
        }
      }),
      { numRuns: 100 },
    );
  });
});
