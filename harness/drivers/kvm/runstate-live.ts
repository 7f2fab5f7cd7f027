// KVM runstate attributes and the live torn-read race for the kvm driver.
// Semantics: arch/x86/kvm/xen.c (kvm_xen_vcpu_set_attr / kvm_xen_vcpu_get_attr
// RUNSTATE_CURRENT, RUNSTATE_DATA, RUNSTATE_ADJUST; kvm_xen_update_runstate,
// kvm_xen_update_runstate_guest) and arch/x86/kvm/x86.c (kvm_arch_vcpu_load ->
// KVM_REQ_STEAL_UPDATE -> kvm_xen_runstate_set_running).

import { DriverError } from '../../errors.js';
import type { Width } from '../../model/memory-layout.js';
import type { Domain, Vcpu } from '../../model/domain.js';
import { decodeRunstate, KVM_XEN_INVALID_GPA, placeKvmRunstate, RUNSTATE_INFO, runstateOf, type RunstateInfo } from '../../model/runstate.js';
import { areaConsistent, raceStates, type RaceOptions, type RaceResult } from '../../model/runstate-race.js';
import type { GuestVm, RunstateData } from './addon.js';
import { ioctlErrno } from './attr-live.js';
import type { GuestCommand, RunstateCounts } from './guest.js';

const U64 = (1n << 64n) - 1n;

/** KVM_XEN_VCPU_GET_ATTR RUNSTATE_DATA as a RunstateInfo. */
export function kvmRunstate(g: GuestVm, vcpu: number): RunstateInfo {
  const a = g.vcpus[vcpu].xenGetAttr('runstate_data');
  if (a.type !== 'runstate_data') throw new DriverError(`KVM answered attribute ${a.type} for RUNSTATE_DATA`, { code: 'EIO' });
  const n = (v: bigint | number) => BigInt(v);
  return {
    state: Number(n(a.state) & 0xffffffffn) | 0,
    entry: n(a.stateEntryTime),
    time: [n(a.timeRunning), n(a.timeRunnable), n(a.timeBlocked), n(a.timeOffline)],
  };
}

/** Where the VMM layer's model has each vCPU's KVM runstate area (RUNSTATE_ADDR; null: none). */
export function runstateAreas(d: Domain): Array<number | null> {
  return d.vcpus.map((v) => runstateOf(v).kvm);
}

/**
 * After the VMM layer served a hypercall: the vCPUs whose area its model placed, moved or
 * took away (VCPUOP_register_runstate_memory_area, which KVM leaves to the VMM), with the
 * address to give KVM (KVM_XEN_INVALID_GPA: none). QEMU hands each registration to KVM
 * (target/i386/kvm/xen-emu.c vcpuop_register_runstate_info -> RUNSTATE_ADDR).
 */
export function runstateForwarding(before: ReadonlyArray<number | null>, after: ReadonlyArray<number | null>): Array<{ vcpu: number; gpa: bigint }> {
  const out: Array<{ vcpu: number; gpa: bigint }> = [];
  after.forEach((a, vcpu) => {
    if (a !== before[vcpu]) out.push({ vcpu, gpa: a === null ? KVM_XEN_INVALID_GPA : BigInt(a) });
  });
  return out;
}

/**
 * KVM_XEN_VCPU_SET_ATTR RUNSTATE_ADDR for `v`; returns 0 or -errno. The VMM layer's model
 * follows without writing the area (KVM does: kvm_xen_vcpu_set_attr -> kvm_xen_update_runstate_guest):
 * at `gpa`, or none once KVM refused it (6.2+ deactivates on a failed activation).
 */
export function setRunstateAddr(g: GuestVm, v: Vcpu, gpa: bigint): bigint {
  const ret = ioctlErrno(() => g.vcpus[v.id].xenSetAttr({ type: 'runstate_addr', gpa }));
  placeKvmRunstate(v, ret === 0n && gpa !== KVM_XEN_INVALID_GPA ? Number(gpa) : null);
  return ret;
}

/** The OUT keys of runstate.get / host_set_*: the same as the model's; sum_ok is KVM's rule entry == sum(time) (u64). */
export function runstateOutOf(i: RunstateInfo): Record<string, bigint> {
  const sum = (i.time[0] + i.time[1] + i.time[2] + i.time[3]) & U64;
  return {
    state: BigInt(i.state), state_entry_time: i.entry,
    time_running: i.time[0], time_runnable: i.time[1], time_blocked: i.time[2], time_offline: i.time[3],
    sum_ok: sum === (i.entry & U64) ? 1n : 0n,
  };
}

