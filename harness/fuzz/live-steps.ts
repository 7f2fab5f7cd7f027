// What a sequence may hold on a live target (a kernel's clock, not the model's, and
// a test guest that runs its steps with interrupts on). The model's clock starts near
// 0 and moves only when a step says; a live one has run for seconds and keeps running
// through every step. Steps kept from elsewhere (the suites' seeds, a corpus entry
// being mutated) are cut to what both sides agree on, as steps.ts generates there.

import { XEN_HYPERCALL_MSR } from '../model/hypercall.js';
import { KVM_XEN_HVM_CONFIG_EVTCHN_SEND, KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL } from '../model/kvm-config.js';
import { k } from './step-gen.js';
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
function bogusTimerOp(s: FuzzStep): boolean {
  const t = s.op === 'timer.set_timer_op' ? s.args.timeout : undefined;
  return typeof t === 'bigint' && BigInt.asUintN(64, t) >= 1n << 51n;
}

/** `next` takes the timer of `s`'s vCPU down at once: set_timer_op(0) from the same place. */
function stopsAtOnce(s: FuzzStep, next: FuzzStep | undefined): boolean {
  return next !== undefined && next.op === 'timer.set_timer_op' && next.args.timeout === 0n
    && next.dom === s.dom && next.vcpu === s.vcpu;
}

const MSR = BigInt(XEN_HYPERCALL_MSR);
const CALLBACK_VECTOR_TYPE = 2n;

/**
 * HVM_PARAM_CALLBACK_IRQ naming a vector: KVM offers it while evtchn_upcall_pending is
 * set (level-like, __kvm_xen_has_interrupt). The test guest runs its steps with
 * interrupts on and its default handler leaves evtchn_upcall_pending set, so the vector
 * comes back at every iret and the guest never gets on (seen on 6.12: the step timed
 * out and the VM stalled). The suites take such upcalls with evtchn.take_upcalls, which
 * clears the flag as Linux's handler does; the fuzz vocabulary has no such step. Vector
 * 0 reaches the same KVM attribute and is never injected.
 */
function deliversCallback(s: FuzzStep): boolean {
  if (s.op !== 'hvm.set_param' || s.args.index !== k('HVM_PARAM_CALLBACK_IRQ')) return false;
  const v = s.args.value;
  return typeof v === 'bigint' && BigInt.asUintN(64, v) >> 56n === CALLBACK_VECTOR_TYPE && (v & 0xffn) !== 0n;
}

/**
 * A hypercall configuration without the hypercall MSR: KVM turns its Xen support off
 * through a static key it drops about a second later (arch/x86/kvm/xen.c
 * kvm_xen_hvm_config: static_branch_slow_dec_deferred, HZ), so whether later hypercalls
 * are Xen's or KVM's own depends on time.
 */
function dropsXenMsr(s: FuzzStep): boolean {
  const msr = s.op === 'kvm.xen_hvm_config' ? s.args.msr : undefined;
  return typeof msr === 'bigint' && msr !== MSR;
}

/**
 * `next` gives the MSR back at once: a configuration KVM accepts (known flags, no blob
 * with INTERCEPT_HCALL) with the default MSR. KVM takes the key again before the
 * deferred drop, so it never goes off and no guest step sees the moment between.
 */
function restoresMsr(s: FuzzStep, next: FuzzStep | undefined): boolean {
  if (next?.op !== 'kvm.xen_hvm_config' || next.dom !== s.dom) return false;
  const { flags, msr, blob_pages: pages } = next.args;
  if (typeof flags !== 'bigint' || (msr !== undefined && msr !== MSR)) return false;
  const blob = typeof pages === 'bigint' && pages !== 0n;
  const intercept = (flags & KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL) !== 0n;
  return (flags & ~(KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL | KVM_XEN_HVM_CONFIG_EVTCHN_SEND)) === 0n && !(intercept && blob);
}

/**
 * On a live clock no step holds a vCPU for good (SCHEDOP_block goes, a poll gets a
 * timeout already past), and a timer time is one both clocks agree on (another becomes
 * 2^49 ns: a deadline a few ms into the model's time is long past on a kernel up for
 * minutes). A bogus set_timer_op timeout stays only when the next step stops the timer:
 * it is armed 100 ms ahead and stopped a step later, so both clocks agree that it did
 * not fire (suites/kvm-xen/timer-inkernel.yaml does the same). A hypercall
 * configuration without the MSR stays only when the next step gives it back (as
 * suites/kvm-xen/hypercall-blob.yaml does); otherwise it keeps the MSR. A callback
 * vector becomes vector 0.
 */
export function liveSteps(steps: FuzzStep[]): FuzzStep[] {
  const kept = steps.filter((s) => s.op !== 'sched.block');
  return kept.map((s, i) => {
    if (s.op === 'sched.poll') return withArg(s, 'timeout', LIVE_POLL_TIMEOUT);
    if (deliversCallback(s)) return withArg(s, 'value', CALLBACK_VECTOR_TYPE << 56n);
    if (dropsXenMsr(s)) return restoresMsr(s, kept[i + 1]) ? s : withArg(s, 'msr', MSR);
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
