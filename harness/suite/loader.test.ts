import { describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadFile, loadPaths } from './loader.js';
import { formatProblem } from '../errors.js';

const INVALID = 'fixtures/invalid';

describe('loader: malformed fixtures', () => {
  const files = readdirSync(INVALID).filter((f) => f.endsWith('.yaml')).sort();
  it('ships at least 15 malformed files', () => expect(files.length).toBeGreaterThanOrEqual(15));
  for (const f of files) {
    it(`${f} gives the code and position its header names`, () => {
      const file = join(INVALID, f);
      const [, code, line, col] = /^# expect: ([A-Z_]+) (\d+):(\d+)/.exec(readFileSync(file, 'utf8'))!;
      const r = loadFile(file, f);
      expect(r.case).toBeUndefined();
      expect(r.problems.length).toBeGreaterThan(0);
      const p = r.problems[0];
      expect([p.code, p.line, p.col]).toEqual([code, Number(line), Number(col)]);
      for (const q of r.problems) expect(formatProblem(q)).toMatch(/^[^\n]+:\d+:\d+: [A-Z_]+( [^:\n]+)?: [^\n]+$/);
    });
  }
});

function tmpSuite(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'xconf-'));
  const s = join(root, 'suites');
  for (const [name, body] of Object.entries(files)) {
    mkdirSync(join(s, name, '..'), { recursive: true });
    writeFileSync(join(s, name), body);
  }
  return s;
}

describe('loader: valid files', () => {
  it('loads the shipped suites without problems', () => {
    const r = loadPaths(['suites']);
    expect(r.problems.map(formatProblem)).toEqual([]);
    expect(r.cases.length).toBeGreaterThanOrEqual(20);
  });

  it('derives ids from the path under suites/', () => {
    const s = tmpSuite({ 'a/b.yaml': 'description: x\nsteps:\n  - op: memory.check\n' });
    const r = loadPaths([s]);
    expect(r.cases.map((c) => c.id)).toEqual(['a/b']);
  });

  it('reports every problem of a file at once', () => {
    const s = tmpSuite({
      'x.yaml': 'description: x\nrequires: [nope]\nsteps:\n  - op: bad.op\n  - op: xen.version\n    args: { cmd: $q }\n',
    });
    const r = loadPaths([s]);
    // A broken top level does not hide the steps' problems.
    expect(r.problems.map((p) => p.code).sort()).toEqual(['UNDEFINED_VAR', 'UNKNOWN_CAPABILITY', 'UNKNOWN_OP']);
    const s2 = tmpSuite({ 'x.yaml': 'description: x\nsteps:\n  - op: bad.op\n  - op: xen.version\n    args: { cmd: $q }\n  - op: xen.version\n    args: { cmd: NOPE }\n' });
    expect(loadPaths([s2]).problems.map((p) => p.code)).toEqual(['UNKNOWN_OP', 'UNDEFINED_VAR', 'UNKNOWN_CONSTANT']);
  });

  it('accepts variables saved by earlier steps and matrix parameters', () => {
    const s = tmpSuite({
      'v.yaml': 'description: v\nmatrix:\n  m: [64, 32]\nsetup:\n  mode: $m\nsteps:\n  - op: xen.version\n    args: { cmd: 0 }\n    save: { v: ret }\n  - op: xen.version\n    args: { cmd: $v - $v }\n',
    });
    const r = loadPaths([s]);
    expect(r.problems).toEqual([]);
    expect(r.cases[0].matrix).toEqual([['m', [64n, 32n]]]);
  });

  it('rejects duplicate ids and files that resolve outside the suite root', () => {
    const s = tmpSuite({ 'd.yaml': 'description: d\nsteps:\n  - op: memory.check\n', 'd.yml': 'description: d\nsteps:\n  - op: memory.check\n' });
    expect(loadPaths([s]).problems.map((p) => p.code)).toEqual(['DUPLICATE_ID']);
    const outside = mkdtempSync(join(tmpdir(), 'xconf-out-'));
    writeFileSync(join(outside, 'evil.yaml'), 'description: e\nsteps:\n  - op: memory.check\n');
    const s2 = tmpSuite({});
    mkdirSync(s2, { recursive: true });
    symlinkSync(join(outside, 'evil.yaml'), join(s2, 'evil.yaml'));
    expect(loadPaths([s2]).problems.map((p) => p.code)).toEqual(['OUTSIDE_ROOT']);
  });
});

