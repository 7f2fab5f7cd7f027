// Deliberately broken variants of the model, for `xconf selfcheck` only: each
// re-introduces one class of bug so the fuzzer can show it catches it. A model
// built without a variant (every normal run) behaves as the real model. The
// factory can be taken once; harness/fuzz/variants.ts takes it at load, so no
// other module can build a variant object.

import type { RunstateWriter } from './runstate.js';

export type ModelBug =
  /** SCHEDOP_poll (KVM path) does not bound-check the ports (bug class 7). */
  | 'poll_port_unchecked'
  /** Hypercalls from CPL > 0 are served (bug class 8). */
  | 'cpl_accepted'
  /** EVTCHNOP_close leaves the port pending: a stale event is delivered later. */
  | 'close_keeps_pending'
  /** get_free_port allows one port past max_evtchn_port (boundary off-by-one). */
  | 'evtchn_limit_off_by_one'
  /** The maptrack frame limit is not enforced: unlimited grant mappings. */
  | 'maptrack_unlimited'
  /** Runstate updates written by a faulty writer (bug class 2). */
  | 'runstate_writer';

export interface ModelVariant {
  readonly name: string;
  readonly bug: ModelBug;
  readonly runstateWriter?: RunstateWriter;
}

const issued = new WeakSet<object>();
let taken = false;

/** The one factory of variant objects; a second call throws. */
export function takeVariantFactory(): (v: ModelVariant) => ModelVariant {
  if (taken) throw new Error('the model variant factory is already taken');
  taken = true;
  return (v) => {
    const frozen = Object.freeze({ ...v });
    issued.add(frozen);
    return frozen;
  };
}

/** A variant object built by the factory (anything else is refused by the model). */
export function isIssuedVariant(v: unknown): v is ModelVariant {
  return typeof v === 'object' && v !== null && issued.has(v);
}

/** Whether a model carries bug `b` (false for every normal model). */
export function hasBug(m: { config: { variant?: ModelVariant } }, b: ModelBug): boolean {
  return m.config.variant?.bug === b;
}
