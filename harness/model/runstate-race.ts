// A torn-read race on a KVM runstate area, as the model sees it: a reader on
// another vCPU follows the XEN_RUNSTATE_UPDATE protocol (Linux
// xen_get_runstate_snapshot_cpu_delta) while the host changes the target
// vCPU's runstate `flips` times. The model replays every intermediate memory
// state of each update (runstate-torn-read.ts) instead of racing for real.
//
// Writers (arch/x86/kvm/xen.c):
// - 'current': KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_CURRENT, cycling through `states`
//   (kvm_xen_vcpu_set_attr -> kvm_xen_update_runstate, which writes the area
//   from Linux 6.2, 5ec3289b31ab);
// - 'run': the target vCPU re-entering KVM_RUN, each entry a switch to
//   running (kvm_arch_vcpu_load -> KVM_REQ_STEAL_UPDATE -> record_steal_time
//   -> kvm_xen_runstate_set_running).
// Time passes between updates on a live host; the model advances its clock by
// `stepNs` before each one so consecutive entry times differ.

import type { Domain, Vcpu, XenModel } from './domain.js';
import { decodeRunstate, RUNSTATE, RUNSTATE_INFO, runstateChange, timeSum, XEN_RUNSTATE_UPDATE, type RunstateInfo } from './runstate.js';
import { checkUpdate, runstateGuard, same } from './runstate-torn-read.js';

export type RaceWriter = 'current' | 'run';

export interface RaceOptions {
  flips: number;
  states: readonly number[];
  writer: RaceWriter;
  stepNs?: bigint;
}

/** What a race reports, on the model and on a live KVM alike (the op's OUT keys). */
export interface RaceResult {
  /** Snapshots a protocol reader accepted (flag clear, entry time unchanged) that are not a committed image. */
  tornAccepted: number;
  /** Snapshots read (live: reader iterations; model: intermediate states replayed). */
  reads: number;
  /** Area changes the reader could see (live: entry-time changes between reads; model: updates that changed the area). */
  changes: number;
  /** Updates the writer made. */
  flips: number;
  /** The area after the race: flag clear, state <= offline, state_entry_time == sum(time) (the KVM rule). */
  finalConsistent: boolean;
  finalState: number;
}

/** The KVM whole-area invariants of a quiescent runstate image. */
export function areaConsistent(i: RunstateInfo): boolean {
  return (i.entry & XEN_RUNSTATE_UPDATE) === 0n && i.state >= 0 && i.state <= RUNSTATE.offline && timeSum(i) === i.entry;
}

export function raceStates(states: readonly number[], writer: RaceWriter, k: number): number {
  return writer === 'run' ? RUNSTATE.running : states[k % states.length];
}

/** Run the race on the model. Returns an error message if the vCPU has no runstate area. */
export function raceModel(m: XenModel, dom: Domain, vcpu: Vcpu, o: RaceOptions): RaceResult | string {
  const base = dom.areas.get(`runstate/${vcpu.id}`);
  if (base === undefined) return 'no runstate area registered for this vCPU';
  const L = RUNSTATE_INFO[dom.width];
  const guard = runstateGuard(L.fields.state_entry_time.offset);
  const r: RaceResult = { tornAccepted: 0, reads: 0, changes: 0, flips: 0, finalConsistent: false, finalState: 0 };
  for (let k = 0; k < o.flips; k++) {
    m.advance(o.stepNs ?? 1000n);
    const before = dom.memory.read(base, L.size);
    const t = checkUpdate(dom.memory, base, L.size, guard, () => runstateChange(m, vcpu, raceStates(o.states, o.writer, k)));
    r.tornAccepted += t.acceptedTorn;
    r.reads += t.states;
    r.flips++;
    if (!same(before, dom.memory.read(base, L.size))) r.changes++;
  }
  const fin = decodeRunstate(dom.memory.read(base, L.size), dom.width);
  r.finalConsistent = areaConsistent(fin);
  r.finalState = fin.state;
  return r;
}

/** OUT keys of runstate.race_check. */
export const RACE_OUT = ['torn_accepted', 'accepted_any', 'reads', 'changes', 'changed', 'flips', 'final_consistent', 'final_state'] as const;

export function raceOut(r: RaceResult): Record<(typeof RACE_OUT)[number], bigint> {
  return {
    torn_accepted: BigInt(r.tornAccepted), accepted_any: r.tornAccepted > 0 ? 1n : 0n,
    reads: BigInt(r.reads), changes: BigInt(r.changes), changed: r.changes > 0 ? 1n : 0n,
    flips: BigInt(r.flips), final_consistent: r.finalConsistent ? 1n : 0n, final_state: BigInt(r.finalState),
  };
}

export const RACE_MAX_FLIPS = 100_000;

/** Check the op's arguments; the same on every target. */
export function raceArgs(a: { flips: bigint; states?: bigint[]; writer?: RaceWriter }): RaceOptions | string {
  if (a.flips < 1n || a.flips > BigInt(RACE_MAX_FLIPS)) return `flips must be 1..${RACE_MAX_FLIPS}, got ${a.flips}`;
  const states = (a.states ?? [BigInt(RUNSTATE.runnable), BigInt(RUNSTATE.blocked)]).map(Number);
  if (states.some((s) => !(s >= RUNSTATE.running && s <= RUNSTATE.offline))) return `states must be RUNSTATE_running..RUNSTATE_offline, got [${states.join(', ')}]`;
  return { flips: Number(a.flips), states, writer: a.writer ?? 'current' };
}
