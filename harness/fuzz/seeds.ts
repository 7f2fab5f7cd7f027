// Seed streams. Batch b of shard K/N uses stream index b*N + (K-1), mixed with
// the run's seed by a bijection on 32 bits: shards of one seed never share a
// batch seed, and the same (seed, shard, batch) always gives the same batch.

/** A 32-bit bijection (the murmur3 finaliser). */
export function mix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x85ebca6b) >>> 0;
  x = (x ^ (x >>> 13)) >>> 0;
  x = Math.imul(x, 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

export interface Shard {
  k: number;
  n: number;
}

/** The fast-check seed of a batch (a signed 32-bit integer, as fast-check takes). */
export function batchSeed(seed: number, shard: Shard, batch: number): number {
  const index = (batch * shard.n + (shard.k - 1)) >>> 0;
  return mix32((index + Math.imul(mix32(seed >>> 0), 0x9e3779b9)) >>> 0) | 0;
}
