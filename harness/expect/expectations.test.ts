import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { applyExpectations, autoExpectationFiles, compareVersions, compileGlob, fileApplies, loadExpectations, targetLayers } from './expectations.js';
import { UsageError } from '../errors.js';
import type { CaseResult } from '../runner/results.js';

const dir = mkdtempSync(join(tmpdir(), 'xconf-expect-'));
const file = (name: string, text: string) => { const p = join(dir, name); writeFileSync(p, text); return p; };
const good = file('kvm-6.1.yaml', `target: kvm
version: "6.1"
divergences:
  - id: "sched/poll-*[mode=32]"
    status: fail
    reason: a 32-bit SCHEDOP_poll is answered as SCHEDOP_yield
    where: arch/x86/kvm/xen.c kvm_xen_schedop_poll
    until: "6.2"
  - id: evtchn/close-free
    status: error
    reason: r
    where: w
`);
const kvm61 = [{ target: 'kvm', version: '6.1.192' }];
const mk = (name: string, status: CaseResult['status']): CaseResult => ({
  id: name.replace(/\[.*$/, ''), variant: /\[(.*)\]$/.exec(name)?.[1] ?? '', name, file: 'f.yaml', description: '', spec: [], status, durationMs: 0, steps: [], message: `${status} msg`,
});

describe('expectations files', () => {
  it('load with their entries and the line of each', () => {
    const f = loadExpectations(good);
    expect(f.target).toBe('kvm');
    expect(f.version).toBe('6.1');
    expect(f.entries.map((e) => [e.pattern, e.expected, e.source])).toEqual([
      ['sched/poll-*[mode=32]', 'fail', `${good}:4`], ['evtchn/close-free', 'error', `${good}:9`],
    ]);
  });
  it('report every problem of a file at once, with file:line:col', () => {
    const bad = file('bad.yaml', `target: kvm
divergences:
  - id: "a b"
    status: broken
    reason: r
    where: w
  - id: x
    why: nope
    reason: r
    where: w
`);
    let msg = '';
    try { loadExpectations(bad); } catch (e) { expect(e).toBeInstanceOf(UsageError); msg = (e as Error).message; }
    const lines = msg.split('\n');
    expect(lines).toContain(`${bad}:3:5: status must be fail or error (got 'broken')`);
    expect(lines).toContain(`${bad}:3:5: id 'a b' holds whitespace or '#', which no case id can`);
    expect(lines).toContain(`${bad}:8:5: unknown field 'why' (fields: id, status, reason, where, until)`);
    expect(lines).toContain(`${bad}:7:5: missing 'status'`);
    expect(() => loadExpectations(join(dir, 'absent.yaml'))).toThrow(/--expect: cannot read .*absent\.yaml \(ENOENT\)/);
    expect(() => loadExpectations(file('notmap.yaml', '- 1\n'))).toThrow(/notmap\.yaml:1:1: an expectations file is a mapping/);
    expect(() => loadExpectations(file('notarget.yaml', 'divergences: []\n'))).toThrow(/missing 'target'/);
    // A YAML error names its position once, as file:line:col (the parser's own 'at line' is dropped).
    let syntax = '';
    try { loadExpectations(file('syntax.yaml', 'target: [\n')); } catch (e) { syntax = (e as Error).message; }
    expect(syntax).toMatch(/syntax\.yaml:2:1: /);
    expect(syntax).not.toMatch(/at line|\n/);
    // An unquoted 6.10 is the number 6.1: versions must be strings.
    expect(() => loadExpectations(file('numver.yaml', 'target: kvm\nversion: 6.10\ndivergences: []\n'))).toThrow(/numver\.yaml:2:10: version must be a string: quote versions/);
  });
  it('globs: * crosses /, ? is one character, brackets are literal', () => {
    expect(compileGlob('sched/*[mode=32]').test('sched/poll-x[mode=32]')).toBe(true);
    expect(compileGlob('sched/*[mode=32]').test('sched/poll-x[mode=64]')).toBe(false);
    expect(compileGlob('*poll*').test('a/b/poll/c')).toBe(true);
    expect(compileGlob('a?c').test('abc')).toBe(true);
    expect(compileGlob('a?c').test('ac')).toBe(false);
  });
  it('a pattern without wildcards matches exactly that text (property)', () => {
    fc.assert(fc.property(fc.string({ unit: fc.constantFrom('a', '/', '[', ']', '=', '.', '(', '+', '\\\\', '^', '$') }), fc.string(), (p, q) => {
      const re = compileGlob(p);
      return re.test(p) && (q === p || !re.test(q));
    }));
  });
  it('apply to the target and its version series; until ends them', () => {
    const f = loadExpectations(good);
    expect(fileApplies(f, 'kvm', '6.1.192')).toBe(true);
    expect(fileApplies(f, 'kvm', '6.12.117')).toBe(false);
    expect(fileApplies(f, 'model', '6.1.192')).toBe(false);
    expect(compareVersions('6.12.117', '6.2')).toBeGreaterThan(0);
    expect(compareVersions('6.1.192', '6.2')).toBeLessThan(0);
    const r = applyExpectations([{ ...f, version: undefined }], [{ target: 'kvm', version: '6.13.0' }], [mk('sched/poll-a[mode=32]', 'fail')]);
    expect(r.results[0].status).toBe('fail'); // fixed in 6.2: a failure on 6.13 is a real failure
  });
  it('a matching failure becomes a known divergence; a mismatched status stays a failure', () => {
    const f = loadExpectations(good);
    const r = applyExpectations([f], kvm61, [mk('sched/poll-a[mode=32]', 'fail'), mk('sched/poll-a[mode=64]', 'fail'), mk('evtchn/close-free', 'fail')]);
    expect(r.results.map((x) => x.status)).toEqual(['xfail', 'fail', 'fail']);
    expect(r.results[0].divergence).toMatchObject({ expected: 'fail', where: 'arch/x86/kvm/xen.c kvm_xen_schedop_poll', until: '6.2', source: `${good}:4` });
    expect(r.results[0].message).toBe('fail msg');
    expect(r.problems).toEqual([]);
  });
  it('an entry whose case now passes, or that matches no case, is a problem naming the entry', () => {
    const f = loadExpectations(good);
    const r = applyExpectations([f], kvm61, [mk('sched/poll-a[mode=32]', 'pass')], { names: ['sched/poll-a[mode=32]'], ids: ['sched/poll-a'] });
    expect(r.problems).toEqual([
      `${good}:4: known divergence 'sched/poll-*[mode=32]' now passes as sched/poll-a[mode=32] on kvm 6.1.192: remove the entry (fixed upstream?)`,
      `${good}:9: known divergence 'evtchn/close-free' matches no case: remove the entry or fix its id`,
    ]);
    // Without the whole tree, entries that match nothing are not judged.
    expect(applyExpectations([f], kvm61, []).problems).toEqual([]);
  });
  it('--expect=auto picks <target>.yaml and <target>-<series>.yaml when present', () => {
    const d = mkdtempSync(join(tmpdir(), 'xconf-auto-'));
    writeFileSync(join(d, 'kvm-6.1.yaml'), '');
    writeFileSync(join(d, 'kvm.yaml'), '');
    expect(autoExpectationFiles(d, kvm61)).toEqual([join(d, 'kvm.yaml'), join(d, 'kvm-6.1.yaml')]);
    expect(autoExpectationFiles(d, [{ target: 'kvm', version: '6.12.1' }])).toEqual([join(d, 'kvm.yaml')]);
    expect(autoExpectationFiles(d, [{ target: 'model' }])).toEqual([]);
    // The qemu target runs on a KVM kernel: its own files first, then the kernel's.
    writeFileSync(join(d, 'qemu.yaml'), '');
    expect(autoExpectationFiles(d, targetLayers('qemu', { qemu_version: '10.0.2', kernel: '6.1.192' })))
      .toEqual([join(d, 'qemu.yaml'), join(d, 'kvm.yaml'), join(d, 'kvm-6.1.yaml')]);
  });
  it("on qemu the kernel's entries mark failures known but are never stale; qemu's own entries are", () => {
    const kernel = loadExpectations(good);
    const own = loadExpectations(file('qemu.yaml', 'target: qemu\ndivergences:\n  - id: "evtchn/close-free"\n    status: fail\n    reason: r\n    where: w\n  - id: "x/nothing"\n    status: fail\n    reason: r\n    where: w\n'));
    const layers = targetLayers('qemu', { qemu_version: '10.0.2', kernel: '6.1.192' });
    const known = { names: ['sched/poll-a[mode=32]', 'evtchn/close-free'], ids: ['sched/poll-a', 'evtchn/close-free'] };
    const failing = applyExpectations([kernel, own], layers, [mk('sched/poll-a[mode=32]', 'fail'), mk('evtchn/close-free', 'fail')], known);
    expect(failing.results.map((x) => x.status)).toEqual(['xfail', 'xfail']);
    expect(failing.problems).toEqual([expect.stringMatching(/qemu\.yaml:7: known divergence 'x\/nothing' matches no case/)]);
    const passing = applyExpectations([kernel, own], layers, [mk('sched/poll-a[mode=32]', 'pass'), mk('evtchn/close-free', 'pass')]);
    expect(passing.problems).toEqual([expect.stringMatching(/qemu\.yaml:3: known divergence 'evtchn\/close-free' now passes as evtchn\/close-free on qemu 10\.0\.2/)]);
    // A kernel file is not about qemu itself: without the layer, it does not apply.
    expect(applyExpectations([kernel], [{ target: 'qemu', version: '10.0.2' }], [mk('sched/poll-a[mode=32]', 'fail')]).results[0].status).toBe('fail');
  });
});

describe("the project's own expectations files", () => {
  it('load, and every entry names cases that exist in suites/', async () => {
    const { readdirSync } = await import('node:fs');
    const { loadPaths } = await import('../suite/loader.js');
    const { plan } = await import('../runner/plan.js');
    const cases = loadPaths(['suites']).cases;
    const names = plan(cases, {}).map((pc) => pc.name);
    const ids = cases.map((c) => c.id);
    const files = readdirSync('expectations').filter((f) => f.endsWith('.yaml'));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const e = loadExpectations(join('expectations', f));
      expect(f.startsWith(`${e.target}`)).toBe(true);
      for (const entry of e.entries) expect(names.some((n) => entry.match(n, '')) || ids.some((i) => entry.match('', i)), `${entry.source}`).toBe(true);
    }
  });
});
