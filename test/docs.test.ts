// The case-format documentation shows what works: its examples load and its
// filter patterns select cases.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadPaths } from '../harness/suite/loader.js';
import { plan } from '../harness/runner/plan.js';
import { runPlan } from '../harness/runner/run.js';
import { ModelDriver } from '../harness/drivers/model/model-driver.js';

const doc = readFileSync('suites/README.md', 'utf8');
const section = (title: string) => doc.slice(doc.indexOf(title), doc.indexOf('\n## ', doc.indexOf(title) + 1) >>> 0 || undefined);

describe('suites/README.md', () => {
  it('every filter pattern in "Choosing cases" selects shipped cases', () => {
    const cases = loadPaths(['suites']).cases;
    const rows = section('## Choosing cases').split('\n').filter((l) => l.startsWith('| `'));
    const patterns = rows.flatMap((r) => [...r.split('|')[1].matchAll(/`([^`]+)`/g)].map((m) => m[1])).filter((p) => !p.startsWith('\\'));
    expect(patterns.length).toBeGreaterThanOrEqual(6);
    for (const p of patterns) expect(plan(cases, { filter: p }).length, p).toBeGreaterThan(0);
    expect(plan(cases, { filter: 'hypercall/xen-version-version[mode=32]' }).map((c) => c.name)).toEqual(['hypercall/xen-version-version[mode=32]']);
  });

  it('documents $var in memory paths and grant-frame placement, and the grant example runs on the model', async () => {
    expect(section('## Memory paths')).toMatch(/evtchn_word\[\$port\]\.value/);
    const grant = section('### Grant frames');
    const steps = /```yaml\n([\s\S]*?)```/.exec(grant)![1];
    const root = join(mkdtempSync(join(tmpdir(), 'xconf-doc-')), 'suites');
    mkdirSync(root);
    // As written (v1): the status-frame step is refused (-EINVAL, not checked) and the entry reads back.
    writeFileSync(join(root, 'grant.yaml'), `description: doc example\nrequires: [gnttab.v1]\nsteps:\n${steps}`);
    const r = loadPaths([root]);
    expect(r.problems).toEqual([]);
    const run = await runPlan(plan(r.cases, {}), new ModelDriver());
    expect(run.results.map((x) => [x.status, x.message])).toEqual([['pass', undefined]]);
  });
});
