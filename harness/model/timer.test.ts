import { beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ModelDriver } from '../drivers/model/model-driver.js';
import { hypercall } from './hypercall-table.js';
import { HYPERVISOR } from './hypercall.js';
import { provideEventChannels, type EventChannelSubsystem } from './event-delivery.js';
import type { Domain, Vcpu, XenModel } from './domain.js';
import type { Width } from './memory-layout.js';
import { timerOf, VIRQ_TIMER } from './timer.js';
import { schedOf, domainSchedOf, SCHEDOP, SHUTDOWN } from './sched.js';
import { VCPUOP } from './vcpu-op.js';
import { KVM_XEN_PRIO_2LEVEL, kvmXenSetTimer, kvmXenSetVcpuId } from './kvm-attr.js';
import { RUNSTATE, runstateOf, sumRuleHolds } from './runstate.js';

/** A test-only event-channel layer: records VIRQs, reports what the test says. */
class FakeEvtchn implements EventChannelSubsystem {
  virqs: Array<[number, number]> = [];
  deliverable = new Set<Vcpu>();
  pending = new Map<number, boolean>();
  listeners: Array<(d: Domain, port: number) => void> = [];
  /** Deliver VIRQ_TIMER as a pending event (as if bound on an unmasked port). */
  virqMakesDeliverable = true;
  sendVirq(v: Vcpu, virq: number): void {
    this.virqs.push([v.id, virq]);
    if (this.virqMakesDeliverable) this.deliverable.add(v);
  }
  raisePort(v: Vcpu, port: number): void {
    this.virqs.push([v.id, -port]);
  }
  portPending(_d: Domain, port: number): boolean | null {
    return this.pending.has(port) ? this.pending.get(port)! : null;
  }
  eventsDeliverable(v: Vcpu): boolean {
    return this.deliverable.has(v);
  }
  onPending(fn: (d: Domain, port: number) => void): void {
    this.listeners.push(fn);
  }
  raise(d: Domain, port: number): void {
    this.pending.set(port, true);
    for (const l of this.listeners) l(d, port);
  }
}

let ev: FakeEvtchn;
beforeEach(() => {
  ev = new FakeEvtchn();
  provideEventChannels(ev);
});

function build(width: Width = 64, flavor: 'xen' | 'kvm' = 'xen', vcpus = 2): XenModel {
  return new ModelDriver(flavor).build({
    mode: width,
    xenVersion: { major: 4, minor: 19, extra: '.0' },
    scratch: 0x100000,
    domains: [{ id: 1, vcpus, privileged: false, memoryBytes: 16 << 20, sharedInfo: 0x80000, hypercallPage: 0x81000, limits: {} }],
  });
}

function hc(m: XenModel, v: Vcpu, nr: number, ...args: bigint[]): bigint {
  const names = v.mode === 64 ? ['rdi', 'rsi', 'rdx', 'r10', 'r8'] : ['rbx', 'rcx', 'rdx', 'rsi', 'rdi'];
  const regs: Record<string, bigint> = { rax: BigInt(nr) };
  args.forEach((a, i) => { regs[names[i]] = a; });
  return hypercall(m, v, regs as never).ret;
}

const SCRATCH = 0x100000;

