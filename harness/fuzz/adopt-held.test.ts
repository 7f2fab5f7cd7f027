// KVM delivers the selector bits it holds for a vCPU after any exit it handles
// in-kernel, a host interrupt's included: on a live target the reference (model-kvm)
// takes them when the target shows them delivered in a step the vCPU ran, and only then.
import { describe, expect, it } from 'vitest';
import { ModelDriver } from '../drivers/model/model-driver.js';
import { kvmEnterGuest } from '../model/kvm-evtchn.js';
import { modelSession, type FuzzSession } from './exec.js';
import { FindingError, FuzzSequence, type StepStats } from './session.js';
import { sessionSetup } from './setup.js';
import type { FuzzStep } from './steps.js';

const st = (op: string, args: FuzzStep['args'] = {}): FuzzStep => ({ op, args, dom: 1, vcpu: 0, cpl: 0 });

/**
 * Both sides model-kvm; the target takes a "host interrupt" (an in-kernel exit the model
 * does not foresee) during `last` when `interrupt` is set, and `scribble` also changes a
 * byte the delivery does not explain.
 */
async function run(last: FuzzStep, o: { interrupt: boolean; liveClock?: boolean; scribble?: boolean }) {
  const setup = sessionSetup({ mode: 64, portLimit: 1023, maptrackFrames: 1 });
  const t = new ModelDriver('kvm').openNow(setup);
  const target: FuzzSession = modelSession(t);
  const reference = modelSession(new ModelDriver('kvm').openNow(setup));
  let now = false;
  const apply = target.apply;
  target.apply = (c) => {
    const out = apply(c);
    if (now && o.interrupt) kvmEnterGuest(t.model.domain(1)!.vcpu(0)!, true);
    if (now && o.scribble) t.model.domain(1)!.memory.setU8(0x80041, 1);
    return out;
  };
  const stats: StepStats = { steps: 0, sequences: 0, ops: new Map() };
  const seq = new FuzzSequence(setup, target, reference, stats, true, o.liveClock ?? true);
  // The event is held: raised while KVM has no vcpu_info for the vCPU, which then comes back.
  for (const s of [
    st('evtchn.bind_ipi', { vcpu: 0n }),
    st('kvm.xen_set_attr', { attr: 'vcpu_info', value: (1n << 64n) - 1n }),
    st('evtchn.send', { port: 1n }),
    st('kvm.xen_set_attr', { attr: 'vcpu_info', value: 0x80000n }),
  ]) await seq.execAsync(s);
  now = true;
  try {
    await seq.execAsync(last);
    return { stats, error: undefined };
  } catch (e) {
    if (!(e instanceof FindingError)) throw e;
    return { stats, error: e };
  }
}

describe('held events a live KVM delivered at an exit of its own', () => {
  it('are taken by the reference after a step the vCPU ran', async () => {
    const r = await run(st('xen.version', { cmd: 0n }), { interrupt: true });
    expect(r.error).toBeUndefined();
    expect(r.stats.adopted).toBe(1);
  });

  it('without the delivery there is nothing to take', async () => {
    const r = await run(st('xen.version', { cmd: 0n }), { interrupt: false });
    expect(r.error).toBeUndefined();
    expect(r.stats.adopted ?? 0).toBe(0);
  });

  it('are a finding after a host step (the vCPU did not run), on the model\'s own clock, or with other bytes changed', async () => {
    const host = await run(st('kvm.xen_get_attr', { attr: 'long_mode' }), { interrupt: true });
    expect(host.error?.disagreement.field).toMatch(/^memory\./);
    const model = await run(st('xen.version', { cmd: 0n }), { interrupt: true, liveClock: false });
    expect(model.error?.disagreement.field).toMatch(/^memory\./);
    const more = await run(st('xen.version', { cmd: 0n }), { interrupt: true, scribble: true });
    expect(more.error?.disagreement.field).toMatch(/^memory\./);
    for (const r of [host, model, more]) expect(r.stats.adopted ?? 0).toBe(0);
  });
});
