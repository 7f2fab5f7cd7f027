// The Driver/Session path (kvm, and xen and qemu once they exist) runs the same
// commands through fc.asyncModelRun; here with model drivers behind the generic
// Session interface, one of them broken, so the path is exercised on any host.
import { describe, expect, it } from 'vitest';
import { ModelDriver } from '../drivers/model/model-driver.js';
import { checkBatch, type FuzzTargets } from './engine.js';
import { driverSession } from './exec.js';
import { allowedOps } from './targets.js';
import { BROKEN_MODELS } from './variants.js';

describe('fuzz through the Driver/Session interface', () => {
  it('finds and shrinks a disagreement of a broken target with its reference', async () => {
    const b = BROKEN_MODELS.find((x) => x.variant.name === 'evtchn-limit-off-by-one')!;
    const target = new ModelDriver('xen', b.variant);
    const ref = new ModelDriver('xen');
    const targets: FuzzTargets = {
      sync: false,
      allowed: allowedOps('model', [await target.probe(), await ref.probe()]),
      openTarget: async (s) => driverSession(await target.open(s)),
      openReference: async (s) => driverSession(await ref.open(s)),
    };
    const stats = { steps: 0, sequences: 0, ops: new Map<string, number>() };
    let f;
    for (let seed = 1; !f && seed < 20; seed++) f = await checkBatch(targets, { seed, runs: 50, maxCommands: 60, stats });
    expect(f?.signature).toMatch(/^differential\|evtchn\.alloc_many\|/);
    expect(f!.trace.length).toBeLessThanOrEqual(3);
  });
  it('runs clean when target and reference agree', async () => {
    const d = new ModelDriver('kvm');
    const targets: FuzzTargets = {
      sync: false,
      allowed: allowedOps('model-kvm', [await d.probe()]),
      openTarget: async (s) => driverSession(await d.open(s)),
      openReference: async (s) => driverSession(await d.open(s)),
    };
    const stats = { steps: 0, sequences: 0, ops: new Map<string, number>() };
    expect(await checkBatch(targets, { seed: 3, runs: 30, maxCommands: 40, stats })).toBeUndefined();
    expect(stats.steps).toBeGreaterThan(100);
  });
});
