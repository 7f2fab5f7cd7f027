import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readJunit, parseJunit } from '../junit-read.js';
import { buildMatrix } from './model.js';
import { matrixHtml } from './html.js';
import { matrixMd } from './md.js';
import { junitXml } from '../junit.js';
import type { RunSummary } from '../../runner/results.js';

const fixtures = () => ['model', 'live-kvm-6.1', 'live-kvm-6.12'].map((f) => readJunit(`fixtures/reports/${f}.xml`));

describe('conformance matrix', () => {
  it('one column per target and kernel, in order; suites down; shards fill one column', () => {
    const m = buildMatrix(fixtures());
    expect(m.columns.map((c) => c.key)).toEqual(['model', 'kvm 6.1.192', 'kvm 6.12.118']);
    expect(m.suites.map((s) => s.name)).toEqual(['hypercall', 'live-kvm', 'sched']);
    expect(m.columns[2].coverage).toBe('arch/x86/kvm/xen.c 68.4% lines');
    const model = fixtures()[0];
    const halves = [0, 1].map((k) => ({ ...model, suites: model.suites.map((s) => ({ ...s, cases: s.cases.filter((_, i) => i % 2 === k) })) }));
    expect(buildMatrix(halves).columns.map((c) => c.counts)).toEqual([m.columns[0].counts]);
  });
  it('every case lands in exactly one cell of its column, whatever the statuses', () => {
    const st = fc.constantFrom('pass', 'fail', 'error', 'skip', 'xfail') as fc.Arbitrary<'pass'>;
    fc.assert(fc.property(fc.array(st, { minLength: 1, maxLength: 30 }), (statuses) => {
      const run: RunSummary = {
        target: 'kvm', seed: '0', capabilities: [], properties: {}, startedAt: '2026-01-01T00:00:00.000Z', durationMs: 0,
        results: statuses.map((s, i) => ({
          id: `evtchn/c${i}`, variant: '', name: `evtchn/c${i}`, file: 'f', description: '', spec: [], status: s, message: `why ${i}`, durationMs: 0, steps: [],
          divergence: s === ('xfail' as string) ? { expected: 'fail', reason: 'r', where: 'w', source: 's' } : undefined,
        })),
      };
      const m = buildMatrix([parseJunit(junitXml(run), 'r.xml')]);
      const c = m.columns[0].counts;
      expect(c.total).toBe(statuses.length);
      for (const s of ['pass', 'fail', 'error', 'skip', 'xfail'] as const) expect(c[s]).toBe(statuses.filter((x) => x === s).length);
      const html = matrixHtml(m);
      const links = [...html.matchAll(/href="#(c\d+)"/g)].map((x) => x[1]);
      expect(links.length).toBe(statuses.filter((s) => s !== 'pass').length);
      for (const id of links) expect(html).toContain(`<dt id="${id}"`);
    }), { numRuns: 50 });
  });
  it('a run on real Xen gets a column named by the hypervisor version, after the kvm kernels', () => {
    const run: RunSummary = {
      target: 'xen', seed: '0', capabilities: [], properties: { target: 'xen', xen_version: '4.17.7', dom0_kernel: '6.1.0-41-amd64' },
      startedAt: '2026-01-01T00:00:00.000Z', durationMs: 0,
      results: [{ id: 'evtchn/c', variant: '', name: 'evtchn/c', file: 'f', description: '', spec: [], status: 'pass', durationMs: 0, steps: [] }],
    };
    const m = buildMatrix([...fixtures(), parseJunit(junitXml(run), 'xen.xml')]);
    expect(m.columns.map((c) => c.key)).toEqual(['model', 'kvm 6.1.192', 'kvm 6.12.118', 'xen Xen 4.17.7']);
    expect(matrixMd(m, { htmlHref: 'matrix.html' })).toMatch(/^\| xen \| Xen 4\.17\.7 \| 1 \| 0 \| 0 \| 0 \| 0 \| 1 \|  \|$/m);
    expect(matrixHtml(m)).toContain('xen (Xen 4.17.7)');
  });
  it('Markdown: a summary row per column, a table per suite, cells linking to the page', () => {
    const md = matrixMd(buildMatrix(fixtures()), { htmlHref: 'matrix.html' });
    expect(md).toMatch(/^\| kvm \| 6\.1\.192 \| 199 \| 1 \| 0 \| 3 \| 5 \| 208 \|  \|$/m);
    expect(md).toMatch(/^## hypercall \(109\)$/m);
    expect(md).toMatch(/\[❌ fail\]\(matrix\.html#c\d+\)/);
  });
  it('escapes what it prints', () => {
    const m = buildMatrix(fixtures());
    m.suites[0].rows[0].name = '<script>x</script>';
    expect(matrixHtml(m)).not.toContain('<script>');
  });
});
