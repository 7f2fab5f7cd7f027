// Per-case isolation: a crashing or hanging case process costs that case only.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadPaths } from '../harness/suite/loader.js';
import { plan } from '../harness/runner/plan.js';
import { runIsolated } from '../harness/runner/isolate.js';

const worker = (n: string) => fileURLToPath(new URL(`./workers/${n}`, import.meta.url));

beforeAll(() => {
  if (!existsSync('dist/runner/case-worker.js')) execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
});

describe('isolated cases', () => {
  const pcs = plan(loadPaths(['suites/hypercall']).cases, { filter: 'hypercall/version-pagesize' });

  it('runs a case in a child process and returns its result', async () => {
    const r = await runIsolated(pcs[0], 'model', {}, fileURLToPath(new URL('../dist/runner/case-worker.js', import.meta.url)));
    expect(r.status).toBe('pass');
    expect(r.name).toBe(pcs[0].name);
    // What each step observed crosses the process boundary for differential runs.
    expect(r.steps.every((s) => s.status === 'pass' && typeof s.observed === 'object')).toBe(true);
    expect(r.steps.some((s) => typeof s.observed?.ret === 'string')).toBe(true);
  });

  it('reports a child killed by a signal as an error with the signal and the last step', async () => {
    const r = await runIsolated(pcs[0], 'model', {}, worker('crash-worker.mjs'));
    expect(r.status).toBe('error');
    expect(r.message).toMatch(/^the case's process died \(signal SIGSEGV\) after starting step 2 \(evtchn\.send\)/);
  });

  it('kills a child that never finishes and reports a timeout', async () => {
    const slow = { ...pcs[0], case: { ...pcs[0].case, timeout: 0.1 } };
    const r = await runIsolated(slow, 'model', {}, worker('hang-worker.mjs'));
    expect(r.status).toBe('error');
    expect(r.message).toMatch(/^timeout: .* was killed after starting step 1 \(hypercall\.raw\)/);
  }, 20_000);
});
