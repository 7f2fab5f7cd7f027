// Ops for vCPU runstate, time, timers and HYPERVISOR_vcpu_op.
// Struct layouts: xen/include/public/vcpu.h; KVM attributes: arch/x86/kvm/xen.c
// (kvm_xen_vcpu_set_attr) and include/uapi/linux/kvm.h (struct kvm_xen_vcpu_attr).

import { z } from 'zod';
import { defineConstants } from './constants.js';
import { defineOp, int, reader, structCall, StructWriter, type Action, type OpContext, type Outcome, type OutValue } from './types.js';
import { HYPERVISOR } from '../model/hypercall.js';
import { SHARED_INFO, VCPU_TIME_INFO } from '../model/memory-layout.js';
import type { Vcpu, XenModel } from '../model/domain.js';
import {
  hostAdjust, hostSetAddr, hostSetCurrent, hostSetData, KVM_XEN_INVALID_GPA, RUNSTATE, RUNSTATE_INFO,
  runstateChange, runstateOf, sumRuleHolds, XEN_RUNSTATE_UPDATE,
} from '../model/runstate.js';
import { checkUpdate, runstateGuard, versionGuard, type TornReport } from '../model/runstate-torn-read.js';
import { raceArgs, raceModel, raceOut, RACE_OUT } from '../model/runstate-race.js';
import { updateVcpuTime, writeWallclock, XEN_PVCLOCK_GUEST_STOPPED, XEN_PVCLOCK_TSC_STABLE_BIT } from '../model/time.js';
import { timerOf, VIRQ_TIMER } from '../model/timer.js';
import { VCPU_SSHOTTMR_future, VCPUOP } from '../model/vcpu-op.js';

defineConstants('RUNSTATE_', RUNSTATE);
defineConstants('VCPUOP_', VCPUOP);
defineConstants('', {
  XEN_RUNSTATE_UPDATE, KVM_XEN_INVALID_GPA, VIRQ_TIMER, VCPU_SSHOTTMR_future,
  XEN_PVCLOCK_TSC_STABLE_BIT, XEN_PVCLOCK_GUEST_STOPPED,
});

const vcpuOpCall = (ctx: OpContext, cmd: number, vcpuid: bigint | undefined, w: StructWriter, decode?: (b: Uint8Array) => Record<string, OutValue>): Action =>
  structCall(ctx, HYPERVISOR.vcpu_op, [BigInt(cmd), vcpuid ?? BigInt(ctx.vcpu)], w, decode);

/** The runstate of the target vCPU as plain OUT fields. */
function runstateOut(m: XenModel, v: Vcpu): Record<string, OutValue> {
  const i = runstateOf(v).info;
  return {
    state: BigInt(i.state), state_entry_time: i.entry,
    time_running: i.time[0], time_runnable: i.time[1], time_blocked: i.time[2], time_offline: i.time[3],
    sum_ok: sumRuleHolds(m, v) ? 1n : 0n,
  };
}

/**
 * Torn-read results: torn_accepted = reader windows in which a protocol reader
 * accepts a torn snapshot (accepted_any: 0/1); torn_visible = 1 if a reader
 * ignoring the protocol can be shown a torn state (torn_states: how many).
 */
function tornOut(r: TornReport): Record<string, OutValue> {
  return {
    torn_accepted: BigInt(r.acceptedTorn), accepted_any: r.acceptedTorn > 0 ? 1n : 0n,
    torn_visible: r.visibleTorn > 0 ? 1n : 0n, torn_states: BigInt(r.visibleTorn), states: BigInt(r.states),
  };
}

const RUNSTATE_OUT = ['state', 'state_entry_time', 'time_running', 'time_runnable', 'time_blocked', 'time_offline', 'sum_ok'] as const;

// The KVM attribute ops need no controlled clock themselves: a case asserting
// exact times says so by requiring time.control (time.advance does).

export const vcpuOpRaw = defineOp({
  name: 'vcpu.op',
  summary: 'HYPERVISOR_vcpu_op(cmd, vcpuid, arg) with a raw argument (vcpuid defaults to the calling vCPU)',
  args: z.strictObject({ cmd: int(), vcpuid: int().optional(), arg: int().optional() }),
  requires: ['hypercall.intercept'],
  encode: (a, ctx): Action => ({ kind: 'hypercall', nr: HYPERVISOR.vcpu_op, args: [a.cmd, a.vcpuid ?? BigInt(ctx.vcpu), a.arg ?? 0n], writes: [] }),
});