describe('loader: hostile input (property)', () => {
  const seeds = readdirSync('suites/hypercall').map((f) => readFileSync(join('suites/hypercall', f), 'utf8'));
  const dir = mkdtempSync(join(tmpdir(), 'xconf-fuzz-'));
  const check = (content: string | Uint8Array) => {
    const file = join(dir, 'case.yaml');
    writeFileSync(file, content);
    const r = loadFile(file, 'case');
    // Either a valid case or one-line problems with positions.
    if (!r.case) {
      expect(r.problems.length).toBeGreaterThan(0);
      for (const p of r.problems) {
        expect(p.line).toBeGreaterThanOrEqual(1);
        expect(p.col).toBeGreaterThanOrEqual(1);
        expect(formatProblem(p)).not.toMatch(/\n|    at /);
      }
    }
  };
  it('never throws on mutated case files', () => {
    fc.assert(
      fc.property(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.nat(8), fc.string({ maxLength: 6 })), { maxLength: 4 }), (seed, edits) => {
        let s = seed;
        for (const [at, del, ins] of edits) {
          const i = at % (s.length + 1);
          s = s.slice(0, i) + ins + s.slice(i + del);
        }
        check(s);
      }),
      { numRuns: 300 },
    );
  });
  it('never throws on binary junk, deep nesting or huge numbers', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (b) => check(b)), { numRuns: 200 });
    check('description: x\nsteps:\n' + '  - op: memory.check\n    args: '.concat('['.repeat(2000)));
    check('description: x\nsteps:\n  - op: xen.version\n    args: { cmd: 1' + '0'.repeat(400) + ' }\n');
    check('description: x\ntimeout: 1e999\nsteps:\n  - op: memory.check\n');
  });
  it('a list or mapping as a key is one problem at the key, with nothing on stderr', () => {
    const warn = vi.spyOn(process, 'emitWarning');
    const file = join(mkdtempSync(join(tmpdir(), 'xconf-')), 'k.yaml');
    writeFileSync(file, 'description: x\nsteps:\n  - op: xen.version\n    args: { { cmd: 1 }: 2, [a]: 3 }\n');
    const r = loadFile(file, 'k');
    expect(r.problems.map((p) => [p.code, p.line, p.col])).toEqual([['YAML_KEY', 4, 13], ['YAML_KEY', 4, 28]]);
    writeFileSync(file, 'description: x\nvars: &x { b: 1 }\nsteps:\n  - op: xen.version\n    args: { *x : 2 }\n');
    expect(loadFile(file, 'k').problems.map((p) => [p.code, p.line, p.col])).toEqual([['YAML_KEY', 5, 13]]);
    expect(warn).not.toHaveBeenCalled();
    warn.mockRestore();
  });
});

describe('loader: case ids', () => {
  it('refuses ids with # or whitespace at load time, naming the file', () => {
    const s = tmpSuite({ 'a b.yaml': 'description: x\nsteps:\n  - op: memory.check\n', 'c#1.yaml': 'description: x\nsteps:\n  - op: memory.check\n', 'ok.yaml': 'description: x\nsteps:\n  - op: memory.check\n' });
    const r = loadPaths([s]);
    expect(r.cases.map((c) => c.id)).toEqual(['ok']);
    expect(r.problems.map((p) => [p.code, p.line, p.col, p.file.endsWith('a b.yaml') || p.file.endsWith('c#1.yaml')])).toEqual([['BAD_ID', 1, 1, true], ['BAD_ID', 1, 1, true]]);
    expect(r.problems[0].message).toMatch(/contains a space/);
  });
});

describe('loader: numbers are checked at load time', () => {
  const one = (body: string) => loadPaths([tmpSuite({ 'x.yaml': body })]).problems;

  it('reports every problem of a file in one pass, structure and steps alike', () => {
    const ps = one('description: x\ntimeout: nope\nsteps:\n  - op: hypercall.raw\n    args: { nr: 18446744073709551633 }\n  - op: memory.check\n    vcpu: -1\n    expct: {}\n  - op: memory.write\n    args: { gpa: 4096 / 0, value: 1 }\n');
    expect(ps.map((p) => `${p.code}@${p.line}`)).toEqual(['TYPE@2', 'RANGE@5', 'UNKNOWN_KEY@8', 'BAD_EXPR@10']);
  });

  it('names the value and the field width', () => {
    const [p] = one('description: x\nsteps:\n  - op: hypercall.raw\n    args: { nr: 18446744073709551633 }\n');
    expect(p.message).toBe('18446744073709551633 (0x10000000000000011) does not fit a 64-bit register value (int64): -0x8000000000000000..0xffffffffffffffff');
    const [q] = one('description: x\nsteps:\n  - op: memory.write\n    args: { gpa: 0, size: 1, value: 256 }\n');
    expect(q.message).toMatch(/^256 does not fit a value of size 1 \(8-bit value\): -128\.\.255$/);
  });

  it('property: a literal fits a field exactly when it is in range', () => {
    fc.assert(fc.property(fc.constantFrom(1n, 2n, 4n, 8n), fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }), (size, v) => {
      const ps = one(`description: x\nsteps:\n  - op: memory.write\n    args: { gpa: 0x1000, size: ${size}, value: ${v} }\n`);
      const bits = size * 8n;
      const fits = v >= -(1n << (bits - 1n)) && v < 1n << bits;
      expect(ps.map((p) => p.code)).toEqual(fits ? [] : ['RANGE']);
    }), { numRuns: 60 });
  });

  it('checks constant parts of expressions with variables, and leaves the rest to run time', () => {
    expect(one('description: x\nvars: { a: 8 }\nsteps:\n  - op: memory.write\n    args: { gpa: $a * 4096, value: 1 }\n')).toEqual([]);
    expect(one('description: x\nvars: { a: 8 }\nsteps:\n  - op: memory.write\n    args: { gpa: $a % (1 - 1), value: 1 }\n').map((p) => p.message)).toEqual(["'$a % (1 - 1)' cannot be evaluated: division by zero"]);
    expect(one('description: x\nvars: { a: 1 << 100000 }\nsteps:\n  - op: memory.check\n').map((p) => p.code)).toEqual(['BAD_EXPR']);
  });

  it('an unknown capability, constant or op names the nearest known one', () => {
    expect(one('description: x\nrequires: [evtchn.fif0]\nsteps:\n  - op: memory.check\n')[0].message).toMatch(/unknown capability 'evtchn\.fif0' \(did you mean evtchn\.fifo\?\)/);
    expect(one('description: x\nsteps:\n  - op: xen.version\n    args: { cmd: XENVER_versoin }\n')[0].message).toMatch(/unknown constant XENVER_versoin \(did you mean XENVER_version\?\)/);
    expect(one('description: x\nsteps:\n  - op: xen.verison\n')[0].message).toMatch(/did you mean xen\.version\?/);
  });
});
