// A cache of parsed YAML, addressed by the SHA-256 of the file's bytes: the
// plain data a valid case file parses to, and the line of each step. Parsing
// YAML is most of the cost of loading a suite; a file whose bytes are unchanged
// parses to the same data, so a hit skips the parser and goes straight to the
// checks (which always run). Only files that loaded without any problem are
// stored; a hit that shows problems (the vocabulary changed) is parsed again
// so every position is exact. XCONF_CACHE_DIR moves the cache; XCONF_CACHE=0
// turns it off. A cache that cannot be read or written is ignored.

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Changes whenever what is stored (or how YAML is parsed) changes. */
const FORMAT = 'xconf-parse-1/yaml-2.9.1/core-bigint-strict';
/** Entries kept at most (the oldest go first). */
export const MAX_ENTRIES = 20000;

export interface CachedParse {
  data: object;
  /** 1-based line of each step. */
  stepLines: number[];
}

type Stored = { d: unknown; l: number[] };

/** JSON with bigints, non-finite numbers and -0 kept. */
function encode(v: unknown): unknown {
  if (typeof v === 'bigint') return { $b: v.toString() };
  if (typeof v === 'number' && (!Number.isFinite(v) || Object.is(v, -0))) return { $n: String(v) };
  if (Array.isArray(v)) return v.map(encode);
  if (v && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = encode(x);
    // A mapping that looks like an encoded value is wrapped, so decoding is exact.
    const keys = Object.keys(o);
    return keys.length === 1 && (keys[0] === '$b' || keys[0] === '$n' || keys[0] === '$o') ? { $o: o } : o;
  }
  return v;
}

function decode(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(decode);
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1) {
      if (keys[0] === '$b') return BigInt(o.$b as string);
      if (keys[0] === '$n') return Number(o.$n);
      if (keys[0] === '$o') {
        const inner = o.$o as Record<string, unknown>;
        const out: Record<string, unknown> = {};
        for (const [k, x] of Object.entries(inner)) out[k] = decode(x);
        return out;
      }
    }
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(o)) out[k] = decode(x);
    return out;
  }
  return v;
}

export function contentKey(bytes: Uint8Array): string {
  return createHash('sha256').update(FORMAT).update(bytes).digest('base64url');
}

export class ParseCache {
  private entries = new Map<string, Stored>();
  private dirty = false;
  private loaded = false;

  constructor(readonly dir: string) {}

  private load(): void {
    if (this.loaded) return;
    this.loaded = true;
    try {
      const raw = JSON.parse(readFileSync(join(this.dir, 'parse.json'), 'utf8')) as { format?: string; entries?: Array<[string, Stored]> };
      if (raw.format === FORMAT && Array.isArray(raw.entries)) this.entries = new Map(raw.entries);
    } catch {
      // No cache yet, or an unreadable one: start empty.
    }
  }

  get(key: string): CachedParse | undefined {
    this.load();
    const e = this.entries.get(key);
    if (!e) return undefined;
    const data = decode(e.d);
    if (!data || typeof data !== 'object' || Array.isArray(data)) return undefined;
    return { data, stepLines: e.l };
  }

  set(key: string, value: CachedParse): void {
    this.load();
    if (this.entries.has(key)) return;
    this.entries.set(key, { d: encode(value.data), l: value.stepLines });
    this.dirty = true;
  }

  /** Write the cache back if it changed (atomically: a temporary file renamed over the old one). */
  flush(): void {
    if (!this.dirty) return;
    this.dirty = false;
    const all = [...this.entries];
    const kept = all.slice(Math.max(0, all.length - MAX_ENTRIES));
    try {
      mkdirSync(this.dir, { recursive: true });
      const tmp = join(this.dir, `parse.json.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
      writeFileSync(tmp, JSON.stringify({ format: FORMAT, entries: kept }));
      renameSync(tmp, join(this.dir, 'parse.json'));
    } catch {
      // A read-only checkout still runs; it only parses every time.
    }
  }
}

/** The cache for this process: under node_modules/.cache/xconf of the package, unless moved or off. */
export function defaultCache(): ParseCache | undefined {
  const env = process.env;
  if (env.XCONF_CACHE === '0') return undefined;
  const dir = env.XCONF_CACHE_DIR ?? fileURLToPath(new URL('../../node_modules/.cache/xconf/', import.meta.url));
  return new ParseCache(dir);
}