export const registerRunstate = defineOp({
  name: 'vcpu.register_runstate',
  summary: 'VCPUOP_register_runstate_memory_area: the runstate copy at guest address `addr` (any alignment, may cross a page)',
  args: z.strictObject({ addr: int(), vcpuid: int().optional() }),
  requires: ['hypercall.intercept', 'runstate'],
  encode(a, ctx): Action {
    const w = ctx.width === 32 ? new StructWriter(4).u32(0, a.addr) : new StructWriter(8).u64(0, a.addr);
    return vcpuOpCall(ctx, VCPUOP.register_runstate_memory_area, a.vcpuid, w);
  },
});

export const registerRunstatePhys = defineOp({
  name: 'vcpu.register_runstate_phys',
  summary: 'VCPUOP_register_runstate_phys_area: the runstate copy at guest-physical `gpa` (~0 unregisters)',
  args: z.strictObject({ gpa: int(), vcpuid: int().optional() }),
  requires: ['hypercall.intercept', 'runstate', 'flavor.xen'],
  encode: (a, ctx): Action => vcpuOpCall(ctx, VCPUOP.register_runstate_phys_area, a.vcpuid, new StructWriter(8).u64(0, a.gpa)),
});

export const getRunstateInfo = defineOp({
  name: 'vcpu.get_runstate_info',
  summary: 'VCPUOP_get_runstate_info: the runstate with the time in the current state added',
  args: z.strictObject({ vcpuid: int().optional() }).optional(),
  requires: ['hypercall.intercept', 'runstate'],
  out: ['state', 'state_entry_time', 'time_running', 'time_runnable', 'time_blocked', 'time_offline', 'time_sum'],
  encode(a, ctx): Action {
    const L = RUNSTATE_INFO[ctx.width];
    return vcpuOpCall(ctx, VCPUOP.get_runstate_info, a?.vcpuid, new StructWriter(L.size), (b) => {
      const r = reader(b);
      const t = (k: number) => r.u64(L.fields.time.offset + 8 * k);
      return {
        state: r.i32(0), state_entry_time: r.u64(L.fields.state_entry_time.offset),
        time_running: t(0), time_runnable: t(1), time_blocked: t(2), time_offline: t(3),
        time_sum: (t(0) + t(1) + t(2) + t(3)) & ((1n << 64n) - 1n),
      };
    });
  },
});

export const registerVcpuInfo = defineOp({
  name: 'vcpu.register_vcpu_info',
  summary: 'VCPUOP_register_vcpu_info: move the vCPU\'s vcpu_info to frame `mfn` + `offset`',
  args: z.strictObject({ mfn: int(), offset: int().optional(), rsvd: int().optional(), vcpuid: int().optional() }),
  requires: ['hypercall.intercept', 'vcpu_info'],
  encode: (a, ctx): Action => vcpuOpCall(ctx, VCPUOP.register_vcpu_info, a.vcpuid, new StructWriter(16).u64(0, a.mfn).u32(8, a.offset ?? 0n).u32(12, a.rsvd ?? 0n)),
});

export const registerTimeArea = defineOp({
  name: 'vcpu.register_time_area',
  summary: 'VCPUOP_register_vcpu_time_memory_area: a second vcpu_time_info copy at guest address `addr`',
  args: z.strictObject({ addr: int(), vcpuid: int().optional() }),
  requires: ['hypercall.intercept', 'time.control'],
  encode(a, ctx): Action {
    const w = ctx.width === 32 ? new StructWriter(4).u32(0, a.addr) : new StructWriter(8).u64(0, a.addr);
    return vcpuOpCall(ctx, VCPUOP.register_vcpu_time_memory_area, a.vcpuid, w);
  },
});

export const registerTimePhys = defineOp({
  name: 'vcpu.register_time_phys',
  summary: 'VCPUOP_register_vcpu_time_phys_area: a second vcpu_time_info copy at guest-physical `gpa`',
  args: z.strictObject({ gpa: int(), vcpuid: int().optional() }),
  requires: ['hypercall.intercept', 'time.control', 'flavor.xen'],
  encode: (a, ctx): Action => vcpuOpCall(ctx, VCPUOP.register_vcpu_time_phys_area, a.vcpuid, new StructWriter(8).u64(0, a.gpa)),
});

export const setPeriodicTimer = defineOp({
  name: 'timer.set_periodic',
  summary: 'VCPUOP_set_periodic_timer: VIRQ_TIMER every `period_ns`',
  args: z.strictObject({ period_ns: int(), vcpuid: int().optional() }),
  requires: ['hypercall.intercept', 'timer'],
  encode: (a, ctx): Action => vcpuOpCall(ctx, VCPUOP.set_periodic_timer, a.vcpuid, new StructWriter(8).u64(0, a.period_ns)),
});

