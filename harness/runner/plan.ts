// Which cases run: the --filter (see filter.ts), deterministic sharding, and
// matrix expansion into variants. Selecting nothing is a usage error.

import { compileFilter } from './filter.js';
import type { LoadedCase } from '../suite/loader.js';
import type { VarValue } from '../suite/expr.js';
import { UsageError } from '../errors.js';

export interface Variant {
  name: string;
  bindings: Array<[string, VarValue]>;
}

export interface PlannedCase {
  case: LoadedCase;
  variant: Variant;
  name: string;
}

export function parseShard(s: string): { k: number; n: number } {
  const m = /^(\d+)\/(\d+)$/.exec(s);
  if (!m) throw new UsageError(`--shard takes K/N, e.g. 2/4 (got '${s}')`);
  const k = Number(m[1]);
  const n = Number(m[2]);
  if (n < 1 || k < 1 || k > n) throw new UsageError(`--shard ${s}: need 1 <= K <= N`);
  return { k, n };
}

export function variants(c: LoadedCase): Variant[] {
  let out: Variant[] = [{ name: '', bindings: [] }];
  for (const [key, values] of c.matrix) {
    const next: Variant[] = [];
    for (const v of out) {
      for (const val of values) {
        const text = typeof val === 'bigint' ? val.toString() : String(val);
        next.push({ name: v.name ? `${v.name},${key}=${text}` : `${key}=${text}`, bindings: [...v.bindings, [key, val]] });
      }
    }
    out = next;
  }
  return out;
}

export function plan(cases: LoadedCase[], opts: { filter?: string; shard?: { k: number; n: number } }): PlannedCase[] {
  const sorted = [...cases].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const match = opts.filter === undefined ? undefined : compileFilter(opts.filter);
  const all: PlannedCase[] = [];
  for (const c of sorted) {
    const whole = !match || match(c.id);
    for (const v of variants(c)) {
      const name = v.name ? `${c.id}[${v.name}]` : c.id;
      if (!whole && !match(name)) continue;
      all.push({ case: c, variant: v, name });
    }
  }
  if (!opts.shard) return all;
  const { k, n } = opts.shard;
  return all.filter((_, i) => i % n === k - 1);
}

/**
 * plan(), but selecting nothing (no case files under the paths, or a filter
 * matching no id) is a UsageError naming the paths and the filter. An empty
 * shard of a non-empty selection is not an error.
 */
export function planOrThrow(cases: LoadedCase[], opts: { paths: string[]; filter?: string; shard?: { k: number; n: number } }): PlannedCase[] {
  const where = opts.paths.join(' ');
  if (cases.length === 0) throw new UsageError(`no cases matched: no .yaml case files under ${where}`);
  const selected = plan(cases, { filter: opts.filter });
  if (selected.length === 0) {
    throw new UsageError(`no cases matched --filter '${opts.filter}' among ${cases.length} cases under ${where} (see \`xconf run --help\` for the filter syntax)`);
  }
  if (!opts.shard) return selected;
  const { k, n } = opts.shard;
  return selected.filter((_, i) => i % n === k - 1);
}
