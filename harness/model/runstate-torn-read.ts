// Torn-read checker for seqlock-like guest areas: the runstate area with its
// XEN_RUNSTATE_UPDATE flag, and the odd/even `version` of vcpu_time_info and
// the wallclock.
//
// The writer's stores are recorded (GuestMemory.observe) and replayed one by
// one. A store is atomic only when x86 makes it so: 1, 2, 4 or 8 bytes not
// crossing a 64-byte cache line (Intel SDM vol. 3 8.1.1); any other store is
// replayed a byte at a time, both in ascending and in descending order, since
// a copy may tear either way. That yields every memory state a concurrent
// reader can observe.
//
// A protocol reader (Linux xen_get_runstate_snapshot_cpu_delta, or the pvclock
// version loop) reads the guard at state i, copies the struct while the writer
// moves on (each byte may come from any state i..k), and re-reads the guard at
// state k; it accepts when both guard reads agree and the guard says "stable".
// The check asserts every snapshot such a reader can accept equals a committed
// image (before or after the update). A naive reader copies the struct once,
// at any single state: `visible` counts the states that are not committed
// images, showing the protocol is what protects the reader.

import type { GuestMemory, StoreRecord } from './guest-memory.js';

export interface Guard {
  /** Guard value as the reader reads it (one consistent read) from an image of the area. */
  read(image: Uint8Array): bigint;
  /** Whether a reader that saw this guard value may use the copy. */
  stable(value: bigint): boolean;
  /** The bytes [lo, hi) read() depends on, if it depends on no others. */
  span?: readonly [number, number];
}

export interface TornReport {
  /** Distinct intermediate images replayed (including before and after). */
  states: number;
  /** Reader windows (i, k) in which the protocol reader accepts something not committed. */
  acceptedTorn: number;
  /** Single states that are not committed images (what a reader ignoring the protocol can see). */
  visibleTorn: number;
  /** An example accepted torn snapshot, if any. */
  example?: Uint8Array;
}

const CACHE_LINE = 64;

function atomicStore(s: StoreRecord): boolean {
  const n = s.bytes.length;
  if (n !== 1 && n !== 2 && n !== 4 && n !== 8) return false;
  return Math.floor(s.gpa / CACHE_LINE) === Math.floor((s.gpa + n - 1) / CACHE_LINE);
}

/**
 * The images of [base, base+size) a reader can observe, in order, for one ordering of
 * non-atomic stores: the first image, then per step the bytes that step changed (offset,
 * new value; a store of the same value changes nothing).
 */
interface Replay {
  first: Uint8Array;
  steps: Array<Array<[number, number]>>;
}

function replay(before: Uint8Array, base: number, stores: StoreRecord[], descending: boolean): Replay {
  const img = before.slice();
  const steps: Replay['steps'] = [];
  const put = (gpa: number, b: number, into: Array<[number, number]>) => {
    const o = gpa - base;
    if (o >= 0 && o < img.length && img[o] !== b) {
      img[o] = b;
      into.push([o, b]);
    }
  };
  for (const s of stores) {
    if (atomicStore(s)) {
      const step: Array<[number, number]> = [];
      s.bytes.forEach((b, j) => put(s.gpa + j, b, step));
      steps.push(step);
      continue;
    }
    const n = s.bytes.length;
    for (let t = 0; t < n; t++) {
      const j = descending ? n - 1 - t : t;
      const step: Array<[number, number]> = [];
      put(s.gpa + j, s.bytes[j], step);
      steps.push(step);
    }
  }
  return { first: before.slice(), steps };
}

