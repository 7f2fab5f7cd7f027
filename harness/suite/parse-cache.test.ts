import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadPaths } from './loader.js';
import { ParseCache, contentKey } from './parse-cache.js';

const tmp = (p: string) => mkdtempSync(join(tmpdir(), p));

function suite(files: Record<string, string>): string {
  const s = join(tmp('xconf-pc-'), 'suites');
  mkdirSync(s);
  for (const [n, b] of Object.entries(files)) writeFileSync(join(s, n), b);
  return s;
}

describe('parse cache', () => {
  it('a cached load gives exactly the cases of an uncached one (the shipped suites)', () => {
    const cache = new ParseCache(tmp('xconf-cache-'));
    const cold = loadPaths(['suites'], { cache });
    const warm = loadPaths(['suites'], { cache: new ParseCache(cache.dir) });
    const none = loadPaths(['suites'], { cache: null });
    expect(warm.problems).toEqual([]);
    expect(warm.cases).toEqual(none.cases);
    expect(cold.cases).toEqual(none.cases);
    const key = contentKey(readFileSync('suites/hypercall/xen-version-version.yaml'));
    expect(readFileSync(join(cache.dir, key.slice(0, 2), `${key}.json`), 'utf8')).toMatch(/^\{"f":"xconf-parse-1/);
  });

  it('property: values survive the cache exactly (big integers, -0, odd keys); an edit is a miss', () => {
    const value = fc.oneof(fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }), fc.constantFrom('$b', '{ $o: 1 }', 'x y', '.inf', '-.inf', '.nan', '-0', '0x10', 'null', 'true'));
    fc.assert(fc.property(fc.array(value, { minLength: 1, maxLength: 6 }), (vals) => {
      const body = `description: x\nmatrix:\n  v: [${vals.map((v) => (typeof v === 'bigint' ? v.toString() : v === '-0' ? '-0.0' : JSON.stringify(v))).join(', ')}]\nsteps:\n  - op: memory.check\n`;
      const s = suite({ 'a.yaml': body });
      const cache = new ParseCache(tmp('xconf-cache-'));
      const first = loadPaths([s], { cache });
      const again = loadPaths([s], { cache: new ParseCache(cache.dir) });
      const plain = loadPaths([s], { cache: null });
      expect(again).toEqual(plain);
      expect(first).toEqual(plain);
    }), { numRuns: 40 });
  });

  it('keys are content hashes: a changed file is parsed again and reports its own positions', () => {
    const s = suite({ 'a.yaml': 'description: x\nsteps:\n  - op: memory.check\n' });
    const cache = new ParseCache(tmp('xconf-cache-'));
    expect(loadPaths([s], { cache }).problems).toEqual([]);
    writeFileSync(join(s, 'a.yaml'), 'description: x\nsteps:\n  - op: memory.check\n  - op: memory.write\n    args: { gpa: -1, value: 1 }\n');
    const r = loadPaths([s], { cache: new ParseCache(cache.dir) });
    expect(r.problems.map((p) => [p.code, p.line, p.col])).toEqual([['RANGE', 5, 18]]);
    expect(contentKey(Buffer.from('a'))).not.toBe(contentKey(Buffer.from('b')));
  });

  it('a hit that no longer checks (the vocabulary changed) is parsed again for exact positions', () => {
    const body = 'description: x\nsteps:\n  - op: memory.check\n';
    const s = suite({ 'a.yaml': body });
    const cache = new ParseCache(tmp('xconf-cache-'));
    // Plant an entry for these bytes whose data no longer passes the checks.
    cache.set(contentKey(Buffer.from(body)), { data: { description: 'x', steps: [{ op: 'gone.op' }] }, stepLines: [3] });
    const r = loadPaths([s], { cache });
    expect(r.problems).toEqual([]);
    expect(r.cases[0].steps[0].line).toBe(3);
  });

  it('a corrupt or unwritable cache is ignored', () => {
    const dir = tmp('xconf-cache-');
    const body = 'description: x\nsteps:\n  - op: memory.check\n';
    const key = contentKey(Buffer.from(body));
    mkdirSync(join(dir, key.slice(0, 2)));
    writeFileSync(join(dir, key.slice(0, 2), `${key}.json`), '{not json');
    const r = loadPaths([suite({ 'a.yaml': body })], { cache: new ParseCache(dir) });
    expect([r.problems, r.cases.length]).toEqual([[], 1]);
    const file = join(tmp('xconf-cache-'), 'a-file');
    writeFileSync(file, '');
    expect(loadPaths(['suites/hypercall'], { cache: new ParseCache(join(file, 'sub')) }).problems).toEqual([]);
  });
});
