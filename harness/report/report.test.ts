import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { junitXml } from './junit.js';
import { ktap } from './ktap.js';
import { consoleSummary } from './console.js';
import { writeAtomic } from './atomic-write.js';
import type { CaseResult, RunSummary } from '../runner/results.js';

const base = { file: 'suites/x/a.yaml', description: 'd & <e>', spec: ['xen/common/x.c'], durationMs: 1.5, steps: [] };
const results: CaseResult[] = [
  { ...base, id: 'x/b', variant: '', name: 'x/b', status: 'fail', message: 'step 1 (op, line 3): ret: expected 0, got -22 (-EINVAL)', detail: 'trace' },
  { ...base, id: 'x/a', variant: 'mode=32', name: 'x/a[mode=32]', status: 'pass' },
  { ...base, id: 'x/a', variant: 'mode=64', name: 'x/a[mode=64]', status: 'skip', message: 'Requirement not met: guest.mode64 (why)' },
  { ...base, id: 'y/c', variant: '', name: 'y/c', status: 'error', message: 'timeout: case did not finish within 1s' },
];
const run: RunSummary = { target: 'model', seed: '7', capabilities: ['a', 'b'], properties: { flavor: 'xen' }, results, startedAt: '2026-01-01T00:00:00.000Z', durationMs: 3 };

describe('reporters', () => {
  it('JUnit: failure, error and skipped-with-message, sorted, with properties (snapshot without times)', () => {
    const xml = junitXml(run, { times: false });
    expect(xml).toContain('<failure message="step 1 (op, line 3): ret: expected 0, got -22 (-EINVAL)" type="mismatch"/>');
    expect(xml).toContain('<error message="timeout: case did not finish within 1s" type="harness"/>');
    expect(xml).toContain('<skipped message="Requirement not met: guest.mode64 (why)"/>');
    expect(xml.indexOf('x/a[mode=32]')).toBeLessThan(xml.indexOf('x/b'));
    expect(xml).not.toMatch(/time=|timestamp=/);
    expect(xml).toMatchSnapshot();
  });
  it('KTAP version 1 with subtests for variants (snapshot)', () => {
    const out = ktap(run);
    expect(out.startsWith('KTAP version 1\n')).toBe(true);
    expect(out).toContain('    ok 2 mode=64 # SKIP Requirement not met: guest.mode64 (why)');
    expect(out).toContain('not ok 2 x/b');
    expect(out).toMatchSnapshot();
  });
  it('console summary ends with the counts line', () => {
    const out = consoleSummary(run).trim().split('\n');
    expect(out.at(-1)).toBe('1 passed, 2 failed, 1 skipped');
  });
  it('a differential run adds the xconf.differential suite, a KTAP group and a console block; the counts line stays last', () => {
    const diffRun: RunSummary = {
      ...run,
      differential: {
        target: 'model', reference: 'model-kvm', entries: [
          { name: 'x/b', id: 'x/b', file: 'suites/x/a.yaml', verdict: 'disagree', reasons: ['step 1 (op, line 3): ret model=0 model-kvm=-22 (-EINVAL)'] },
          { name: 'x/a[mode=32]', id: 'x/a', file: 'suites/x/a.yaml', verdict: 'not-compared', reasons: ['Requirement not met: flavor.xen (why)'] },
          { name: 'y/c', id: 'y/c', file: 'suites/x/a.yaml', verdict: 'agree', reasons: [] },
        ],
      },
    };
    const xml = junitXml(diffRun, { times: false });
    expect(xml).toMatch(/<testsuite name="xconf\.differential" tests="3" failures="1" errors="0" skipped="1">/);
    expect(xml).toContain('<failure message="step 1 (op, line 3): ret model=0 model-kvm=-22 (-EINVAL)" type="disagreement"/>');
    expect(xml).toContain('<skipped message="not compared: Requirement not met: flavor.xen (why)"/>');
    // The main suites are as before (only the <testsuites> totals grow): skip reasons stay with their own testcases.
    const suites = (x: string) => x.slice(x.indexOf('<testsuite '), x.includes('xconf.differential') ? x.indexOf('<testsuite name="xconf.differential"') : x.indexOf('</testsuites>')).trimEnd();
    expect(suites(xml)).toBe(suites(junitXml(run, { times: false })));
    expect(xml).toMatch(/<testsuites tests="7" failures="2" errors="1" skipped="2">/);
    const k = ktap(diffRun);
    expect(k).toContain('1..4\n');
    expect(k).toContain('    # DISAGREE: step 1 (op, line 3): ret model=0 model-kvm=-22 (-EINVAL)\n    not ok 2 x/b\n');
    expect(k).toContain('    ok 1 x/a[mode=32] # SKIP not compared: Requirement not met: flavor.xen (why)\n');
    expect(k).toContain('\nnot ok 4 xconf.differential\n');
    const out = consoleSummary(diffRun).trim().split('\n');
    expect(out).toContain('DISAGREE x/b: step 1 (op, line 3): ret model=0 model-kvm=-22 (-EINVAL)');
    expect(out).toContain('differential: model vs model-kvm: 2 compared, 1 agree, 1 disagree, 1 not compared');
    expect(out.at(-1)).toBe('1 passed, 2 failed, 1 skipped');
  });
  it('writes atomically: no temp file is left and the content is whole', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-rep-'));
    const p = join(dir, 'sub', 'junit.xml');
    writeAtomic(p, 'one');
    writeAtomic(p, 'two');
    expect(readFileSync(p, 'utf8')).toBe('two');
    expect(readdirSync(join(dir, 'sub'))).toEqual(['junit.xml']);
  });
});