export const stopPeriodicTimer = defineOp({
  name: 'timer.stop_periodic',
  summary: 'VCPUOP_stop_periodic_timer',
  args: z.strictObject({ vcpuid: int().optional() }).optional(),
  requires: ['hypercall.intercept', 'timer'],
  encode: (a, ctx): Action => ({ kind: 'hypercall', nr: HYPERVISOR.vcpu_op, args: [BigInt(VCPUOP.stop_periodic_timer), a?.vcpuid ?? BigInt(ctx.vcpu), 0n], writes: [] }),
});

export const setSingleshotTimer = defineOp({
  name: 'timer.set_singleshot',
  summary: 'VCPUOP_set_singleshot_timer: one-shot VIRQ_TIMER at absolute system time `timeout`',
  args: z.strictObject({ timeout: int(), flags: int().optional(), vcpuid: int().optional() }),
  requires: ['hypercall.intercept', 'timer'],
  encode(a, ctx): Action {
    const w = new StructWriter(ctx.width === 32 ? 12 : 16).u64(0, a.timeout).u32(8, a.flags ?? 0n);
    return vcpuOpCall(ctx, VCPUOP.set_singleshot_timer, a.vcpuid, w);
  },
});

export const stopSingleshotTimer = defineOp({
  name: 'timer.stop_singleshot',
  summary: 'VCPUOP_stop_singleshot_timer',
  args: z.strictObject({ vcpuid: int().optional() }).optional(),
  requires: ['hypercall.intercept', 'timer'],
  encode: (a, ctx): Action => ({ kind: 'hypercall', nr: HYPERVISOR.vcpu_op, args: [BigInt(VCPUOP.stop_singleshot_timer), a?.vcpuid ?? BigInt(ctx.vcpu), 0n], writes: [] }),
});

export const setTimerOp = defineOp({
  name: 'timer.set_timer_op',
  summary: 'HYPERVISOR_set_timer_op(timeout): absolute ns, 0 stops; 32-bit guests pass (lo, hi)',
  args: z.strictObject({ timeout: int() }),
  requires: ['hypercall.intercept', 'timer'],
  encode(a, ctx): Action {
    const t = BigInt.asUintN(64, a.timeout);
    const args = ctx.width === 32 ? [t & 0xffffffffn, t >> 32n] : [t];
    return { kind: 'hypercall', nr: HYPERVISOR.set_timer_op, args, writes: [] };
  },
});

export const timerStatus = defineOp({
  name: 'timer.status',
  summary: 'Host view of the vCPU\'s timers: one-shot deadline/armed/fired, periodic period/next/fired, VIRQ_TIMER sends',
  args: z.strictObject({}).optional(),
  requires: ['timer', 'time.control'],
  out: ['armed', 'deadline', 'fired', 'periodic_period', 'periodic_next', 'periodic_fired', 'virq_sent', 'now'],
  encode: (): Action => ({ kind: 'host', op: 'timer.status', args: {} }),
  model(m, _a, { vcpu }): Outcome {
    const t = timerOf(vcpu);
    return {
      out: {
        armed: t.singleshot === null ? 0n : 1n, deadline: t.singleshot ?? 0n, fired: BigInt(t.singleshotFired),
        periodic_period: t.periodicPeriod, periodic_next: t.periodicNext ?? 0n, periodic_fired: BigInt(t.periodicFired),
        virq_sent: BigInt(t.virqSent), now: m.now,
      },
    };
  },
});

export const runstateSwitch = defineOp({
  name: 'runstate.switch',
  summary: 'Host scheduler: move the vCPU to `state` now (RUNSTATE_running, RUNSTATE_runnable, RUNSTATE_blocked or RUNSTATE_offline); KVM: `steal` ns of run delay',
  args: z.strictObject({ state: int(), steal: int().optional() }),
  requires: ['runstate', 'time.control'],
  out: [...RUNSTATE_OUT],
  encode: (a): Action => ({ kind: 'host', op: 'runstate.switch', args: a }),
  model(m, a, { vcpu }): Outcome {
    if (a.state < 0n || a.state > 3n) return { fault: `runstate ${a.state} is not 0..3` };
    runstateChange(m, vcpu, Number(a.state), a.steal ?? 0n);
    return { out: runstateOut(m, vcpu) };
  },
});