describe('timers', () => {
  it('set_timer_op fires VIRQ_TIMER once at its deadline', () => {
    const m = build();
    const v = m.domain(1)!.vcpus[0];
    expect(hc(m, v, HYPERVISOR.set_timer_op, 1000n)).toBe(0n);
    m.advance(999n);
    expect(ev.virqs).toEqual([]);
    m.advance(1n);
    expect(ev.virqs).toEqual([[0, VIRQ_TIMER]]);
    m.advance(10_000n);
    expect(ev.virqs.length).toBe(1);
  });
  it('set_timer_op: negative or >= 2^50 ns ahead lands at now + 100 ms; 2^50 - 1 is kept', () => {
    const m = build();
    const v = m.domain(1)!.vcpus[0];
    m.advance(5n);
    hc(m, v, HYPERVISOR.set_timer_op, BigInt.asUintN(64, -1n));
    expect(timerOf(v).singleshot).toBe(5n + 100_000_000n);
    hc(m, v, HYPERVISOR.set_timer_op, 5n + (1n << 50n));
    expect(timerOf(v).singleshot).toBe(5n + 100_000_000n);
    hc(m, v, HYPERVISOR.set_timer_op, 5n + (1n << 50n) - 1n);
    expect(timerOf(v).singleshot).toBe(5n + (1n << 50n) - 1n);
    hc(m, v, HYPERVISOR.set_timer_op, 0n);
    expect(timerOf(v).singleshot).toBeNull();
  });
  it('compat set_timer_op takes (lo, hi)', () => {
    const m = build(32);
    const v = m.domain(1)!.vcpus[0];
    hc(m, v, HYPERVISOR.set_timer_op, 0x2345n, 0x1n);
    expect(timerOf(v).singleshot).toBe((1n << 32n) | 0x2345n);
  });
  it('periodic timer fires every period, starting at once if last + period has passed', () => {
    const m = build();
    const d = m.domain(1)!;
    const v = d.vcpus[0];
    d.memory.setU64(SCRATCH, 1_000_000n);
    m.advance(50_000_000n);
    expect(hc(m, v, HYPERVISOR.vcpu_op, BigInt(VCPUOP.set_periodic_timer), 0n, BigInt(SCRATCH))).toBe(0n);
    expect(timerOf(v).periodicFired).toBe(1);
    m.advance(10_000_000n);
    expect(timerOf(v).periodicFired).toBe(11);
    d.memory.setU64(SCRATCH, 999_999n);
    expect(hc(m, v, HYPERVISOR.vcpu_op, BigInt(VCPUOP.set_periodic_timer), 0n, BigInt(SCRATCH))).toBe(-22n);
    expect(hc(m, v, HYPERVISOR.vcpu_op, BigInt(VCPUOP.stop_periodic_timer), 0n, 0n)).toBe(0n);
    m.advance(10_000_000n);
    expect(timerOf(v).periodicFired).toBe(11);
  });
  it('singleshot: calling vCPU only; Xen -ENOENT for a missing id, KVM -EINVAL', () => {
    for (const flavor of ['xen', 'kvm'] as const) {
      const m = build(64, flavor);
      const d = m.domain(1)!;
      const v = d.vcpus[0];
      d.memory.setU64(SCRATCH, 500n);
      expect(hc(m, v, HYPERVISOR.vcpu_op, BigInt(VCPUOP.set_singleshot_timer), 1n, BigInt(SCRATCH))).toBe(-22n);
      expect(hc(m, v, HYPERVISOR.vcpu_op, BigInt(VCPUOP.set_singleshot_timer), 9n, BigInt(SCRATCH))).toBe(flavor === 'xen' ? -2n : -22n);
      expect(hc(m, v, HYPERVISOR.vcpu_op, BigInt(VCPUOP.set_singleshot_timer), 0n, BigInt(SCRATCH))).toBe(0n);
      m.advance(500n);
      expect(ev.virqs.filter(([id]) => id === 0).length).toBeGreaterThan(0);
    }
  });
  it('KVM with the timer compares the singleshot VCPUOPs\' id with the Xen vCPU id the VMM set, not the index (kvm_xen_hcall_vcpu_op)', () => {
    const m = build(32, 'kvm');
    const d = m.domain(1)!;
    const [v0, v1] = d.vcpus;
    d.memory.setU64(SCRATCH, 500n);
    const sshot = (v: Vcpu, id: bigint) => hc(m, v, HYPERVISOR.vcpu_op, BigInt(VCPUOP.set_singleshot_timer), id, BigInt(SCRATCH));
    const stop = (v: Vcpu, id: bigint) => hc(m, v, HYPERVISOR.vcpu_op, BigInt(VCPUOP.stop_singleshot_timer), id, 0n);
    // Without the timer KVM leaves them to the VMM: the id the VMM set does not matter.
    expect(kvmXenSetVcpuId(v0, 2n)).toBe(0n);
    expect(sshot(v0, 0n)).toBe(0n);
    // With it (the timer attribute, or VIRQ_TIMER bound), KVM's id is the one that counts.
    expect(kvmXenSetTimer(m, v0, 1n, KVM_XEN_PRIO_2LEVEL, 0n)).toBe(0n);
    expect(sshot(v0, 0n)).toBe(-22n);
    expect(stop(v0, 0n)).toBe(-22n);
    expect(sshot(v0, 2n)).toBe(0n);
    expect(timerOf(v0).singleshot).toBe(500n);
    expect(stop(v0, 2n)).toBe(0n);
    expect(timerOf(v0).singleshot).toBeNull();
    // vCPU 1 told it is Xen vCPU 0: id 0 is its own, its index is not.
    expect(kvmXenSetTimer(m, v1, 1n, KVM_XEN_PRIO_2LEVEL, 0n)).toBe(0n);
    expect(kvmXenSetVcpuId(v1, 0n)).toBe(0n);
    expect(sshot(v1, 1n)).toBe(-22n);
    expect(stop(v1, 0n)).toBe(0n);
  });
  it('fast-check: timers fire exactly once per deadline, however the clock is advanced', () => {
    fc.assert(fc.property(fc.bigInt({ min: 1n, max: 10_000n }), fc.array(fc.bigInt({ min: 0n, max: 3_000n }), { maxLength: 12 }), (deadline, steps) => {
      ev.virqs = [];
      const m = build();
      const v = m.domain(1)!.vcpus[0];
      hc(m, v, HYPERVISOR.set_timer_op, deadline);
      let now = 0n;
      for (const s of steps) {
        m.advance(s);
        now += s;
        if ((ev.virqs.length === 1) !== (now >= deadline)) return false;
      }
      return ev.virqs.length <= 1;
    }), { numRuns: 100 });
  });
});

