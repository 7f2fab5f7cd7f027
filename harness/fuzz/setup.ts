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
  /** One domain only (targets without domains.multi): the peer is the domain itself. */
  single?: boolean;
  /** vCPUs of the first domain (default VCPUS). */
  vcpus?: number;
  /** The target sets no domain limits (QEMU): its own port limit, which `portLimit` then is. */
  fixedLimits?: boolean;
}

/** What the targets offer that the setup may use. */
export interface SetupShape {
  multi: boolean;
  mode32: boolean;
  /** Hypercalls at CPL 3 in 64-bit and in 32-bit guests (hypercall.cpl, hypercall.cpl32); both when absent. */
  cpl3?: { mode64: boolean; mode32: boolean };
  /** The target has a dom0 of its own (real Xen), which the model's setup does not. */
  ownDom0?: boolean;
  /** The target runs one vCPU per domain (the qemu test guest). */
  oneVcpu?: boolean;
  /** The target has no setting for domain limits (QEMU's Xen emulation). */
  fixedLimits?: boolean;
  /** Optional KVM features every target has (steps-kvm.ts KVM_FEATURE_CAPS): values needing others are not generated. */
  kvmFeatures?: string[];
}

export const DOMS = [1, 2] as const;
export const VCPUS = 2;

/** The 2-level ABI's highest port (EVTCHN_2L_NR_CHANNELS - 1) for a guest width: QEMU's only limit. */
const TWO_LEVEL_LAST_PORT = { 64: 4095, 32: 1023 } as const;

export function setupArbFor(shape: SetupShape): fc.Arbitrary<FuzzSetup> {
  return fc.record({
    mode: shape.mode32 ? fc.constantFrom<32 | 64>(64, 32) : fc.constant<64>(64),
    portLimit: fc.constantFrom(63, 1023),
    maptrackFrames: fc.constant(1),
  }).map((s) => {
    let out: FuzzSetup = shape.multi ? s : { ...s, single: true };
    if (shape.oneVcpu) out = { ...out, vcpus: 1 };
    if (shape.fixedLimits) out = { ...out, fixedLimits: true, portLimit: TWO_LEVEL_LAST_PORT[s.mode] };
    return out;
  });
}

export const setupArb = setupArbFor({ multi: true, mode32: true });

export function stepContext(s: FuzzSetup): StepContext {
  return { doms: s.single ? [DOMS[0], DOMS[0]] : DOMS, vcpus: s.vcpus ?? VCPUS, portLimit: s.portLimit };
}

function firstLimits(s: FuzzSetup): Record<string, number> {
  return s.fixedLimits ? {} : { max_evtchn_port: s.portLimit, max_maptrack_frames: s.maptrackFrames };
}

/** `version`: a target's own Xen version (the xen target's hypervisor), which its reference follows. */
export function sessionSetup(s: FuzzSetup, version?: SessionSetup['xenVersion']): SessionSetup {
  const [maj, min] = DEFAULTS.xenVersion.split('.').map(Number);
  const dom = (id: number, vcpus: number, limits: Record<string, number>) => ({
    id, vcpus, privileged: false, memoryBytes: DEFAULTS.memoryBytes,
    sharedInfo: DEFAULTS.sharedInfo, hypercallPage: DEFAULTS.hypercallPage, limits,
  });
  return {
    mode: s.mode,
    xenVersion: version ?? { major: maj, minor: min, extra: '.0' },
    scratch: DEFAULTS.scratch,
    domains: [
      dom(DOMS[0], s.vcpus ?? VCPUS, firstLimits(s)),
      ...(s.single ? [] : [dom(DOMS[1], 1, {})]),
    ],
  };
}

/** The `setup:` block of the YAML case. */
export function yamlSetup(s: FuzzSetup): Record<string, unknown> {
  return {
    mode: s.mode,
    domains: [
      { id: DOMS[0], vcpus: s.vcpus ?? VCPUS, ...(s.fixedLimits ? {} : { limits: firstLimits(s) }) },
      ...(s.single ? [] : [{ id: DOMS[1], vcpus: 1 }]),
    ],
  };
}
