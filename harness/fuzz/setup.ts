// The guest a fuzz sequence runs in: both guest widths, two domains (the
// first with two vCPUs), and limits small enough that sequences reach them
// (max_evtchn_port, one maptrack frame). The same setup is written into the
// YAML finding, so a replay builds the same guest.

import fc from 'fast-check';
import type { SessionSetup } from '../drivers/driver.js';
import { DEFAULTS } from '../runner/run-case.js';
import type { StepContext } from './steps.js';

export interface FuzzSetup {
  mode: 32 | 64;
  /** The first domain's max_evtchn_port. */
  portLimit: number;
  /** The first domain's max_maptrack_frames. */
  maptrackFrames: number;
}

export const DOMS = [1, 2] as const;
export const VCPUS = 2;

export const setupArb: fc.Arbitrary<FuzzSetup> = fc.record({
  mode: fc.constantFrom<32 | 64>(64, 32),
  portLimit: fc.constantFrom(63, 1023),
  maptrackFrames: fc.constant(1),
});

export function stepContext(s: FuzzSetup): StepContext {
  return { doms: DOMS, vcpus: VCPUS, portLimit: s.portLimit };
}

export function sessionSetup(s: FuzzSetup): SessionSetup {
  const [maj, min] = DEFAULTS.xenVersion.split('.').map(Number);
  const dom = (id: number, vcpus: number, limits: Record<string, number>) => ({
    id, vcpus, privileged: false, memoryBytes: DEFAULTS.memoryBytes,
    sharedInfo: DEFAULTS.sharedInfo, hypercallPage: DEFAULTS.hypercallPage, limits,
  });
  return {
    mode: s.mode,
    xenVersion: { major: maj, minor: min, extra: '.0' },
    scratch: DEFAULTS.scratch,
    domains: [
      dom(DOMS[0], VCPUS, { max_evtchn_port: s.portLimit, max_maptrack_frames: s.maptrackFrames }),
      dom(DOMS[1], 1, {}),
    ],
  };
}

/** The `setup:` block of the YAML case. */
export function yamlSetup(s: FuzzSetup): Record<string, unknown> {
  return {
    mode: s.mode,
    domains: [
      { id: DOMS[0], vcpus: VCPUS, limits: { max_evtchn_port: s.portLimit, max_maptrack_frames: s.maptrackFrames } },
      { id: DOMS[1], vcpus: 1 },
    ],
  };
}
