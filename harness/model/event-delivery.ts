// The contract between event producers (timers, SCHEDOP_poll, host sends) and
// the event-channel subsystem, so neither imports the other's internals.
// The event-channel subsystem provides it when its module loads.

import type { Domain, Vcpu } from './domain.js';

export interface EventChannelSubsystem {
  /** Raise `virq` for a vCPU as send_guest_vcpu_virq does; dropped if not bound. */
  sendVirq(vcpu: Vcpu, virq: number): void;
  /**
   * kvm_xen_set_evtchn_fast: set `port` pending for vCPU `vcpu` in the 2-level bitmaps
   * (upcall unless masked), whatever the port is bound to; KVM keeps no port table.
   */
  raisePort(vcpu: Vcpu, port: number): void;
  /** Whether `port` is pending (mask ignored); null if it is not a valid port in use. */
  portPending(d: Domain, port: number): boolean | null;
  /** Whether events are already deliverable to the vCPU (evtchn_upcall_pending set). */
  eventsDeliverable(vcpu: Vcpu): boolean;
  /** Called by poll/block code to learn about wake-ups: invoked when a port of `d` goes pending. */
  onPending(fn: (d: Domain, port: number) => void): void;
}

let provided: EventChannelSubsystem | null = null;

export function provideEventChannels(impl: EventChannelSubsystem): void {
  provided = impl;
}

export function eventChannels(): EventChannelSubsystem {
  if (!provided) throw new Error('the event-channel subsystem is not loaded');
  return provided;
}
