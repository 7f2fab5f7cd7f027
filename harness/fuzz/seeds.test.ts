import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { batchSeed, mix32 } from './seeds.js';

describe('fuzz seed streams', () => {
  it('shards of one run never share a batch seed', () => {
    fc.assert(fc.property(
      fc.nat(0xffffffff), fc.integer({ min: 1, max: 64 }), fc.nat(100_000), fc.nat(100_000), fc.nat(63), fc.nat(63),
      (seed, n, b1, b2, k1, k2) => {
        const a = { k: (k1 % n) + 1, n };
        const b = { k: (k2 % n) + 1, n };
        fc.pre(a.k !== b.k || b1 !== b2);
        expect(batchSeed(seed, a, b1)).not.toBe(batchSeed(seed, b, b2));
      },
    ), { numRuns: 2000 });
  });
  it('is deterministic, and different run seeds give different streams', () => {
    expect(batchSeed(1, { k: 1, n: 1 }, 0)).toBe(batchSeed(1, { k: 1, n: 1 }, 0));
    expect(batchSeed(1, { k: 1, n: 1 }, 0)).not.toBe(batchSeed(2, { k: 1, n: 1 }, 0));
  });
  it('mix32 is injective on a sample', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 100_000; i++) seen.add(mix32(i));
    expect(seen.size).toBe(100_000);
  });
});
