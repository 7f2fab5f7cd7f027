import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ModelDriver } from '../drivers/model/model-driver.js';
import './hypercall-table.js';
import type { XenModel } from './domain.js';
import type { Width } from './memory-layout.js';
import {
  hostSetAddr, registerPhys, registerVirtual, RUNSTATE, RUNSTATE_INFO, runstateChange, setRunstateWriter,
  type RunstateWriter,
} from './runstate.js';
import { checkUpdate, runstateGuard, versionGuard } from './runstate-torn-read.js';
import { GuestMemory } from './guest-memory.js';
import { updateVcpuTime, writeWallclock } from './time.js';
import { VMASST_TYPE } from './vm-assist.js';
import { SHARED_INFO } from './memory-layout.js';

function build(width: Width, flavor: 'xen' | 'kvm' = 'xen'): XenModel {
  return new ModelDriver(flavor).build({
    mode: width,
    xenVersion: { major: 4, minor: 19, extra: '.0' },
    scratch: 0x100000,
    domains: [{ id: 1, vcpus: 2, privileged: false, memoryBytes: 16 << 20, sharedInfo: 0x80000, hypercallPage: 0x81000, limits: {} }],
  });
}

type Placement = 'virtual' | 'phys' | 'kvm';

/** One runstate update (running -> `to` after `delta` ns) checked with `writer`. */
function check(opts: { width: Width; base: number; writer?: RunstateWriter; flag?: boolean; place?: Placement; delta?: bigint; to?: number }) {
  const place = opts.place ?? 'virtual';
  const m = build(opts.width, place === 'kvm' ? 'kvm' : 'xen');
  const d = m.domain(1)!;
  const v = d.vcpus[0];
  if (opts.flag ?? true) d.vmAssist |= 1 << VMASST_TYPE.runstate_update_flag;
  // Start from a non-trivial runstate so every field changes.
  runstateChange(m, v, RUNSTATE.offline);
  m.advance(5n);
  runstateChange(m, v, RUNSTATE.running);
  if (place === 'virtual') registerVirtual(m, v, v, opts.base);
  else if (place === 'phys') expect(registerPhys(m, v, v, BigInt(opts.base), opts.width)).toBe(0);
  else expect(hostSetAddr(m, v, BigInt(opts.base))).toBe(0);
  m.advance(opts.delta ?? 123_456n);
  const L = RUNSTATE_INFO[opts.width];
  setRunstateWriter(opts.writer ?? 'correct');
  try {
    return checkUpdate(d.memory, opts.base, L.size, runstateGuard(L.fields.state_entry_time.offset), () => {
      runstateChange(m, v, opts.to ?? RUNSTATE.runnable);
    });
  } finally {
    setRunstateWriter('correct');
  }
}

afterEach(() => setRunstateWriter('correct'));

describe('runstate torn-read checker: the implementation', () => {
  const bases = [0x3000, 0x3004, 0x3038, 0x3ffc - 40, 0x3ff0, 0x3fe1];
  for (const width of [64, 32] as const) {
    for (const base of bases) {
      it(`byte-flag protocol never lets a reader accept a torn snapshot (${width}-bit, area at 0x${base.toString(16)})`, () => {
        const r = check({ width, base });
        expect(r.acceptedTorn).toBe(0);
        // The check has teeth: a reader that ignores the protocol can be shown a torn state.
        expect(r.visibleTorn).toBeGreaterThan(0);
      });
    }
    it(`KVM's RUNSTATE_ADDR area crossing a page, ${width}-bit`, () => {
      const r = check({ width, base: 0x3ff8, place: 'kvm' });
      expect(r.acceptedTorn).toBe(0);
      expect(r.visibleTorn).toBeGreaterThan(0);
    });
  }
  it('Xen physical area: 8-byte atomic flag writes (64-bit, aligned)', () => {
    const r = check({ width: 64, base: 0x3040, place: 'phys' });
    expect(r.acceptedTorn).toBe(0);
    expect(r.visibleTorn).toBeGreaterThan(0);
  });
  it('observation: a compat physical area (4-aligned) whose state_entry_time straddles a cache line defeats the 8-byte flag write', () => {
    // Xen's physical area uses write_atomic on the 8-byte field, which map_guest_area only
    // requires to be 4-aligned for 32-bit guests; a split store is not atomic on x86.
    expect(check({ width: 32, base: 0x3038, place: 'phys' }).acceptedTorn).toBeGreaterThan(0);
    expect(check({ width: 32, base: 0x303c, place: 'phys' }).acceptedTorn).toBe(0);
  });
  it('a virtual area without VMASST_TYPE_runstate_update_flag is a plain copy: a protocol reader can be fooled', () => {
    expect(check({ width: 64, base: 0x3000, flag: false }).acceptedTorn).toBeGreaterThan(0);
  });
  it('fast-check: the correct writer is safe at any placement, width, delta and target state', () => {
    fc.assert(fc.property(
      fc.constantFrom<Width>(64, 32), fc.integer({ min: 0, max: 120 }), fc.bigInt({ min: 1n, max: 1n << 40n }), fc.integer({ min: 1, max: 3 }),
      (width, off, delta, to) => {
        const base = 0x4000 - 64 + off - (width === 32 ? off % 4 : 0);
        const r = check({ width, base, delta, to });
        return r.acceptedTorn === 0;
      },
    ), { numRuns: 60 });
  });
});

