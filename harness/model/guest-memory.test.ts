import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GuestMemory, PAGE_SIZE, type StoreRecord } from './guest-memory.js';

/** The plain definition the fast paths must agree with: one byte at a time, BigInt arithmetic. */
function refBytes(size: number, value: bigint | number): number[] {
  let v = BigInt.asUintN(size * 8, BigInt(value));
  return Array.from({ length: size }, () => { const b = Number(v & 0xffn); v >>= 8n; return b; });
}

const SIZE = 4 * PAGE_SIZE;
const gpaFor = (len: number) => fc.integer({ min: 0, max: SIZE - len });
const scalarSize = fc.constantFrom<1 | 2 | 4 | 8>(1, 2, 4, 8);

describe('guest memory fast paths', () => {
  it('property: writeU stores the little-endian bytes of any value, number or bigint', () => {
    fc.assert(fc.property(scalarSize, fc.oneof(fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), fc.bigInt({ min: -(1n << 70n), max: 1n << 70n })), fc.nat(SIZE - 8), (size, v, gpa) => {
      const m = new GuestMemory(SIZE);
      m.writeU(gpa, size, v);
      expect(Array.from(m.read(gpa, size))).toEqual(refBytes(size, v));
      expect(m.readU(gpa, size)).toBe(BigInt.asUintN(size * 8, BigInt(v)));
      if (size <= 4) expect(size === 1 ? m.u8(gpa) : size === 2 ? m.u16(gpa) : m.u32(gpa)).toBe(Number(BigInt.asUintN(size * 8, BigInt(v))));
    }));
  });

  it('property: reads and writes across page boundaries match a flat byte array, and observers see every store', () => {
    const op = fc.record({ len: fc.integer({ min: 1, max: 2 * PAGE_SIZE }), seed: fc.nat(255) }).chain(({ len, seed }) => fc.record({ gpa: gpaFor(len), len: fc.constant(len), seed: fc.constant(seed) }));
    fc.assert(fc.property(fc.array(op, { maxLength: 12 }), (ops) => {
      const m = new GuestMemory(SIZE);
      const flat = new Uint8Array(SIZE);
      const seen: StoreRecord[] = [];
      m.observe((s) => seen.push(s));
      for (const { gpa, len, seed } of ops) {
        const bytes = Uint8Array.from({ length: len }, (_, i) => (seed + i * 7) & 0xff);
        m.write(gpa, bytes);
        flat.set(bytes, gpa);
        const probe = Math.max(0, gpa - 3);
        expect(m.read(probe, Math.min(len + 6, SIZE - probe))).toEqual(flat.slice(probe, probe + Math.min(len + 6, SIZE - probe)));
      }
      expect(m.read(0, SIZE)).toEqual(flat);
      expect(seen.map((s) => [s.gpa, s.bytes.length])).toEqual(ops.map((o) => [o.gpa, o.len]));
    }), { numRuns: 40 });
  });

  it('property: a subclass whose read and write go elsewhere (a VM\'s memory) sees every access, small ones too', () => {
    class Elsewhere extends GuestMemory {
      readonly bytes = new Uint8Array(SIZE);
      override read(gpa: number, len: number): Uint8Array {
        return this.bytes.slice(gpa, gpa + len);
      }
      override write(gpa: number, b: Uint8Array): void {
        this.bytes.set(b, gpa);
      }
    }
    fc.assert(fc.property(gpaFor(4), fc.constantFrom(1, 2, 4) as fc.Arbitrary<1 | 2 | 4>, fc.integer({ min: 0, max: 0xffffffff }), (gpa, size, value) => {
      const m = new Elsewhere(SIZE);
      m.writeU(gpa, size, value % 2 ** (size * 8));
      expect(Array.from(m.bytes.subarray(gpa, gpa + size))).toEqual(refBytes(size, value % 2 ** (size * 8)));
      m.bytes.set([0x78, 0x56, 0x34, 0x12], gpa);
      expect(m.u32(gpa)).toBe(0x12345678);
      expect(m.readU(gpa, size)).toBe(BigInt([0x78, 0x5678, 0, 0x12345678][size - 1]));
    }));
  });

  it('a read returns a copy, never a view of guest memory', () => {
    const m = new GuestMemory(SIZE);
    m.writeU(0x10, 4, 0x11223344);
    const r = m.read(0x10, 4);
    r[0] = 0;
    expect(m.u32(0x10)).toBe(0x11223344);
  });

  it('a frame taken out of the physmap reads all-ones and drops writes, around and across it, until a frame is put back', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: SIZE - 1 }), fc.integer({ min: 1, max: 3 * PAGE_SIZE }), (gpa, len0) => {
      const len = Math.min(len0, SIZE - gpa);
      const m = new GuestMemory(SIZE);
      m.fill(0, SIZE, 0x5a);
      m.unmapFrame(1);
      const inHole = (a: number) => a >= PAGE_SIZE && a < 2 * PAGE_SIZE;
      m.write(gpa, new Uint8Array(len).fill(0x11));
      const r = m.read(0, SIZE);
      for (let a = 0; a < SIZE; a++) {
        const want = inHole(a) ? 0xff : a >= gpa && a < gpa + len ? 0x11 : 0x5a;
        if (r[a] !== want) return false;
      }
      m.mapFrame(1);
      expect(m.isHole(1)).toBe(false);
      return m.read(PAGE_SIZE, PAGE_SIZE).every((b) => b === 0);
    }), { numRuns: 60 });
  });
});
