// The one interface every target implements. A driver says what it can do
// (probe) and opens sessions that apply target-neutral Actions.

import type { Action, Outcome, StepPlacement } from '../ops/types.js';
import type { AreaView } from '../model/areas.js';
import type { Width } from '../model/memory-layout.js';

export interface Capabilities {
  /** Capabilities the target has. */
  has: ReadonlySet<string>;
  /** For capabilities it lacks: why (e.g. "KVM_CAP_XEN_HVM lacks EVTCHN_SEND (bit 5)"). */
  missing: ReadonlyMap<string, string>;
  /** Facts recorded in reports (kernel version, KVM_CAP_XEN_HVM value, model flavour). */
  properties: Readonly<Record<string, string>>;
  /**
   * A real hypervisor's own version ("4.17.7"): cases that set no setup.xen_version run
   * with it (and so does their differential reference); a case asking another one skips.
   */
  fixedXenVersion?: string;
}

export interface DomainSetup {
  id: number;
  vcpus: number;
  privileged: boolean;
  memoryBytes: number;
  sharedInfo: number | null;
  hypercallPage: number | null;
  limits: Record<string, number>;
}

export interface SessionSetup {
  mode: Width;
  cpu?: 'intel' | 'amd';
  xenVersion: { major: number; minor: number; extra: string };
  /** Scratch page of vCPU n of each domain: scratch + n * 4096. */
  scratch: number;
  domains: DomainSetup[];
}

export interface Session extends AsyncDisposable {
  apply(action: Action, at: StepPlacement): Promise<Outcome>;
  read(dom: number, gpa: number, len: number): Promise<Uint8Array>;
  /** Where the domain's guest-visible areas are, and its latched width. */
  areas(dom: number): AreaView;
}

export interface Driver {
  readonly name: string;
  probe(): Promise<Capabilities>;
  open(setup: SessionSetup): Promise<Session>;
}