export const runstateGet = defineOp({
  name: 'runstate.get',
  summary: 'Host view of the vCPU\'s runstate (KVM: KVM_XEN_VCPU_GET_ATTR RUNSTATE_DATA); sum_ok = the flavour\'s accounting rule holds',
  args: z.strictObject({}).optional(),
  requires: ['runstate'],
  out: [...RUNSTATE_OUT],
  encode: (): Action => ({ kind: 'host', op: 'runstate.get', args: {} }),
  model: (m, _a, { vcpu }): Outcome => ({ out: runstateOut(m, vcpu) }),
});

export const runstateHostSetAddr = defineOp({
  name: 'runstate.host_set_addr',
  summary: 'KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADDR: the host places the runstate area at `gpa` (~0 removes it)',
  args: z.strictObject({ gpa: int() }),
  requires: ['runstate', 'flavor.kvm'],
  encode: (a): Action => ({ kind: 'host', op: 'runstate.host_set_addr', args: a }),
  model: (m, a, { vcpu }): Outcome => ({ ret: BigInt(hostSetAddr(m, vcpu, BigInt.asUintN(64, a.gpa))) }),
});

export const runstateHostSetCurrent = defineOp({
  name: 'runstate.host_set_current',
  summary: 'KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_CURRENT: switch the vCPU to `state` now (state > offline -> -EINVAL)',
  args: z.strictObject({ state: int() }),
  requires: ['runstate', 'flavor.kvm'],
  out: [...RUNSTATE_OUT],
  encode: (a): Action => ({ kind: 'host', op: 'runstate.host_set_current', args: a }),
  model(m, a, { vcpu }): Outcome {
    const r = hostSetCurrent(m, vcpu, BigInt.asUintN(64, a.state));
    return { ret: BigInt(r), out: runstateOut(m, vcpu) };
  },
});

const dataArgs = z.strictObject({
  state: int(), state_entry_time: int(), time_running: int(), time_runnable: int(), time_blocked: int(), time_offline: int(),
});
type DataArgs = { state: bigint; state_entry_time: bigint; time_running: bigint; time_runnable: bigint; time_blocked: bigint; time_offline: bigint };
const toData = (a: DataArgs) => ({
  state: BigInt.asUintN(64, a.state), entry: BigInt.asUintN(64, a.state_entry_time),
  time: [a.time_running, a.time_runnable, a.time_blocked, a.time_offline].map((x) => BigInt.asUintN(64, x)) as [bigint, bigint, bigint, bigint],
});

export const runstateHostSetData = defineOp({
  name: 'runstate.host_set_data',
  summary: 'KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_DATA: set the whole runstate (entry must equal sum(time) and not be in the future)',
  args: dataArgs,
  requires: ['runstate', 'flavor.kvm'],
  out: [...RUNSTATE_OUT],
  encode: (a): Action => ({ kind: 'host', op: 'runstate.host_set_data', args: a }),
  model(m, a, { vcpu }): Outcome {
    const r = hostSetData(m, vcpu, toData(a));
    return { ret: BigInt(r), out: runstateOut(m, vcpu) };
  },
});

export const runstateHostAdjust = defineOp({
  name: 'runstate.host_adjust',
  summary: 'KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADJUST: add deltas (they must add up; state ~0 = unchanged)',
  args: dataArgs,
  requires: ['runstate', 'flavor.kvm'],
  out: [...RUNSTATE_OUT],
  encode: (a): Action => ({ kind: 'host', op: 'runstate.host_adjust', args: a }),
  model(m, a, { vcpu }): Outcome {
    const r = hostAdjust(m, vcpu, toData(a));
    return { ret: BigInt(r), out: runstateOut(m, vcpu) };
  },
});

export const runstateCheckAtomic = defineOp({
  name: 'runstate.check_atomic',
  summary: 'Switch the vCPU to `state` while replaying every intermediate memory state of the area update: torn_accepted = torn snapshots a protocol reader accepts, torn_visible = torn states a naive reader can see',
  args: z.strictObject({ state: int() }),
  requires: ['runstate', 'runstate.update_flag', 'time.control'],
  out: ['torn_accepted', 'accepted_any', 'torn_visible', 'torn_states', 'states', ...RUNSTATE_OUT],
  encode: (a): Action => ({ kind: 'host', op: 'runstate.check_atomic', args: a }),
  model(m, a, { dom, vcpu }): Outcome {
    const base = dom.areas.get(`runstate/${vcpu.id}`);
    if (base === undefined) return { fault: 'no runstate area registered for this vCPU' };
    const L = RUNSTATE_INFO[dom.width];
    // An area registered outside guest RAM is never written (the update is skipped): nothing to replay.
    if (!dom.memory.contains(base, L.size)) return { fault: 'the runstate area is outside guest RAM' };
    const r = checkUpdate(dom.memory, base, L.size, runstateGuard(L.fields.state_entry_time.offset), () => {
      runstateChange(m, vcpu, Number(a.state));
    });
    return { out: { ...tornOut(r), ...runstateOut(m, vcpu) } };
  },
});

