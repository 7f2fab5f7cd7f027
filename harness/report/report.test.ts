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
  it('writes atomically: no temp file is left and the content is whole', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-rep-'));
    const p = join(dir, 'sub', 'junit.xml');
    writeAtomic(p, 'one');
    writeAtomic(p, 'two');
    expect(readFileSync(p, 'utf8')).toBe('two');
    expect(readdirSync(join(dir, 'sub'))).toEqual(['junit.xml']);
  });
});