describe('SCHEDOP', () => {
  it('block: blocks, records blocked runstate (Xen), and a timer VIRQ wakes it', () => {
    const m = build();
    const v = m.domain(1)!.vcpus[0];
    hc(m, v, HYPERVISOR.set_timer_op, 300n);
    m.advance(100n);
    expect(hc(m, v, HYPERVISOR.sched_op, BigInt(SCHEDOP.block), 0n)).toBe(0n);
    expect(schedOf(v).blocked).toBe(true);
    expect(runstateOf(v).info.state).toBe(RUNSTATE.blocked);
    m.advance(200n);
    expect(schedOf(v).blocked).toBe(false);
    expect(runstateOf(v).info.state).toBe(RUNSTATE.running);
    expect(runstateOf(v).info.time[RUNSTATE.blocked]).toBe(200n);
    expect(sumRuleHolds(m, v)).toBe(true);
  });
  it('block returns at once when events are deliverable', () => {
    const m = build();
    const v = m.domain(1)!.vcpus[0];
    ev.deliverable.add(v);
    expect(hc(m, v, HYPERVISOR.sched_op, BigInt(SCHEDOP.block), 0n)).toBe(0n);
    expect(schedOf(v).blocked).toBe(false);
  });
  it('poll: single port woken only by that port; several ports by any port', () => {
    const m = build();
    const d = m.domain(1)!;
    const v = d.vcpus[0];
    ev.pending.set(5, false);
    ev.pending.set(6, false);
    d.memory.setU32(SCRATCH + 256, 5);
    d.memory.setU64(SCRATCH, BigInt(SCRATCH + 256));
    d.memory.setU32(SCRATCH + 8, 1);
    d.memory.setU64(SCRATCH + 16, 0n);
    expect(hc(m, v, HYPERVISOR.sched_op, BigInt(SCHEDOP.poll), BigInt(SCRATCH))).toBe(0n);
    expect(schedOf(v).pollPort).toBe(5);
    ev.raise(d, 6);
    expect(schedOf(v).blocked).toBe(true);
    ev.raise(d, 5);
    expect(schedOf(v).blocked).toBe(false);
    // Two ports: any pending port wakes.
    ev.pending.set(5, false);
    ev.pending.set(6, false);
    d.memory.setU32(SCRATCH + 260, 6);
    d.memory.setU32(SCRATCH + 8, 2);
    expect(hc(m, v, HYPERVISOR.sched_op, BigInt(SCHEDOP.poll), BigInt(SCRATCH))).toBe(0n);
    ev.raise(d, 77);
    expect(schedOf(v).blocked).toBe(false);
  });
  it('poll: an invalid port is -EINVAL (Xen), a pending one returns at once, > 128 ports -EINVAL', () => {
    const m = build();
    const d = m.domain(1)!;
    const v = d.vcpus[0];
    d.memory.setU32(SCRATCH + 256, 9);
    d.memory.setU64(SCRATCH, BigInt(SCRATCH + 256));
    d.memory.setU32(SCRATCH + 8, 1);
    expect(hc(m, v, HYPERVISOR.sched_op, BigInt(SCHEDOP.poll), BigInt(SCRATCH))).toBe(-22n);
    expect(schedOf(v).blocked).toBe(false);
    ev.pending.set(9, true);
    expect(hc(m, v, HYPERVISOR.sched_op, BigInt(SCHEDOP.poll), BigInt(SCRATCH))).toBe(0n);
    expect(schedOf(v).blocked).toBe(false);
    d.memory.setU32(SCRATCH + 8, 129);
    expect(hc(m, v, HYPERVISOR.sched_op, BigInt(SCHEDOP.poll), BigInt(SCRATCH))).toBe(-22n);
  });
  it('poll timeout: absolute in Xen, relative in KVM', () => {
    for (const flavor of ['xen', 'kvm'] as const) {
      const m = build(64, flavor);
      const d = m.domain(1)!;
      const v = d.vcpus[0];
      m.advance(1000n);
      d.memory.setU64(SCRATCH, BigInt(SCRATCH + 256));
      d.memory.setU32(SCRATCH + 8, 0);
      d.memory.setU64(SCRATCH + 16, 1500n);
      expect(hc(m, v, HYPERVISOR.sched_op, BigInt(SCHEDOP.poll), BigInt(SCRATCH))).toBe(0n);
      expect(schedOf(v).blocked).toBe(true);
      m.advance(499n);
      expect(schedOf(v).blocked).toBe(true);
      m.advance(1n);
      expect(schedOf(v).blocked).toBe(flavor === 'kvm');
      m.advance(1000n);
      expect(schedOf(v).blocked).toBe(false);
    }
  });
  it('shutdown: the first code wins; shutdown_code pre-latches', () => {
    const m = build();
    const d = m.domain(1)!;
    const v = d.vcpus[0];
    d.memory.setU32(SCRATCH, SHUTDOWN.crash);
    expect(hc(m, v, HYPERVISOR.sched_op, BigInt(SCHEDOP.shutdown_code), BigInt(SCRATCH))).toBe(0n);
    d.memory.setU32(SCRATCH, SHUTDOWN.poweroff);
    expect(hc(m, v, HYPERVISOR.sched_op, BigInt(SCHEDOP.shutdown), BigInt(SCRATCH))).toBe(0n);
    expect(domainSchedOf(d)).toMatchObject({ shuttingDown: true, shutdownCode: SHUTDOWN.crash });
    expect(hc(m, v, HYPERVISOR.sched_op, 8n, 0n)).toBe(-38n);
  });
});
