import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { differentialJunitXml, junitXml, servedBy } from './junit.js';
import { ktap } from './ktap.js';
import { consoleSummary, servedCounts, skipGroups, styleFor } from './console.js';
import { writeAtomic } from './atomic-write.js';
import { runJson } from './json.js';
import { DriverError } from '../errors.js';
import type { CaseResult, RunSummary } from '../runner/results.js';

const base = { file: 'suites/x/a.yaml', description: 'd & <e>', spec: ['xen/common/x.c'], durationMs: 1.5, steps: [] };
const results: CaseResult[] = [
  { ...base, id: 'x/b', variant: '', name: 'x/b', status: 'fail', message: 'step 1 (op, line 3): ret: expected 0, got -22 (-EINVAL)', detail: 'trace',
    steps: [{ index: 0, label: 'op', line: 3, status: 'fail', servedBy: 'kernel', kind: 'hypercall' }] },
  { ...base, id: 'x/a', variant: 'mode=64', name: 'x/a[mode=64]', status: 'skip', message: 'Requirement not met: guest.mode64 (why)', missing: ['guest.mode64'] },
  { ...base, id: 'x/a', variant: 'mode=32', name: 'x/a[mode=32]', status: 'pass' },
  { ...base, id: 'y/c', variant: '', name: 'y/c', status: 'error', message: 'timeout: case did not finish within 1s' },
  { ...base, id: 'y/d', variant: '', name: 'y/d', status: 'xfail', message: 'step 2 (poll, line 9): ret: expected -22, got 0',
    divergence: { expected: 'fail', reason: 'poll answered as yield', where: 'arch/x86/kvm/xen.c kvm_xen_schedop_poll', until: '6.2', source: 'expectations/kvm-6.1.yaml:4' } },
];
const run: RunSummary = {
  target: 'model', seed: '7', capabilities: ['a', 'b'], missing: { 'guest.mode64': 'why' }, properties: { flavor: 'xen' }, results,
  startedAt: '2026-01-01T00:00:00.000Z', durationMs: 3,
};

describe('JUnit', () => {
  const xml = junitXml(run, { times: false });
  it('failure, error, skipped with its message and known divergence as pytest xfail; counts per suite', () => {
    expect(xml).toContain('<failure message="step 1 (op, line 3): ret: expected 0, got -22 (-EINVAL)" type="mismatch">trace</failure>');
    expect(xml).toContain('<error message="timeout: case did not finish within 1s" type="harness">');
    expect(xml).toContain('<skipped message="Requirement not met: guest.mode64 (why)"/>');
    expect(xml).toContain('<skipped type="pytest.xfail" message="known divergence: poll answered as yield (arch/x86/kvm/xen.c kvm_xen_schedop_poll)"/>');
    expect(xml).toMatch(/<testsuites name="xconf model" tests="5" failures="1" errors="1">/);
    expect(xml).toMatch(/<testsuite name="model\/y" tests="2" failures="0" errors="1" skipped="1">/);
    expect(xml).not.toMatch(/time=|timestamp=/);
  });
  it('per-case data is in system-out, never in properties under a testcase; the failing step gives the line', () => {
    expect(xml).not.toMatch(/<testcase[^>]*>\s*<properties>/);
    expect(xml).toMatch(/name="x\/b" file="suites\/x\/a.yaml" line="3">/);
    expect(xml).toContain('<system-out>served_by: kernel\nspec: xen/common/x.c\ndescription: d &amp; &lt;e');
    expect(xml).toContain('\n\ntrace</system-out>');
    expect(xml).toContain('known_divergence: arch/x86/kvm/xen.c kvm_xen_schedop_poll (fixed in 6.2)\nexpectation: expectations/kvm-6.1.yaml:4');
  });
  it('capabilities are written once, in the first suite only', () => {
    expect(xml.match(/name="capabilities"/g)).toHaveLength(1);
    expect(xml.match(/name="target" value="model"/g)).toHaveLength(2);
  });
  it('an interrupted run and stale expectations add an xconf.run error each', () => {
    const x = junitXml({ ...run, interrupted: 'SIGTERM', planned: 9, expectationProblems: ['e.yaml:3: known divergence \'z\' matches no case: remove the entry or fix its id'] }, { times: false });
    expect(x).toMatch(/<testsuite name="xconf.run" tests="2" failures="0" errors="2" skipped="0">/);
    expect(x).toContain('run interrupted (SIGTERM) after 5 of 9 cases');
    expect(x).toMatch(/<testsuites name="xconf model" tests="7" failures="1" errors="3">/);
  });
  it('control characters XML cannot carry are shown escaped', () => {
    const x = junitXml({ ...run, results: [{ ...results[0], message: 'bad\u0001byte' }] }, { times: false });
    expect(x).toContain('bad\\x01byte');
  });
  it('the differential is its own document, not counted with the cases', () => {
    const d: RunSummary = { ...run, differential: { target: 'model', reference: 'model-kvm', entries: [
      { name: 'x/b', id: 'x/b', file: 'suites/x/a.yaml', verdict: 'disagree', reasons: ['step 1 (op, line 3): ret model=0 model-kvm=-22 (-EINVAL)'] },
      { name: 'x/a[mode=32]', id: 'x/a', file: 'suites/x/a.yaml', verdict: 'not-compared', reasons: ['Requirement not met: flavor.xen (why)'] },
      { name: 'y/d', id: 'y/d', file: 'suites/x/a.yaml', verdict: 'known', reasons: ['status model=fail model-kvm=pass'] },
      { name: 'y/c', id: 'y/c', file: 'suites/x/a.yaml', verdict: 'agree', reasons: [] },
    ] } };
    expect(junitXml(d, { times: false })).toBe(xml);
    const dx = differentialJunitXml(d, { times: false });
    expect(dx).toMatch(/<testsuite name="xconf\.differential" tests="4" failures="1" errors="0" skipped="2">/);
    expect(dx).toContain('<failure message="step 1 (op, line 3): ret model=0 model-kvm=-22 (-EINVAL)" type="disagreement">');
    expect(dx).toContain('<skipped message="not compared: Requirement not met: flavor.xen (why)"/>');
    expect(dx).toContain('<skipped type="pytest.xfail" message="known divergence: status model=fail model-kvm=pass"/>');
  });
});

