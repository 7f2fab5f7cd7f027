// ci/live-kvm/coverage.mjs: gcov on a real gcov-instrumented program laid out like the
// kernel tree (the build tree gone, as in the kernel cache), the summary rules, the gate.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
// @ts-expect-error: plain ESM script without types
import { gate, report, summarise, summaryLine } from '../../ci/live-kvm/coverage.mjs';

const root = mkdtempSync(join(tmpdir(), 'xconf-cov-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const program = `int used(int x) {
  if (x > 2)
    return x * 2;
  return x;
}
int never(int x) {
  return x + 1;
}
int main(int argc, char **argv) {
  (void)argv;
  return used(argc) == 1 ? 0 : 1;
}
`;

let gccOk = true;
try {
  execFileSync('gcc', ['--version']);
} catch {
  gccOk = false;
}

describe.skipIf(!gccOk)('report() on a real gcov build', () => {
  it('counts lines, functions and branches of the source and writes JSON and annotated source', () => {
    const build = join(root, 'build');
    mkdirSync(join(build, 'arch/x86/kvm'), { recursive: true });
    writeFileSync(join(build, 'arch/x86/kvm/xen.c'), program);
    const cc = (args: string[]) => execFileSync('gcc', args, { cwd: build });
    cc(['--coverage', '-O0', '-c', 'arch/x86/kvm/xen.c', '-o', 'arch/x86/kvm/xen.o']);
    cc(['--coverage', 'arch/x86/kvm/xen.o', '-o', 'prog']);
    execFileSync(join(build, 'prog'));
    const notes = join(root, 'notes');
    mkdirSync(notes);
    copyFileSync(join(build, 'arch/x86/kvm/xen.gcno'), join(notes, 'xen.gcno'));
    copyFileSync(join(build, 'arch/x86/kvm/xen.c'), join(notes, 'xen.c'));
    writeFileSync(join(notes, 'gcc-version'), execFileSync('gcc', ['-dumpfullversion'], { encoding: 'utf8' }));
    const gcda = join(root, 'xen.gcda');
    copyFileSync(join(build, 'arch/x86/kvm/xen.gcda'), gcda);
    rmSync(build, { recursive: true });

    const out = join(root, 'out');
    const s = report({ notesDir: notes, gcda, kernel: '0.0-test', outDir: out });
    expect(s.file).toBe('arch/x86/kvm/xen.c');
    expect(s.kernel).toBe('0.0-test');
    expect(s.functions).toEqual({ covered: 2, total: 3 });
    expect(s.uncovered_functions).toEqual(['never']);
    // used(): 4 lines, 3 run (return x*2 not); never(): 2 lines, none; main(): 3 lines, run.
    expect(s.lines.total).toBeGreaterThanOrEqual(8);
    expect(s.lines.covered).toBe(s.lines.total - 3);
    // if (x > 2): two outcomes, one taken (the ?: in main compiles without a branch).
    expect(s.branches).toEqual({ covered: 1, total: 2 });
    expect(JSON.parse(readFileSync(join(out, 'xen-c-coverage.json'), 'utf8'))).toEqual(s);
    const annotated = readFileSync(join(out, 'xen.c.gcov'), 'utf8');
    expect(annotated).toMatch(/#####:\s+7:\s+return x \+ 1;/);
    expect(annotated).toMatch(/1:\s+11:\s+return used\(argc\)/);
  });

  it('names the missing notes file', () => {
    expect(() => report({ notesDir: join(root, 'nowhere'), gcda: 'x', kernel: 'k', outDir: root })).toThrow(/xen\.gcno is missing/);
  });
});

describe('summarise()', () => {
  it('counts a line listed by several functions once, covered if any count is non-zero', () => {
    const s = summarise(
      {
        files: [
          {
            file: 'a.c',
            functions: [
              { name: 'f', execution_count: 1 },
              { name: 'g', execution_count: 0 },
            ],
            lines: [
              { line_number: 3, count: 0, branches: [{ count: 0 }, { count: 2 }] },
              { line_number: 3, count: 1, branches: [] },
              { line_number: 4, count: 0 },
            ],
          },
        ],
      },
      'a.c',
      'k',
    );
    expect(s).toEqual({
      file: 'a.c',
      kernel: 'k',
      lines: { covered: 1, total: 2 },
      functions: { covered: 1, total: 2 },
      branches: { covered: 1, total: 2 },
      uncovered_functions: ['g'],
    });
  });

  it('names the file gcov did not report', () => {
    expect(() => summarise({ files: [{ file: 'b.c' }] }, 'a.c', 'k')).toThrow(/no record of a\.c \(files: b\.c\)/);
  });

  it('never counts more covered than total, and the gate agrees with the percentage', () => {
    const line = fc.record({ line_number: fc.integer({ min: 1, max: 40 }), count: fc.nat(3), branches: fc.array(fc.record({ count: fc.nat(2) }), { maxLength: 3 }) });
    fc.assert(
      fc.property(fc.array(line, { maxLength: 60 }), fc.array(fc.nat(2), { maxLength: 10 }), fc.integer({ min: 0, max: 100 }), (lines, fcounts, min) => {
        const functions = fcounts.map((c, i) => ({ name: `f${i}`, execution_count: c }));
        const s = summarise({ files: [{ file: 'x.c', lines, functions }] }, 'x.c', 'k');
        for (const c of [s.lines, s.functions, s.branches]) expect(c.covered).toBeLessThanOrEqual(c.total);
        expect(s.lines.total).toBe(new Set(lines.map((l) => l.line_number)).size);
        expect(s.uncovered_functions.length).toBe(s.functions.total - s.functions.covered);
        const p = s.lines.total === 0 ? 0 : (100 * s.lines.covered) / s.lines.total;
        expect(gate(s, min) === null).toBe(p >= min);
      }),
    );
  });

  it('prints one summary line with the three figures', () => {
    const s = { file: 'arch/x86/kvm/xen.c', kernel: '6.12.118', lines: { covered: 800, total: 884 }, functions: { covered: 41, total: 42 }, branches: { covered: 400, total: 546 }, uncovered_functions: [] };
    expect(summaryLine('linux-6.12', s)).toBe('linux-6.12 arch/x86/kvm/xen.c coverage: lines 800/884 (90.5%), functions 41/42 (97.6%), branches 400/546 (73.3%)');
    expect(gate(s, 85)).toBeNull();
    expect(gate(s, 95)).toMatch(/90\.5% is below the gate of 95%/);
  });
});