export const runstateRaceCheck = defineOp({
  name: 'runstate.race_check',
  summary: 'Torn-read race: vCPU `reader` runs the update-flag protocol reader over this vCPU\'s KVM runstate area while the host makes `flips` updates (writer current: RUNSTATE_CURRENT cycling through `states`; run: the vCPU re-entering KVM_RUN). The model replays every intermediate state of each update instead',
  args: z.strictObject({
    reader: int(),
    flips: int(),
    states: z.array(int()).min(1).max(4).optional(),
    writer: z.enum(['current', 'run']).optional(),
  }),
  requires: ['runstate', 'flavor.kvm'],
  out: [...RACE_OUT],
  encode: (a): Action => ({ kind: 'host', op: 'runstate.race_check', args: a }),
  model(m, a, { dom, vcpu }): Outcome {
    const o = raceArgs(a);
    if (typeof o === 'string') return { fault: o };
    if (dom.vcpu(Number(a.reader)) === undefined || Number(a.reader) === vcpu.id) return { fault: `reader vCPU ${a.reader} must be another vCPU of the domain` };
    const r = raceModel(m, dom, vcpu, o);
    return typeof r === 'string' ? { fault: r } : { out: raceOut(r) };
  },
});

export const timeUpdate = defineOp({
  name: 'time.update',
  summary: 'Host: refresh the vCPU\'s vcpu_time_info (and secondary copy) now, checking the version protocol of the vcpu_info copy',
  args: z.strictObject({ force: int().optional() }).optional(),
  requires: ['time.control', 'vcpu_info'],
  out: ['version', 'system_time', 'torn_accepted', 'accepted_any', 'torn_visible', 'torn_states', 'states'],
  encode: (a): Action => ({ kind: 'host', op: 'time.update', args: a ?? {} }),
  model(m, a: { force?: bigint } | undefined, { dom, vcpu }): Outcome {
    const vi = vcpu.vcpuInfoAddress();
    if (vi === null) return { fault: 'the vCPU has no vcpu_info' };
    const base = vi + 32;
    const r = checkUpdate(dom.memory, base, VCPU_TIME_INFO.size, versionGuard(0), () => updateVcpuTime(m, vcpu, (a?.force ?? 1n) !== 0n));
    return { out: { version: BigInt(dom.memory.u32(base)), system_time: dom.memory.u64(base + 16), ...tornOut(r) } };
  },
});

export const timeSetWallclock = defineOp({
  name: 'time.set_wallclock',
  summary: 'Host: set the domain wallclock (wall time of system time 0) and rewrite shared_info wc_* with the version protocol',
  args: z.strictObject({ sec: int(), nsec: int() }),
  requires: ['time.control', 'shared_info'],
  out: ['wc_version', 'torn_accepted', 'accepted_any', 'torn_visible', 'torn_states', 'states'],
  encode: (a): Action => ({ kind: 'host', op: 'time.set_wallclock', args: a }),
  model(_m, a, { dom }): Outcome {
    const si = dom.sharedInfoGpa;
    if (si === null) return { fault: 'shared_info is not placed' };
    const f = SHARED_INFO[dom.width].fields;
    const lo = Math.min(f.wc_version.offset, f.wc_sec_hi.offset);
    const hi = Math.max(f.wc_version.offset, f.wc_sec_hi.offset) + 4;
    const r = checkUpdate(dom.memory, si + lo, hi - lo, versionGuard(f.wc_version.offset - lo), () => {
      writeWallclock(dom, BigInt.asUintN(64, a.sec), Number(a.nsec));
    });
    return { out: { wc_version: BigInt(dom.memory.u32(si + f.wc_version.offset)), ...tornOut(r) } };
  },
});

export const timeNow = defineOp({
  name: 'time.now',
  summary: 'Host: the model\'s system time (ns)',
  args: z.strictObject({}).optional(),
  requires: ['time.control'],
  out: ['now'],
  encode: (): Action => ({ kind: 'host', op: 'time.now', args: {} }),
  model: (m): Outcome => ({ out: { now: m.now } }),
});
