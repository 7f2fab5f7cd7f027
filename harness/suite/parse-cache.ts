// A cache of parsed YAML, addressed by the SHA-256 of the file's bytes: the
// plain data a valid case file parses to, and the line of each step. Parsing
// YAML is most of the cost of loading a suite; a file whose bytes are unchanged
// parses to the same data, so a hit skips the parser and goes straight to the
// checks (which always run). Only files that loaded without any problem are
// stored; a hit that shows problems (the vocabulary changed) is parsed again
// so every position is exact. XCONF_CACHE_DIR moves the cache; XCONF_CACHE=0
// turns it off. A cache that cannot be read or written is ignored.

import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { packagePath } from '../paths.js';
import { makeDirs } from '../make-dirs.js';

/** Changes whenever what is stored (or how YAML is parsed) changes. */
const FORMAT = 'xconf-parse-1/yaml-2.9.1/core-bigint-strict';
export interface CachedParse {
  data: object;
  /** 1-based line of each step. */
  stepLines: number[];
}

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
  constructor(readonly dir: string) {}

  /** One small file per entry (no index to read or rewrite): <dir>/<first two characters>/<key>.json. */
  private path(key: string): string {
    return join(this.dir, key.slice(0, 2), `${key}.json`);
  }

  get(key: string): CachedParse | undefined {
    let raw: { f?: string; d?: unknown; l?: number[] };
    try {
      raw = JSON.parse(readFileSync(this.path(key), 'utf8'));
    } catch {
      return undefined; // not cached, or unreadable: parse
    }
    if (raw.f !== FORMAT || !Array.isArray(raw.l)) return undefined;
    const data = decode(raw.d);
    if (!data || typeof data !== 'object' || Array.isArray(data)) return undefined;
    return { data, stepLines: raw.l };
  }

  /** Store an entry (atomically: a temporary file renamed into place). A cache that cannot be written is ignored. */
  set(key: string, value: CachedParse): void {
    const file = this.path(key);
    try {
      makeDirs(dirname(file));
      const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
      writeFileSync(tmp, JSON.stringify({ f: FORMAT, d: encode(value.data), l: value.stepLines }));
      renameSync(tmp, file);
    } catch {
      // A read-only checkout still runs; it only parses every time.
    }
  }
}

/** The cache for this process: under node_modules/.cache/xconf of the package, unless moved or off. */
export function defaultCache(): ParseCache | undefined {
  const env = process.env;
  if (env.XCONF_CACHE === '0') return undefined;
  const dir = env.XCONF_CACHE_DIR ?? packagePath('node_modules', '.cache', 'xconf');
  return new ParseCache(dir);
}