describe('KTAP', () => {
  const out = ktap(run);
  it('two-space subtests in the order given, SKIP / XFAIL / ERROR directives, kselftest totals', () => {
    expect(out.startsWith('KTAP version 1\n# xconf target=model seed=7\n1..4\n')).toBe(true);
    expect(out).toContain('# FAIL: step 1 (op, line 3): ret: expected 0, got -22 (-EINVAL)\nnot ok 1 x/b\n');
    expect(out).toContain('  KTAP version 1\n  # Subtest: x/a\n  1..2\n  ok 1 mode=64 # SKIP Requirement not met: guest.mode64 (why)\n  ok 2 mode=32\nok 2 x/a\n');
    expect(out).toContain('not ok 3 y/c # ERROR timeout: case did not finish within 1s\n');
    expect(out).toContain('ok 4 y/d # XFAIL poll answered as yield (arch/x86/kvm/xen.c kvm_xen_schedop_poll)\n');
    expect(out.trimEnd().split('\n').at(-1)).toBe('# Totals: pass:1 fail:1 xfail:1 xpass:0 skip:1 error:1');
  });
  it("no '#' inside a test's text: it would end the name for the kernel's parser", () => {
    const k = ktap({ ...run, results: [{ ...results[1], message: 'needs #5' }] });
    expect(k).toContain('# SKIP needs No.5');
  });
  it('an interrupted run keeps the planned count and bails out; stale expectations fail a last test', () => {
    const k = ktap({ ...run, interrupted: 'SIGINT', planned: 40 }, { plannedGroups: 20 });
    expect(k).toContain('\n1..20\n');
    expect(k.trimEnd().split('\n').at(-1)).toBe('Bail out! run interrupted (SIGINT) after 5 of 40 cases');
    const s = ktap({ ...run, expectationProblems: ['e.yaml:3: stale'] });
    expect(s).toContain('\n1..5\n');
    expect(s).toContain('# e.yaml:3: stale\nnot ok 5 xconf.expectations\n');
  });
});

