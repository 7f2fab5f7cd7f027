// One fuzz sequence's live state: the target session, the optional reference
// session, and what each step gave. `exec` runs a step on both, applies the
// oracles and throws a FindingError on the first disagreement. The model's
// path is synchronous (the hot loop); any other Driver goes through `execAsync`.

import type { Action, Outcome } from '../ops/types.js';
import type { SessionSetup } from '../drivers/driver.js';
import { areaSpans, clockRanges, compile, VocabularyError, withoutClock, type AreaSpan, type ClockRange, type FuzzSession } from './exec.js';
import { checkInvariants, compareAreas, compareOutcomes, type Disagreement, type InvariantView } from './oracles.js';
import type { FuzzStep } from './steps.js';
import { SHARED_INFO } from '../model/memory-layout.js';

/** evtchn_pending in shared_info: the same offset in both layouts, after the 32 vcpu_info. */
const EVTCHN_PENDING_OFFSET = SHARED_INFO[64].fields.evtchn_pending.offset;

export interface TraceEntry {
  step: FuzzStep;
  /** The outcome the case expects: the reference's, or the target's own when fuzzing alone. */
  outcome: Outcome;
}

export class FindingError extends Error {
  override name = 'FindingError';
  constructor(readonly disagreement: Disagreement, readonly index: number, readonly trace: TraceEntry[]) {
    super(`step ${index + 1} (${trace[index]?.step.op}): ${disagreement.field}: expected ${disagreement.expected}, got ${disagreement.actual}`);
  }
}

/** Counters a run reads for its progress line. */
export interface StepStats {
  steps: number;
  sequences: number;
  ops: Map<string, number>;
  /** Steps where the reference took held events KVM had delivered at an exit no model foresees (execAsync). */
  adopted?: number;
}

/** An area placed outside guest RAM has no bytes to compare (both sides then agree on nothing to read). */
function readOrEmpty(read: () => Uint8Array): Uint8Array {
  try {
    return read();
  } catch {
    return new Uint8Array(0);
  }
}

function exceptionFinding(e: unknown): Disagreement {
  const msg = (e as Error)?.message ?? String(e);
  return { kind: 'exception', field: 'exception', expected: 'an outcome', actual: msg.split('\n')[0], classes: ['outcome', (e as Error)?.name ?? 'throw'], expect: {} };
}

export class FuzzSequence {
  readonly trace: TraceEntry[] = [];
  private readonly invView: InvariantView;

  constructor(
    readonly setup: SessionSetup,
    readonly target: FuzzSession,
    readonly reference: FuzzSession | undefined,
    readonly stats: StepStats,
    /** Compare area bytes after every step (differential mode). */
    readonly compareMemory = true,
    /** The target's clock is its own (no time.control): the bytes it writes are not compared. */
    readonly liveClock = false,
  ) {
    const t = target;
    this.invView = {
      width: setup.mode,
      sharedInfo2l: (dom) => {
        const v = t.areas(dom);
        // In the FIFO ABI the pending bitmap is not where events go.
        if (v.get('fifo_control/0') !== undefined) return undefined;
        return v.get('shared_info');
      },
      readU8: (dom, gpa) => (t.read(dom, gpa, 1) as Uint8Array)[0],
    };
  }

  /** The VMM set KVM's long_mode in this sequence: KVM may have written either width's layout. */
  private widthSet = false;

  private count(step: FuzzStep): void {
    if (step.op === 'kvm.xen_set_attr' && step.args.attr === 'long_mode') this.widthSet = true;
    this.stats.steps++;
    this.stats.ops.set(step.op, (this.stats.ops.get(step.op) ?? 0) + 1);
  }

  private fail(d: Disagreement, step: FuzzStep, outcome: Outcome): never {
    this.trace.push({ step, outcome });
    throw new FindingError(d, this.trace.length - 1, this.trace.slice());
  }

  /** The bytes of a span as compared: with a live clock, what the clock writes is zeroed (both sides). */
  private comparable(b: Uint8Array, s: AreaSpan, clock: readonly ClockRange[]): Uint8Array {
    return clock.length ? withoutClock(b, s, clock) : b;
  }

  /** Every range a live clock wrote in this sequence (an area moved away leaves its clock bytes behind). */
  private readonly clockSeen = new Map<string, ClockRange>();

  /**
   * What a live clock writes in either side's areas, now or at an area's earlier place: a
   * runstate area the guest moves leaves the times KVM wrote at the old place, which another
   * area (a vcpu_info) may cover later. None when the clock is the model's.
   */
  private clock(ts: AreaSpan[], rs: AreaSpan[]): ClockRange[] {
    if (!this.liveClock) return [];
    // After a long_mode attribute KVM writes the wallclock in the width it was told (its
    // shared_info init), which neither side's layout need show at once: both widths' are left out.
    for (const r of clockRanges([...ts, ...rs], this.widthSet ? [64, 32] : [this.setup.mode])) {
      const k = `${r.dom}/${r.from}/${r.to}`;
      if (!this.clockSeen.has(k)) this.clockSeen.set(k, r);
    }
    return [...this.clockSeen.values()];
  }

  /**
   * A 2-level handler's scan with a live clock: the ports whose pending bit lies where the
   * clock writes are left out. After the VMM changes KVM's width, KVM writes the other
   * layout's wallclock, which in this layout falls inside evtchn_pending (the compat
   * wc_version at 0x900 is 64-bit port 2048 on): the guest scans live clock bits as events
   * (seen on 6.12). The outcome is compared without them; the trace keeps it whole.
   */
  private withoutClockPorts(o: Outcome, dom: number, clock: readonly ClockRange[]): Outcome {
    const handled = (o.out as { handled?: unknown } | undefined)?.handled;
    const si = this.target.areas(dom).get('shared_info');
    if (!Array.isArray(handled) || si === undefined) return o;
    const pending = si + EVTCHN_PENDING_OFFSET;
    const ticks = (port: number) => clock.some((r) => r.dom === dom && pending + (port >> 3) >= r.from && pending + (port >> 3) < r.to);
    return { ...o, out: { ...o.out, handled: handled.filter((p) => !ticks(Number(p))) } };
  }