/** RUNSTATE_DATA / RUNSTATE_ADJUST arguments of an op, as u64 bit patterns. */
export function runstateDataArg(a: Record<string, unknown>): RunstateData {
  const u = (k: string) => BigInt.asUintN(64, a[k] as bigint);
  return {
    state: u('state'), stateEntryTime: u('state_entry_time'),
    timeRunning: u('time_running'), timeRunnable: u('time_runnable'), timeBlocked: u('time_blocked'), timeOffline: u('time_offline'),
  };
}

export interface LiveRaceOptions extends RaceOptions {
  target: number;
  reader: number;
  /** Guest address of the target's runstate area (as set with RUNSTATE_ADDR). */
  area: number;
  width: Width;
  /** Reader iterations per runstate-check command, and commands per reader batch. */
  iterations?: number;
  commands?: number;
  /** Give up adding rounds after this long (the result then says what was seen). */
  budgetMs?: number;
  timeoutMs?: number;
}

/** Reader counts summed over its runstate-check commands. */
type ReaderTotals = RunstateCounts;

const tick = () => new Promise<void>((r) => setImmediate(r));

/**
 * The race for real: the reader vCPU runs the guest's runstate-check loop
 * (flag clear and entry time unchanged around the copy -> the snapshot must
 * satisfy entry == sum(time)) over the target's area on a pool thread, while
 * this thread makes the updates. Rounds repeat until `flips` updates were made
 * and the reader saw the area change, or the time budget is spent.
 */
export async function raceLive(g: GuestVm, o: LiveRaceOptions): Promise<RaceResult> {
  const layout = o.width === 64 ? 'native' : 'compat';
  const iterations = o.iterations ?? 2000;
  const commands = o.commands ?? 8;
  const readerQueue: GuestCommand[] = Array.from({ length: commands }, () => ({ op: 'runstate-check', src: o.area, layout, iterations }));
  const totals: ReaderTotals = { ok: 0n, busy: 0n, raced: 0n, torn: 0n, changes: 0n, iterations: 0n };
  const t0 = performance.now();
  const budget = o.budgetMs ?? 20_000;
  let flips = 0;
  for (let round = 0; round === 0 || ((flips < o.flips || totals.changes === 0n) && performance.now() - t0 < budget); round++) {
    let readerDone = false;
    const reader = g.run(o.reader, readerQueue, { concurrent: true, timeoutMs: o.timeoutMs }).finally(() => { readerDone = true; });
    // Let the pool thread enter KVM_RUN before the first update.
    await tick();
    if (o.writer === 'current') {
      // KVM_XEN_VCPU_SET_ATTR takes the target's vcpu->mutex: fine, the target is not running.
      while (!readerDone) {
        g.vcpus[o.target].xenSetAttr({ type: 'runstate_current', state: raceStates(o.states, o.writer, flips) });
        flips++;
        await tick();
      }
    } else {
      // Every KVM_RUN entry of the target switches it to running and rewrites the area;
      // a `log` command is a port exit the native loop answers by re-entering KVM_RUN.
      const logs: GuestCommand[] = Array.from({ length: 100 }, (_, i) => ({ op: 'log', value: i }));
      while (!readerDone) {
        const t = await g.run(o.target, logs, { concurrent: true, timeoutMs: o.timeoutMs });
        if (t.status !== 'done') throw new DriverError(`race: the target vCPU ${o.target} stopped (${t.status})`, { code: 'EIO' });
        flips += t.kvmRuns;
      }
    }
    const r = await reader;
    if (r.status !== 'done') throw new DriverError(`race: the reader vCPU ${o.reader} stopped (${r.status})`, { code: 'EIO' });
    for (const c of r.results) {
      const s = c.runstate;
      if (!s) throw new DriverError('race: a runstate-check command gave no counts', { code: 'EIO' });
      totals.ok += s.ok;
      totals.busy += s.busy;
      totals.raced += s.raced;
      totals.torn += s.torn;
      totals.changes += s.changes;
      totals.iterations += s.iterations;
    }
  }
  const fin = decodeRunstate(new Uint8Array(g.vm.read(o.area, RUNSTATE_INFO[o.width].size)), o.width);
  return {
    tornAccepted: Number(totals.torn),
    reads: Number(totals.iterations),
    changes: Number(totals.changes),
    flips,
    finalConsistent: areaConsistent(fin),
    finalState: fin.state,
  };
}