describe('runstate torn-read checker: faulty writers are caught', () => {
  it('no flag at all', () => {
    const r = check({ width: 64, base: 0x3000, writer: 'no_flag' });
    expect(r.acceptedTorn).toBeGreaterThan(0);
    expect(r.example).toBeDefined();
  });
  it('flag cleared before the times are written', () => {
    for (const width of [64, 32] as const) {
      expect(check({ width, base: 0x3000, writer: 'flag_cleared_early' }).acceptedTorn).toBeGreaterThan(0);
    }
  });
  it('whole-word (8-byte) flag write on a compat area whose state_entry_time straddles a cache line', () => {
    // compat state_entry_time at +4: base 0x3038 puts it at 0x303c..0x3043, across the 0x3040 line.
    expect(check({ width: 32, base: 0x3038, writer: 'whole_word_flag' }).acceptedTorn).toBeGreaterThan(0);
    // The same writer on a naturally aligned word is atomic: the fault needs the misplacement.
    expect(check({ width: 64, base: 0x3000, writer: 'whole_word_flag' }).acceptedTorn).toBe(0);
  });
  it('whole-word flag write on an unaligned 64-bit area straddling a cache line', () => {
    expect(check({ width: 64, base: 0x3034, writer: 'whole_word_flag' }).acceptedTorn).toBeGreaterThan(0);
  });
  it('page-crossing area written as one block without the flag', () => {
    for (const width of [64, 32] as const) {
      const r = check({ width, base: 0x3ff0, writer: 'block_no_flag', place: 'kvm' });
      expect(r.acceptedTorn).toBeGreaterThan(0);
    }
  });
});

describe('version protocols', () => {
  it('vcpu_time_info updates are never accepted torn, and the version ends even', () => {
    const m = build(64);
    const v = m.domain(1)!.vcpus[0];
    const base = m.domain(1)!.sharedInfoGpa! + 32;
    for (let i = 0; i < 3; i++) {
      m.advance(1_000_000n);
      const r = checkUpdate(m.domain(1)!.memory, base, 32, versionGuard(0), () => updateVcpuTime(m, v, true));
      expect(r.acceptedTorn).toBe(0);
      expect(r.visibleTorn).toBeGreaterThan(0);
      expect(m.domain(1)!.memory.u32(base)).toBe(2 * (i + 1));
    }
  });
  it('wallclock updates in both layouts', () => {
    for (const width of [64, 32] as const) {
      const m = build(width);
      const d = m.domain(1)!;
      const f = SHARED_INFO[width].fields;
      const lo = Math.min(f.wc_version.offset, f.wc_sec_hi.offset);
      const hi = Math.max(f.wc_version.offset, f.wc_sec_hi.offset) + 4;
      const v0 = d.memory.u32(d.sharedInfoGpa! + f.wc_version.offset);
      const r = checkUpdate(d.memory, d.sharedInfoGpa! + lo, hi - lo, versionGuard(f.wc_version.offset - lo), () => {
        writeWallclock(d, (5n << 32n) + 7n, 999);
      });
      expect(r.acceptedTorn).toBe(0);
      expect(d.memory.u32(d.sharedInfoGpa! + f.wc_sec_hi.offset)).toBe(5);
      expect(v0 % 2).toBe(0);
      expect(d.memory.u32(d.sharedInfoGpa! + f.wc_version.offset)).toBe(v0 + 2);
    }
  });
  it('a version writer that skips the odd step is caught', () => {
    const m = build(64);
    const d = m.domain(1)!;
    const base = d.sharedInfoGpa! + 32;
    m.advance(77n);
    const r = checkUpdate(d.memory, base, 32, versionGuard(0), () => {
      d.memory.write(base + 8, new Uint8Array(24).fill(0x5a));
      d.memory.setU32(base, 2);
    });
    expect(r.acceptedTorn).toBeGreaterThan(0);
  });
});

