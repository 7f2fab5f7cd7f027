// Xen's active grant entries as dom0 can see them: debug key 'g' prints every
// domain's grant table usage into the console ring (xen/common/grant_table.c
// gnttab_usage_print: per domain a "grant-table for remote d<N> (v<V>)" header
// with its frame counts, then one row per entry with a non-zero pin: the active
// entry's mapper domain, mfn and pin word, and the shared entry's domid, frame and
// flags / status). The xen driver answers `gnttab.active` from it, reading the
// flags of an entry Xen does not list from the guest's own grant frame.
import { DriverError } from '../../errors.js';
import { areaDefs, type AreaView } from '../../model/areas.js';
import { GNTPIN, GTF, MAPTRACK_PER_PAGE } from '../../model/gnttab.js';
import type { Outcome } from '../../ops/types.js';

const START = "gnttab_usage_print_all [ key 'g' pressed";
const END = 'gnttab_usage_print_all ] done';

export interface ActiveRow {
  mapper: number;
  pin: number;
  /** v1: the shared entry's flags; v2: its status word. */
  status: number;
}

export interface GrantDomainDump {
  version: number;
  frames: number;
  /** Frames of this domain's maptrack table (its handles as a mapper). */
  maptrackFrames: number;
  rows: Map<number, ActiveRow>;
}

/** The last complete 'g' dump in a console ring text, by domain id. */
export function parseGrantDump(ring: string): Map<number, GrantDomainDump> {
  const start = ring.lastIndexOf(START);
  const end = start < 0 ? -1 : ring.indexOf(END, start);
  if (start < 0 || end < 0) {
    throw new DriverError("Xen's console ring holds no complete grant table dump (debug key 'g'): was it overwritten, or is the ring too small?", { code: 'EIO' });
  }
  const out = new Map<number, GrantDomainDump>();
  let cur: GrantDomainDump | undefined;
  for (const line of ring.slice(start, end).split('\n')) {
    const h = /grant-table for remote d(\d+) \(v(\d)\)/.exec(line);
    if (h) {
      cur = { version: Number(h[2]), frames: 0, maptrackFrames: 0, rows: new Map() };
      out.set(Number(h[1]), cur);
      continue;
    }
    const f = /(?:^|\s)(\d+) frames \(\d+ max\), (\d+) maptrack frames/.exec(line);
    if (f && cur) {
      cur.frames = Number(f[1]);
      cur.maptrackFrames = Number(f[2]);
      continue;
    }
    const r = /\[0x([0-9a-f]+)\]\s+(\d+)\s+0x[0-9a-f]+\s+0x([0-9a-f]{8})\s+-?\d+\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s*$/.exec(line);
    if (r && cur) cur.rows.set(parseInt(r[1], 16), { mapper: Number(r[2]), pin: parseInt(r[3], 16), status: parseInt(r[4], 16) });
  }
  return out;
}

/** Reads of the granting domain's memory, where its grant frames are placed. */
export interface GrantMemory {
  areas(dom: number): AreaView;
  read(dom: number, gpa: number, len: number): Promise<Uint8Array>;
}

async function u16At(mem: GrantMemory, dom: number, area: string, ref: number): Promise<number | undefined> {
  const gpa = areaDefs.get(area)!.locate(mem.areas(dom), ref);
  if (gpa === undefined) return undefined;
  const b = await mem.read(dom, gpa, 2);
  return b[0] | (b[1] << 8);
}

/**
 * `gnttab.active` on real Xen: pin and mapper from the dump (an entry Xen does not
 * list has pin 0), the entry's flags and its reading/writing bits from the guest's
 * grant frame (the dump's own column when that frame is not placed in the guest).
 */
export async function activeFromDump(dump: Map<number, GrantDomainDump>, dom: number, ref: number, mem: GrantMemory): Promise<Outcome> {
  const d = dump.get(dom);
  if (!d) throw new DriverError(`Xen's grant table dump has no domain ${dom}`, { code: 'EIO' });
  const row = d.rows.get(ref);
  const pin = row?.pin ?? 0;
  const inTable = ref < d.frames * (d.version === 1 ? 512 : 256);
  const bits = GTF.reading | GTF.writing;
  let flags = 0;
  let status = 0;
  if (inTable) {
    const f = await u16At(mem, dom, d.version === 1 ? 'grant_v1' : 'grant_v2', ref);
    const s = d.version === 1 ? f : await u16At(mem, dom, 'grant_status', ref);
    if ((f === undefined || s === undefined) && !(row && d.version === 1)) {
      throw new DriverError(`domain ${dom}: grant entry ${ref} is in a frame the guest has not placed, which dom0 cannot read`, { code: 'ENOTSUP' });
    }
    flags = f ?? row!.status;
    status = (s ?? row!.status) & bits;
  }
  return {
    out: {
      pin: BigInt(pin), pin_hstw: BigInt(pin & GNTPIN.hstw_mask), pin_hstr: BigInt((pin & GNTPIN.hstr_mask) >> 8),
      mapper: BigInt(pin ? row!.mapper : 0), status_bits: BigInt(status), entry_flags: BigInt(flags),
    },
  };
}

/**
 * `gnttab.maptrack` on real Xen, for what the dump shows: each live mapping holds
 * one maptrack handle of its mapper and one host pin of the entry it maps (an HVM
 * mapper maps host_map only, so no device pins), so `used` is the host pins of
 * every active entry, in every domain's table, whose mapper is `dom`; `frames` and
 * `limit` are its maptrack frames. `orphaned` and `p2m_grants` are not shown.
 */
export function maptrackFromDump(dump: Map<number, GrantDomainDump>, dom: number): Outcome {
  const own = dump.get(dom);
  if (!own) throw new DriverError(`Xen's grant table dump has no domain ${dom}`, { code: 'EIO' });
  let used = 0;
  for (const d of dump.values()) {
    for (const r of d.rows.values()) {
      if (r.mapper === dom) used += (r.pin & GNTPIN.hstw_mask) + ((r.pin & GNTPIN.hstr_mask) >> 8);
    }
  }
  return { out: { used: BigInt(used), frames: BigInt(own.maptrackFrames), limit: BigInt(own.maptrackFrames * MAPTRACK_PER_PAGE) } };
}