/** Two memory images are byte for byte the same. */
export function same(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The image of each byte's first value (Uint8Array.from with a mapper is far slower). */
function firstOfEach(sets: number[][]): Uint8Array {
  const img = new Uint8Array(sets.length);
  for (let b = 0; b < sets.length; b++) img[b] = sets[b][0];
  return img;
}

function analyse(r: Replay, committed: Uint8Array[], guard: Guard, report: TornReport): void {
  const isCommitted = (img: Uint8Array) => committed.some((c) => same(c, img));
  const n = r.steps.length + 1;
  const size = r.first.length;
  const changed = [[] as Array<[number, number]>, ...r.steps];
  // One walk over the states: each state's guard value (re-read only when a step
  // touched the guard's bytes) and whether it is a committed image (bytes that differ
  // from each committed image, kept up to date per step).
  const guards = new Array<bigint>(n);
  const cur = r.first.slice();
  const differ = committed.map((c) => { let d = 0; for (let b = 0; b < size; b++) if (c[b] !== cur[b]) d++; return d; });
  const [gLo, gHi] = guard.span ?? [0, size];
  for (let k = 0; k < n; k++) {
    let touched = k === 0;
    for (const [b, v] of changed[k]) {
      committed.forEach((c, j) => { differ[j] += (c[b] !== v ? 1 : 0) - (c[b] !== cur[b] ? 1 : 0); });
      cur[b] = v;
      if (b >= gLo && b < gHi) touched = true;
    }
    guards[k] = touched ? guard.read(cur) : guards[k - 1];
    if (!differ.includes(0)) report.visibleTorn++;
  }
  // A window [i, k] is accepted only if the guard reads the same at both ends, so
  // no k after the last state with state i's guard value matters.
  const lastWith = new Map<bigint, number>();
  guards.forEach((g, k) => lastWith.set(g, k));
  // Per-byte value sets over the window [i, k]: a 256-entry membership table
  // per byte (one buffer, cleared after each i) plus the values in order, and
  // the bytes that have more than one value (only they multiply the count).
  const seen = new Uint8Array(size * 256);
  const at = r.first.slice(); // state i, walked forward with i
  for (let i = 0; i < n; i++) {
    if (i > 0) for (const [b, v] of changed[i]) at[b] = v;
    const g = guards[i];
    if (!guard.stable(g)) continue;
    const last = lastWith.get(g)!;
    const sets: number[][] = [];
    const multi: number[] = [];
    for (let b = 0; b < size; b++) {
      seen[b * 256 + at[b]] = 1;
      sets.push([at[b]]);
    }
    for (let k = i; k <= last; k++) {
      if (k > i) {
        for (const [b, v] of changed[k]) {
          const idx = b * 256 + v;
          if (!seen[idx]) {
            seen[idx] = 1;
            sets[b].push(v);
            if (sets[b].length === 2) multi.push(b);
          }
        }
      }
      if (guards[k] !== g) continue;
      // The snapshots the reader can assemble: the product of the per-byte sets.
      let count = 1;
      for (const b of multi) {
        count *= sets[b].length;
        if (count > committed.length) break;
      }
      let torn: Uint8Array | undefined;
      let found = false;
      if (count > committed.length) {
        // More combinations than committed images: by counting, one is not committed.
        found = true;
        // Build the example only once: the count already proves a torn snapshot exists.
        if (report.example === undefined) {
          torn = firstOfEach(sets);
          for (let b = 0; b < size && isCommitted(torn); b++) {
            for (const alt of sets[b]) {
              const prev = torn[b];
              torn[b] = alt;
              if (!isCommitted(torn)) break;
              torn[b] = prev;
            }
          }
        }
      } else {
        // Enumerate the (at most committed.length) combinations in order, the
        // last byte varying fastest, until one is not committed.
        const pick = new Array<number>(size).fill(0);
        const img = firstOfEach(sets);
        for (;;) {
          if (!isCommitted(img)) { torn = img; break; }
          let b = size - 1;
          while (b >= 0 && pick[b] === sets[b].length - 1) { pick[b] = 0; img[b] = sets[b][0]; b--; }
          if (b < 0) break;
          pick[b]++;
          img[b] = sets[b][pick[b]];
        }
        found = torn !== undefined;
      }
      if (found) {
        report.acceptedTorn++;
        report.example ??= torn;
      }
    }
    for (let b = 0; b < size; b++) for (const v of sets[b]) seen[b * 256 + v] = 0;
  }
}

/**
 * Run `update` while recording its stores to `mem`, then check the area
 * [base, base+size) against `guard`. Committed images are the area before and
 * after the update.
 */
export function checkUpdate(mem: GuestMemory, base: number, size: number, guard: Guard, update: () => void): TornReport {
  const before = mem.read(base, size);
  const stores: StoreRecord[] = [];
  const stop = mem.observe((s) => stores.push(s));
  try {
    update();
  } finally {
    stop();
  }
  const after = mem.read(base, size);
  const report: TornReport = { states: 0, acceptedTorn: 0, visibleTorn: 0 };
  const relevant = stores.filter((s) => s.gpa < base + size && s.gpa + s.bytes.length > base);
  const asc = replay(before, base, relevant, false);
  const desc = replay(before, base, relevant, true);
  report.states = asc.steps.length + 1 + desc.steps.length + 1;
  const committed = same(before, after) ? [before] : [before, after];
  const r1: TornReport = { states: 0, acceptedTorn: 0, visibleTorn: 0 };
  const r2: TornReport = { states: 0, acceptedTorn: 0, visibleTorn: 0 };
  analyse(asc, committed, guard, r1);
  analyse(desc, committed, guard, r2);
  report.acceptedTorn = r1.acceptedTorn + r2.acceptedTorn;
  report.visibleTorn = r1.visibleTorn + r2.visibleTorn;
  report.example = r1.example ?? r2.example;
  return report;
}

function u64At(img: Uint8Array, off: number): bigint {
  const lo = img[off] | (img[off + 1] << 8) | (img[off + 2] << 16) | (img[off + 3] << 24);
  const hi = img[off + 4] | (img[off + 5] << 8) | (img[off + 6] << 16) | (img[off + 7] << 24);
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** Linux xen_get_runstate_snapshot_cpu_delta: state_entry_time unchanged and XEN_RUNSTATE_UPDATE clear. */
export function runstateGuard(entryOffset: number): Guard {
  return {
    read: (img) => u64At(img, entryOffset),
    stable: (v) => (v & (1n << 63n)) === 0n,
    span: [entryOffset, entryOffset + 8],
  };
}

/** pvclock / wallclock readers: the u32 version unchanged and even. */
export function versionGuard(versionOffset: number): Guard {
  return {
    read: (img) => BigInt(img[versionOffset] | (img[versionOffset + 1] << 8) | (img[versionOffset + 2] << 16)) | (BigInt(img[versionOffset + 3]) << 24n),
    stable: (v) => (v & 1n) === 0n,
    span: [versionOffset, versionOffset + 4],
  };
}
