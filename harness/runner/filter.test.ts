import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compileFilter, hasWildcard } from './filter.js';
import { plan, planOrThrow } from './plan.js';
import { loadPaths } from '../suite/loader.js';
import { UsageError } from '../errors.js';

const idChar = fc.constantFrom(...'abcxyz019-_/.=,[]'.split(''));
const id = fc.array(idChar, { minLength: 1, maxLength: 20 }).map((a) => a.join(''));
const escapeGlob = (s: string) => s.replace(/[\\*?{},]/g, '\\$&');

describe('--filter', () => {
  it('plain text is a substring match, brackets included', () => {
    const m = compileFilter('hypercall/xen-version-version[mode=32]');
    expect(m('hypercall/xen-version-version[mode=32]')).toBe(true);
    expect(m('hypercall/xen-version-version[mode=64]')).toBe(false);
    expect(compileFilter('xen-version')('hypercall/xen-version-extraversion')).toBe(true);
    expect(compileFilter('xen-version')('hypercall/version-pagesize')).toBe(false);
  });

  it('* crosses /, and a wildcard pattern is anchored', () => {
    expect(compileFilter('*xen-version*')('hypercall/xen-version-version')).toBe(true);
    expect(compileFilter('hypercall/*')('hypercall/a/b')).toBe(true);
    expect(compileFilter('version-*')('hypercall/version-x')).toBe(false);
    expect(compileFilter('?ypercall/*')('hypercall/a')).toBe(true);
  });

  it('alternatives, nesting and escapes', () => {
    const m = compileFilter('{evtchn/{a,b}*,sched/c}');
    expect(['evtchn/a1', 'evtchn/b', 'sched/c'].map(m)).toEqual([true, true, true]);
    expect(['evtchn/c', 'sched/cc', 'x/evtchn/a'].map(m)).toEqual([false, false, false]);
    expect(compileFilter('a\\*')('a*')).toBe(true);
    expect(compileFilter('a\\*')('ab')).toBe(false);
    expect(compileFilter('\\[mode=32\\]')('x[mode=32]')).toBe(true);
  });

  it('bad patterns are usage errors, not crashes', () => {
    for (const p of ['{a,b', 'a}', 'x\\', '  ']) expect(() => compileFilter(p)).toThrow(UsageError);
  });

  it('property: an escaped id as a glob matches exactly that id; as text it matches every id containing it', () => {
    fc.assert(fc.property(id, id, (a, b) => {
      expect(compileFilter(escapeGlob(a) + '*')(a)).toBe(true);
      expect(compileFilter(`{${escapeGlob(a)},${escapeGlob(b)}}`)(b)).toBe(true);
      expect(compileFilter(`{${escapeGlob(a)}}`)(b)).toBe(a === b);
      if (!hasWildcard(a) && !a.includes('\\') && a.trim()) expect(compileFilter(a)(b)).toBe(b.includes(a));
    }));
  });

  it('compiles once: a 69-alternative glob over the whole suite stays fast', () => {
    const cases = loadPaths(['suites']).cases;
    const pick = cases.filter((_, i) => i % 3 === 0).slice(0, 69).map((c) => c.id);
    expect(pick).toHaveLength(69);
    const t0 = performance.now();
    const got = plan(cases, { filter: `{${pick.join(',')}}` });
    const ms = performance.now() - t0;
    expect(new Set(got.map((p) => p.case.id))).toEqual(new Set(pick));
    expect(ms).toBeLessThan(200);
  });

  it('selects one variant by its name and all variants by the id', () => {
    const cases = loadPaths(['suites']).cases;
    const withMatrix = cases.find((c) => c.matrix.length > 0)!;
    const all = plan([withMatrix], {});
    expect(all.length).toBeGreaterThan(1);
    expect(plan([withMatrix], { filter: all[1].name }).map((p) => p.name)).toEqual([all[1].name]);
    expect(plan([withMatrix], { filter: withMatrix.id }).length).toBe(all.length);
  });

  it('nothing selected is a usage error naming the paths or the filter', () => {
    const cases = loadPaths(['suites/hypercall']).cases;
    expect(() => planOrThrow([], { paths: ['empty/'] })).toThrow(/no cases matched: no \.yaml case files under empty\//);
    expect(() => planOrThrow(cases, { paths: ['suites/hypercall'], filter: 'nope-*' })).toThrow(/no cases matched --filter 'nope-\*'/);
    expect(planOrThrow(cases, { paths: ['x'], filter: '*xen-version*' }).length).toBeGreaterThan(0);
    // A shard past the end of a small selection is empty, not an error.
    expect(planOrThrow(cases.slice(0, 1), { paths: ['x'], shard: { k: 9, n: 9 } })).toEqual([]);
  });
});
