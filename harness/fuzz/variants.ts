// The deliberately broken models `xconf selfcheck` fuzzes: one per bug class of
// spec/kvm-xen-bugs-and-scope.md the model can express, the faulty runstate
// writers, an unlimited grant mapping and a boundary off-by-one. This module
// takes the model's one variant factory at load, so nothing else can build a
// variant; `xconf run` and `xconf fuzz` never import it.

import { takeVariantFactory, type ModelVariant } from '../model/variant.js';

const make = takeVariantFactory();

export interface BrokenModel {
  variant: ModelVariant;
  /** The model target it breaks (and the reference it is compared with). */
  base: 'model' | 'model-kvm';
  /** What real bug it stands for. */
  bugClass: string;
}

export const BROKEN_MODELS: readonly BrokenModel[] = [
  { base: 'model-kvm', bugClass: '#7 bounds on guest-supplied ports (SCHEDOP_poll)', variant: make({ name: 'poll-port-unchecked', bug: 'poll_port_unchecked' }) },
  { base: 'model', bugClass: '#8 privilege (hypercalls from CPL > 0 served)', variant: make({ name: 'cpl-accepted', bug: 'cpl_accepted' }) },
  { base: 'model', bugClass: 'lost or duplicated event (close leaves the port pending)', variant: make({ name: 'close-keeps-pending', bug: 'close_keeps_pending' }) },
  { base: 'model', bugClass: 'boundary off-by-one (max_evtchn_port + 1 allocated)', variant: make({ name: 'evtchn-limit-off-by-one', bug: 'evtchn_limit_off_by_one' }) },
  { base: 'model', bugClass: 'unlimited grant mapping (maptrack frame limit ignored)', variant: make({ name: 'maptrack-unlimited', bug: 'maptrack_unlimited' }) },
  { base: 'model', bugClass: '#2 runstate writer: update flag left out', variant: make({ name: 'runstate-no-flag', bug: 'runstate_writer', runstateWriter: 'no_flag' }) },
  { base: 'model', bugClass: '#2 runstate writer: flag cleared before the times', variant: make({ name: 'runstate-flag-cleared-early', bug: 'runstate_writer', runstateWriter: 'flag_cleared_early' }) },
  { base: 'model', bugClass: '#2 runstate writer: whole-word flag stores (pre-6.2 KVM)', variant: make({ name: 'runstate-whole-word-flag', bug: 'runstate_writer', runstateWriter: 'whole_word_flag' }) },
];
