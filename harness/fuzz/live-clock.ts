// What a sequence may hold when the target's clock is live (a kernel's, not the
// model's): the model's clock starts near 0 and moves only when a step says, a live
// one has run for seconds and keeps running through every step. Steps kept from
// elsewhere (the suites' seeds, a corpus entry being mutated) are cut to what both
// clocks agree on, as steps.ts generates on a live clock.

import { LIVE_CLOCK_TIMES, LIVE_POLL_TIMEOUT, type FuzzStep } from './steps.js';

/** Time arguments (absolute deadlines, a period) of the timer ops. */
const TIME_ARGS: Record<string, string> = {
  'timer.set_singleshot': 'timeout', 'timer.set_timer_op': 'timeout', 'timer.set_periodic': 'period_ns', 'kvm.xen_set_timer': 'expires_ns',
};
/** The times that mean the same on a live clock and the model's (steps.ts), and all ones (none, for kvm.xen_set_timer). */
const LIVE_TIMES = new Set([...LIVE_CLOCK_TIMES, (1n << 64n) - 1n]);

/**
 * A set_timer_op timeout Xen's Linux workaround takes for bogus: negative as signed
 * guest time, or 2^50 ns or more ahead (xen/common/sched/core.c do_set_timer_op; KVM's
 * kvm_xen_start_timer with linux_wa). Both clocks put it 100 ms ahead of their own now;
 * the live one gets there during a long step, the model's never does. 2^51 and more
 * (negative ones included, as unsigned) leaves room for the live clock's uptime.
 */
export function bogusTimerOp(s: FuzzStep): boolean {
  const t = s.op === 'timer.set_timer_op' ? s.args.timeout : undefined;
  if (typeof t !== 'bigint') return false;
  const u = BigInt.asUintN(64, t);
  return u >= 1n << 51n;
}

/** `next` takes the timer of `s`'s vCPU down at once: set_timer_op(0) from the same place. */
function stopsAtOnce(s: FuzzStep, next: FuzzStep | undefined): boolean {
  return next !== undefined && next.op === 'timer.set_timer_op' && next.args.timeout === 0n
    && next.dom === s.dom && next.vcpu === s.vcpu;
}

/**
 * On a live clock no step holds a vCPU for good (SCHEDOP_block goes, a poll gets a
 * timeout already past), and a timer time is one both clocks agree on (another becomes
 * 2^49 ns: a deadline a few ms into the model's time is long past on a kernel up for
 * minutes). A bogus set_timer_op timeout stays only when the next step stops the timer:
 * it is armed 100 ms ahead and stopped a step later, so both clocks agree that it did
 * not fire (suites/kvm-xen/timer-inkernel.yaml does the same).
 */
export function liveClockSteps(steps: FuzzStep[]): FuzzStep[] {
  const kept = steps.filter((s) => s.op !== 'sched.block');
  return kept.map((s, i) => {
    if (s.op === 'sched.poll') return withArg(s, 'timeout', LIVE_POLL_TIMEOUT);
    const t = TIME_ARGS[s.op];
    const v = t === undefined ? undefined : s.args[t];
    if (typeof v !== 'bigint') return s;
    if (bogusTimerOp(s) ? stopsAtOnce(s, kept[i + 1]) : LIVE_TIMES.has(v)) return s;
    return withArg(s, t, 1n << 49n);
  });
}

/**
 * A new step with one argument changed. Its fields are named, not spread: a spread
 * would also copy the old step's compiled action (exec.ts keeps it on the step under a
 * symbol), and the new step would run as the old one.
 */
function withArg(s: FuzzStep, name: string, value: bigint): FuzzStep {
  return { op: s.op, args: { ...s.args, [name]: value }, dom: s.dom, vcpu: s.vcpu, cpl: s.cpl };
}
