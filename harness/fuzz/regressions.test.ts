// What the fuzzer found in the model, kept as regressions.
import { describe, expect, it } from 'vitest';
import { ModelDriver } from '../drivers/model/model-driver.js';
import { modelSession } from './exec.js';
import { FuzzSequence } from './session.js';
import { sessionSetup } from './setup.js';
import type { FuzzStep } from './steps.js';

const step = (op: string, args: FuzzStep['args'] = {}): FuzzStep => ({ op, args, dom: 1, vcpu: 0, cpl: 0 });

describe('fuzz findings in the model', () => {
  it('runstate.check_atomic on an area registered outside guest RAM reports a fault, not an exception', () => {
    // Found by `xconf fuzz` (exception|runstate.check_atomic|exception|outcome->GuestFault).
    const setup = sessionSetup({ mode: 64, portLimit: 63, maptrackFrames: 1 });
    const seq = new FuzzSequence(setup, modelSession(new ModelDriver('xen').openNow(setup)), undefined, { steps: 0, sequences: 0, ops: new Map() });
    seq.exec(step('vcpu.register_runstate', { addr: 0xfff00000n }));
    expect(seq.trace[0].outcome.ret).toBe(0n);
    seq.exec(step('runstate.check_atomic', { state: 1n }));
    expect(seq.trace[1].outcome.fault).toMatch(/outside guest RAM/);
  });
});
