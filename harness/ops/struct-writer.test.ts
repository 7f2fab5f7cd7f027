import { describe, expect, it } from 'vitest';
import { StructWriter, reader } from './types.js';

// The reference encoding: what StructWriter did before its number fast paths.
function ref(width: 8 | 16 | 32 | 64, v: bigint | number): Uint8Array {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  const x = BigInt.asUintN(width, BigInt(v));
  dv.setBigUint64(0, x, true);
  return b.subarray(0, width / 8);
}

const values: Array<bigint | number> = [
  0, 1, -1, 0x7f, 0x80, 0xff, 0x100, -0x80, 0xffff, 0x10000, -0x8000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff,
  0x1_0000_0000, -0x8000_0000, -0x1_0000_0001, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 60, -(2 ** 60), 2 ** 70,
  0n, 1n, -1n, 0xffn, 0xffff_ffffn, 0x1_0000_0000n, 0xffff_ffff_ffff_ffffn, 0x1_0000_0000_0000_0000n, -(2n ** 63n), 12345678901234567890n,
];

describe('StructWriter', () => {
  it('encodes every width exactly as BigInt.asUintN does, for numbers and bigints', () => {
    for (const v of values) {
      expect(new StructWriter(1).u8(0, v).bytes, `u8 ${v}`).toEqual(ref(8, v));
      expect(new StructWriter(2).u16(0, v).bytes, `u16 ${v}`).toEqual(ref(16, v));
      expect(new StructWriter(4).u32(0, v).bytes, `u32 ${v}`).toEqual(ref(32, v));
      expect(new StructWriter(8).u64(0, v).bytes, `u64 ${v}`).toEqual(ref(64, v));
    }
  });

  it('still rejects a non-integer number', () => {
    for (const m of ['u8', 'u16', 'u32', 'u64'] as const) expect(() => new StructWriter(8)[m](0, 1.5)).toThrow(RangeError);
  });

  it('reader reads back what was written', () => {
    const w = new StructWriter(24).u8(0, 0xfe).u16(2, -2).u32(4, 0xdead_beef).u64(8, 2n ** 64n - 1n).u32(16, -5);
    const r = reader(w.bytes.subarray(0));
    expect([r.u8(0), r.u16(2), r.i16(2), r.u32(4), r.u64(8), r.i32(16), r.hex(4, 2)])
      .toEqual([0xfen, 0xfffen, -2n, 0xdead_beefn, 2n ** 64n - 1n, -5n, 'ef be']);
  });
});

describe('GuestStruct field access', () => {
  it('reads and writes as a little-endian DataView would, and throws past the end', async () => {
    const { GuestStruct } = await import('../model/hypercall.js');
    const bytes = new Uint8Array(16);
    const g = new GuestStruct({ copyTo: () => true } as never, 0, bytes);
    const dv = new DataView(bytes.buffer);
    g.setU8(0, 0x1fe); g.setU16(2, -2); g.setI16(4, -300); g.setU32(8, -7); g.setU64(8, 0xfedc_ba98_7654_3210n);
    expect([g.u8(0), g.u16(2), g.i16(4), g.u32(8), g.i32(12), g.u64(8)])
      .toEqual([dv.getUint8(0), dv.getUint16(2, true), dv.getInt16(4, true), dv.getUint32(8, true), dv.getInt32(12, true), dv.getBigUint64(8, true)]);
    expect(g.u64(8)).toBe(0xfedc_ba98_7654_3210n);
    g.setU64(0, 5);
    expect(g.u64(0)).toBe(5n);
    expect(() => g.u32(14)).toThrow(RangeError);
    expect(() => g.setU64(12, 1n)).toThrow(RangeError);
    expect(bytes[12]).toBe(0x98);
  });
});