  private spans(s: FuzzSession): AreaSpan[] {
    const out: AreaSpan[] = [];
    for (const d of this.setup.domains) out.push(...areaSpans(s.areas(d.id), d.id, d.vcpus));
    return out;
  }

  /** Run one step on the in-process model target (and reference). */
  exec(step: FuzzStep): void {
    const c = compile(step, this.setup);
    this.count(step);
    let o: Outcome;
    try {
      o = this.target.apply(c) as Outcome;
    } catch (e) {
      if (e instanceof VocabularyError) throw e;
      this.fail(exceptionFinding(e), step, {});
    }
    const ref = this.reference;
    if (!ref) {
      const d = checkInvariants(step, o, this.invView);
      if (d) this.fail(d, step, o);
      this.trace.push({ step, outcome: o });
      return;
    }
    let r: Outcome;
    try {
      r = ref.apply(c) as Outcome;
    } catch (e) {
      this.fail({ ...exceptionFinding(e), field: 'reference exception' }, step, {});
    }
    let d = compareOutcomes(o, r, this.liveClock, step.op);
    if (!d && this.compareMemory) {
      const ts = this.spans(this.target);
      const rs = this.spans(ref);
      const clock = this.clock(ts, rs);
      d = compareAreas(ts, rs, (side, s) => this.comparable(readOrEmpty(() => (side === 'ref' ? ref : this.target).read(s.dom, s.gpa, s.size) as Uint8Array), s, clock), this.setup.mode);
    }
    if (d) this.fail(d, step, r);
    this.trace.push({ step, outcome: r });
  }

  /** The same for targets reached through a Driver's Session (kvm, xen, qemu). */
  async execAsync(step: FuzzStep): Promise<void> {
    const c = compile(step, this.setup);
    this.count(step);
    let o: Outcome;
    try {
      o = await this.target.apply(c);
    } catch (e) {
      if (e instanceof VocabularyError) throw e;
      this.fail(exceptionFinding(e), step, {});
    }
    const ref = this.reference;
    if (!ref) {
      // Invariants that read memory need synchronous reads: on other targets only outcome invariants apply.
      const d = checkInvariants(step, o, { ...this.invView, sharedInfo2l: () => undefined });
      if (d) this.fail(d, step, o);
      this.trace.push({ step, outcome: o });
      return;
    }
    let r: Outcome;
    try {
      r = await ref.apply(c);
    } catch (e) {
      this.fail({ ...exceptionFinding(e), field: 'reference exception' }, step, {});
    }
    let d: Disagreement | undefined;
    if (this.liveClock && this.widthSet && step.op === 'evtchn.run_upcall') {
      const clock = this.clock(this.spans(this.target), this.spans(ref));
      d = compareOutcomes(this.withoutClockPorts(o, step.dom, clock), this.withoutClockPorts(r, step.dom, clock), this.liveClock, step.op);
    } else d = compareOutcomes(o, r, this.liveClock, step.op);
    if (!d && this.compareMemory) {
      d = await this.memoryDiff(ref);
      // KVM delivers the selector bits it holds for a vCPU after any exit it handles
      // in-kernel, a host interrupt's included (arch/x86/kvm/x86.c vcpu_run:
      // kvm_xen_inject_pending_events), which no model can foresee: when the vCPU ran in
      // this step and the reference holds bits for it, the reference delivers them and the
      // bytes are compared again. Only memory: an outcome the delivery changed stays a finding.
      if (d && this.liveClock && ref.deliverHeld && runsVcpu(c.action) && ref.deliverHeld(step.dom, step.vcpu)) {
        if (!(await this.memoryDiff(ref))) {
          this.stats.adopted = (this.stats.adopted ?? 0) + 1;
          d = undefined;
        }
      }
    }
    if (d) this.fail(d, step, r);
    this.trace.push({ step, outcome: r });
  }

  /** The first area whose bytes differ between target and reference, read through the sessions. */
  private async memoryDiff(ref: FuzzSession): Promise<Disagreement | undefined> {
    const ts = this.spans(this.target);
    const rs = this.spans(ref);
    const clock = this.clock(ts, rs);
    const bytes = new Map<string, Uint8Array>();
    for (const [side, list, s] of [['target', ts, this.target], ['ref', rs, ref]] as const) {
      for (const x of list) {
        let b: Uint8Array;
        try {
          b = await s.read(x.dom, x.gpa, x.size);
        } catch {
          b = new Uint8Array(0);
        }
        bytes.set(`${side}/${x.dom}/${x.name}`, this.comparable(b, x, clock));
      }
    }
    return compareAreas(ts, rs, (side, s) => bytes.get(`${side}/${s.dom}/${s.name}`)!, this.setup.mode);
  }
}

/** Host ops during which the test guest runs (its handler, its loop of calls). */
const GUEST_HOST_OPS = new Set(['evtchn.run_upcall', 'evtchn.alloc_many', 'evtchn.take_upcalls']);

/** The step's vCPU ran in the guest (a hypercall, an MSR write, a guest-side loop), so KVM may have taken exits for it. */
function runsVcpu(a: Action): boolean {
  return a.kind === 'hypercall' || a.kind === 'wrmsr' || (a.kind === 'host' && GUEST_HOST_OPS.has(a.op));
}

