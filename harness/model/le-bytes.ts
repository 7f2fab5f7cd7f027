// Little-endian field access straight on a byte array, without a DataView per
// struct (allocating one per argument struct showed up in fuzz profiles).
// Out-of-range offsets throw the RangeError a DataView would.

export function check(b: Uint8Array, o: number, n: number): void {
  if (!(o >= 0 && o + n <= b.length) || !Number.isInteger(o)) throw new RangeError('Offset is outside the bounds of the DataView');
}

export function getU8(b: Uint8Array, o: number): number { check(b, o, 1); return b[o]!; }
export function getU16(b: Uint8Array, o: number): number { check(b, o, 2); return b[o]! | (b[o + 1]! << 8); }
export function getI16(b: Uint8Array, o: number): number { return (getU16(b, o) << 16) >> 16; }
export function getI32(b: Uint8Array, o: number): number {
  check(b, o, 4);
  return b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24);
}
export function getU32(b: Uint8Array, o: number): number { return getI32(b, o) >>> 0; }
export function getU64(b: Uint8Array, o: number): bigint {
  check(b, o, 8);
  const lo = getU32(b, o);
  const hi = getU32(b, o + 4);
  return hi < 0x20_0000 ? BigInt(hi * 0x1_0000_0000 + lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

/** Stores take a value already reduced to the field's width (unsigned). */
export function setU8(b: Uint8Array, o: number, v: number): void { check(b, o, 1); b[o] = v; }
export function setU16(b: Uint8Array, o: number, v: number): void { check(b, o, 2); b[o] = v; b[o + 1] = v >>> 8; }
export function setU32(b: Uint8Array, o: number, v: number): void {
  check(b, o, 4);
  b[o] = v; b[o + 1] = v >>> 8; b[o + 2] = v >>> 16; b[o + 3] = v >>> 24;
}
/** A u64 from its two u32 halves (each already reduced to 32 bits). */
export function setU64Parts(b: Uint8Array, o: number, lo: number, hi: number): void {
  check(b, o, 8);
  setU32(b, o, lo);
  setU32(b, o + 4, hi);
}
export function setU64(b: Uint8Array, o: number, v: bigint): void {
  const x = BigInt.asUintN(64, v);
  setU64Parts(b, o, Number(x & 0xffff_ffffn), Number(x >> 32n));
}
