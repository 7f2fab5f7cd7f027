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
    expect(f?.signature).toMatch(/^differential\|evtchn\.alloc_(many|unbound)\|/);
    expect(f!.trace.length).toBeLessThanOrEqual(3);
  });
  it('stops shrinking when told and keeps the failing sequence it had', async () => {
    const b = BROKEN_MODELS.find((x) => x.variant.name === 'evtchn-limit-off-by-one')!;
    const target = new ModelDriver('xen', b.variant);
    const ref = new ModelDriver('xen');
    let opened = 0;
    const targets: FuzzTargets = {
      sync: false,
      allowed: allowedOps('model', [await target.probe(), await ref.probe()]),
      openTarget: async (s) => { opened++; return driverSession(await target.open(s)); },
      openReference: async (s) => driverSession(await ref.open(s)),
    };
    const stats = { steps: 0, sequences: 0, ops: new Map<string, number>() };
    for (let seed = 1; seed < 20; seed++) {
      let unshrunk: number | undefined;
      let atFirst = 0;
      const f = await checkBatch(targets, {
        seed, runs: 50, maxCommands: 60, stats,
        onFirstFailure: (raw) => { unshrunk = raw.trace.length; atFirst = opened; },
        shrinkStopped: () => true,
      });
      if (!f) continue;
      // Not one shrink candidate ran: the finding is the first failing sequence, marked as cut.
      expect(opened).toBe(atFirst);
      expect(f.shrinkCut).toBe(true);
      expect(f.trace.length).toBe(unshrunk);
      expect(f.signature).toMatch(/^differential\|evtchn\.alloc_(many|unbound)\|/);
      return;
    }
    throw new Error('no finding in 19 seeds');
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