describe('torn-read analysis against a brute-force enumeration', () => {
  /** Every window (i, k) of one replay, every snapshot of it enumerated: the definition, slowly. */
  function bruteForce(states: Uint8Array[], committed: Uint8Array[], stable: (img: Uint8Array) => boolean, guard: (img: Uint8Array) => number) {
    const key = (a: Uint8Array) => Array.from(a).join(',');
    const ok = new Set(committed.map(key));
    let accepted = 0;
    let visible = 0;
    for (const s of states) if (!ok.has(key(s))) visible++;
    for (let i = 0; i < states.length; i++) {
      if (!stable(states[i])) continue;
      for (let k = i; k < states.length; k++) {
        if (guard(states[k]) !== guard(states[i])) continue;
        const sets = Array.from(states[0], (_, b) => [...new Set(states.slice(i, k + 1).map((s) => s[b]))]);
        let torn = false;
        const walk = (b: number, img: number[]) => {
          if (torn) return;
          if (b === sets.length) { if (!ok.has(img.join(','))) torn = true; return; }
          for (const v of sets[b]) walk(b + 1, [...img, v]);
        };
        walk(0, []);
        if (torn) accepted++;
      }
    }
    return { accepted, visible };
  }

  /** The replay checkUpdate makes (ascending byte order): byte stores one by one, atomic stores whole. */
  function replayAsc(before: Uint8Array, base: number, stores: Array<{ gpa: number; bytes: Uint8Array }>, desc: boolean) {
    const img = before.slice();
    const out = [img.slice()];
    for (const s of stores) {
      const atomic = [1, 2, 4, 8].includes(s.bytes.length) && Math.floor(s.gpa / 64) === Math.floor((s.gpa + s.bytes.length - 1) / 64);
      const idx = atomic ? [[...s.bytes.keys()]] : (desc ? [...s.bytes.keys()].reverse() : [...s.bytes.keys()]).map((j) => [j]);
      for (const group of idx) {
        for (const j of group) { const o = s.gpa + j - base; if (o >= 0 && o < img.length) img[o] = s.bytes[j]; }
        out.push(img.slice());
      }
    }
    return out;
  }

  it('fast-check: accepted and visible torn counts equal the enumeration, for any stores over a small area', () => {
    const base = 0x1000 - 3; // the area crosses a cache line and a page
    const size = 6;
    fc.assert(fc.property(
      fc.uint8Array({ minLength: size, maxLength: size }),
      fc.array(fc.record({ off: fc.integer({ min: -2, max: size - 1 }), bytes: fc.uint8Array({ minLength: 1, maxLength: 4 }) }), { maxLength: 4 }),
      (init, writes) => {
        const mem = new GuestMemory(0x4000);
        mem.write(base, init);
        // Guard: byte 0 of the area, stable when even (a version-like protocol).
        const guard = { read: (img: Uint8Array) => BigInt(img[0]), stable: (v: bigint) => (v & 1n) === 0n };
        const stores = writes.map((w) => ({ gpa: base + w.off, bytes: w.bytes }));
        const r = checkUpdate(mem, base, size, guard, () => { for (const s of stores) mem.write(s.gpa, s.bytes); });
        const after = mem.read(base, size);
        const committed = Array.from(init).join() === Array.from(after).join() ? [init] : [init, after];
        const relevant = stores.filter((s) => s.gpa < base + size && s.gpa + s.bytes.length > base);
        let accepted = 0;
        let visible = 0;
        for (const desc of [false, true]) {
          const b = bruteForce(replayAsc(init, base, relevant, desc), committed, (img) => (img[0] & 1) === 0, (img) => img[0]);
          accepted += b.accepted;
          visible += b.visible;
        }
        expect(r.acceptedTorn).toBe(accepted);
        expect(r.visibleTorn).toBe(visible);
        expect(r.example !== undefined).toBe(accepted > 0);
      },
    ), { numRuns: 300 });
  });
});