describe('console', () => {
  it('recaps failures with file:line, lists known divergences, groups skips, ends with the counts line', () => {
    const out = consoleSummary(run).trim().split('\n');
    expect(out).toContain('  FAIL x/b (suites/x/a.yaml:3): step 1 (op, line 3): ret: expected 0, got -22 (-EINVAL)');
    expect(out).toContain('KNOWN y/d (arch/x86/kvm/xen.c kvm_xen_schedop_poll): poll answered as yield');
    expect(out).toContain('SKIP 1: why');
    expect(out).toContain('kernel served: 1 cases, host ops only: 0, VMM with kernel delivery: 0, VMM only: 3; a step served by the VMM: 0 of 4');
    expect(consoleSummary({ ...run, target: 'qemu' })).toContain('a step served by the VMM (QEMU): 0 of 4');
    expect(out.at(-1)).toBe('1 passed, 2 failed, 1 skipped, 1 known divergences');
  });
  it('skips are grouped by the cause most of them share, each case once', () => {
    const mk = (missing: string[]): CaseResult => ({ ...base, id: 'z', variant: '', name: 'z', status: 'skip', missing });
    const missing = { a: 'KVM_CAP_XEN_HVM = 0: no Xen; needs A', b: 'KVM_CAP_XEN_HVM = 0: no Xen; needs B', c: 'grant tables are the VMM\'s' };
    expect(skipGroups([mk(['a']), mk(['c', 'b']), mk(['c']), mk(['a', 'b'])], missing)).toEqual([
      { cause: 'KVM_CAP_XEN_HVM = 0: no Xen', n: 3 }, { cause: 'grant tables are the VMM\'s', n: 1 },
    ]);
  });
  it('served counts only on targets that say who served; host ops alone are their own class', () => {
    const s = (servedBy: string, kind: string) => ({ index: 0, label: 'o', line: 1, status: 'pass' as const, servedBy, kind });
    const mk = (...steps: ReturnType<typeof s>[]): CaseResult => ({ ...base, id: 'z', variant: '', name: 'z', status: 'pass', steps });
    expect(servedCounts([mk(s('kernel', 'wrmsr'), s('vmm', 'hypercall'))])).toEqual({ kernel: 1, hostOnly: 0, kernelDelivery: 0, vmmOnly: 0, withVmm: 1, ran: 1 });
    expect(servedCounts([mk(s('model', 'hypercall'))])).toBeUndefined();
    expect(servedCounts([mk(s('kernel', 'hypercall'), s('vmm', 'hypercall')), mk(s('vmm', 'hypercall')), mk(s('kernel', 'host'), s('vmm', 'hypercall'))]))
      .toEqual({ kernel: 1, hostOnly: 1, kernelDelivery: 0, vmmOnly: 1, withVmm: 3, ran: 3 });
  });
  it('a VMM-served case whose events the kernel delivered is its own class, and says so in served_by', () => {
    const step = (servedBy: string, kernelDeliveries?: number) => ({ index: 0, label: 'o', line: 1, status: 'pass' as const, servedBy, kind: 'hypercall', kernelDeliveries });
    const delivered: CaseResult = { ...base, id: 'z', variant: '', name: 'z', status: 'pass', steps: [step('vmm'), step('vmm', 2)] };
    const alone: CaseResult = { ...delivered, steps: [step('vmm')] };
    expect(servedCounts([delivered, alone])).toEqual({ kernel: 0, hostOnly: 0, kernelDelivery: 1, vmmOnly: 1, withVmm: 2, ran: 2 });
    expect(servedBy(delivered)).toEqual(['kernel-delivery', 'vmm']);
    expect(servedBy(alone)).toEqual(['vmm']);
  });
  it('colour only on a terminal and never with NO_COLOR', () => {
    expect(styleFor({ isTTY: true }, {}).red('x')).toBe('\u001b[31mx\u001b[0m');
    expect(styleFor({ isTTY: true }, { NO_COLOR: '1' }).red('x')).toBe('x');
    expect(styleFor({ isTTY: false }, {}).red('x')).toBe('x');
  });
});

describe('JSON and files', () => {
  it('--json carries counts and every case', () => {
    const j = JSON.parse(runJson(run));
    expect(j.counts).toEqual({ cases: 5, passed: 1, failed: 2, failures: 1, errors: 1, skipped: 1, knownDivergences: 1 });
    expect(j.results.map((r: { status: string }) => r.status)).toEqual(['fail', 'skip', 'pass', 'error', 'xfail']);
    expect(j.results[0].location).toBe('suites/x/a.yaml:3');
  });
  it('writes atomically: no temp file is left and the content is whole', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-rep-'));
    const p = join(dir, 'sub', 'junit.xml');
    writeAtomic(p, 'one');
    writeAtomic(p, 'two');
    expect(readFileSync(p, 'utf8')).toBe('two');
    expect(readdirSync(join(dir, 'sub'))).toEqual(['junit.xml']);
  });
  it('a report that cannot be written names the report, not a temp file, and leaves no litter', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-rep-'));
    mkdirSync(join(dir, 'r.xml'));
    writeFileSync(join(dir, 'blocker'), '');
    expect(() => writeAtomic(join(dir, 'r.xml'), 'x')).toThrow(DriverError);
    expect(() => writeAtomic(join(dir, 'r.xml'), 'x')).toThrow(/^cannot write report .*r\.xml: EISDIR$/);
    expect(() => writeAtomic(join(dir, 'blocker', 'r.xml'), 'x')).toThrow(/cannot write report .*blocker\/r\.xml: E[A-Z]+$/);
    expect(readdirSync(dir).sort()).toEqual(['blocker', 'r.xml']);
  });
});
