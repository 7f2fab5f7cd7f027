// The XSA-300 cases must have teeth: run them through the real loader and
// runner, once as written (conforming backends: they pass) and once with every
// domain forced to the pre-fix backend policy (unlimited ballooning: they fail).

import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { loadPaths } from '../suite/loader.js';
import { plan } from '../runner/plan.js';
import { runPlan } from '../runner/run.js';
import { ModelDriver } from '../drivers/model/model-driver.js';
import type { Capabilities, Driver, Session, SessionSetup } from '../drivers/driver.js';
import { BACKEND_POLICY } from './backend-memory.js';

const suite = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'suites', 'gnttab');

/** The model, with a setup override: every domain's backend_policy forced. */
class ForcedPolicyDriver implements Driver {
  readonly name = 'model-forced-policy';
  private readonly inner = new ModelDriver('xen');
  constructor(private readonly policy: number) {}
  probe(): Promise<Capabilities> {
    return this.inner.probe();
  }
  open(setup: SessionSetup): Promise<Session> {
    return this.inner.open({
      ...setup,
      domains: setup.domains.map((d) => ({ ...d, limits: { ...d.limits, backend_policy: this.policy } })),
    });
  }
}

function xsaCases() {
  const loaded = loadPaths([suite]);
  expect(loaded.problems).toEqual([]);
  const cases = loaded.cases.filter((c) => c.id.includes('xsa300'));
  return { cases, planned: plan(cases, {}) };
}

describe('XSA-300 cases', () => {
  it('are at least ten, flagged xsa', () => {
    const { cases } = xsaCases();
    expect(cases.length).toBeGreaterThanOrEqual(10);
    for (const c of cases) expect(c.flags).toContain('xsa');
  });

  it('pass on the model as written (conforming backend policies)', async () => {
    const { planned } = xsaCases();
    const sum = await runPlan(planned, new ModelDriver('xen'));
    const bad = sum.results.filter((r) => r.status !== 'pass').map((r) => `${r.name}: ${r.status} ${r.message ?? ''}`);
    expect(bad).toEqual([]);
  });

  it('every one fails when the backend balloons without limit (the vulnerable configuration)', async () => {
    const { planned } = xsaCases();
    const sum = await runPlan(planned, new ForcedPolicyDriver(BACKEND_POLICY.balloon_unlimited));
    expect(sum.results.length).toBe(planned.length);
    const passing = sum.results.filter((r) => r.status !== 'fail').map((r) => `${r.name}: ${r.status} ${r.message ?? ''}`);
    expect(passing).toEqual([]);
  });

  it('forcing the policy a case already uses changes nothing (the override itself is sound)', async () => {
    const { cases } = xsaCases();
    const reserveOnly = cases.filter((c) => c.id === 'xsa300-flood-reserve');
    const sum = await runPlan(plan(reserveOnly, {}), new ForcedPolicyDriver(BACKEND_POLICY.balloon_reserve));
    expect(sum.results.every((r) => r.status === 'pass')).toBe(true);
  });
});
