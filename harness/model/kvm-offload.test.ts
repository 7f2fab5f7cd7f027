import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { buildModel, Guest } from './evtchn-test-util.js';
import { kvmEvtchnEntries, EVTCHNSTAT } from './kvm-evtchn.js';
import { kvmXenGetAttr, kvmXenSetAttr, kvmXenSetTimer, KVM_XEN_PRIO_2LEVEL } from './kvm-attr.js';
import { enterGuest } from './domain.js';
import { setTimerOp, timerOf, VIRQ_TIMER } from './timer.js';
import { testBit, sharedInfoMem } from './evtchn.js';

const pending = (g: Guest, port: number): boolean => {
  const { mem, base } = sharedInfoMem(g.v.domain);
  return testBit(mem, base + 0x800, port); // evtchn_pending: after 32 vcpu_info of 64 bytes in both widths
};

describe('what a VMM hands KVM as QEMU does (model-kvm)', () => {
  it('an IPI port is in KVM\'s table from bind to close, on the vCPU it notifies', () => {
    const m = buildModel({ flavor: 'kvm', vcpus: 2 });
    const g = new Guest(m, m.domain(1)!.vcpu(0)!);
    const p = g.bindIpi(1);
    expect(kvmEvtchnEntries(m.domain(1)!).get(p)).toEqual({ type: EVTCHNSTAT.ipi, port: p, vcpu: 1 });
    const u = g.allocUnbound();
    expect(kvmEvtchnEntries(m.domain(1)!).has(u)).toBe(false);
    expect(g.close(p)).toBe(0);
    expect(kvmEvtchnEntries(m.domain(1)!).has(p)).toBe(false);
  });

  it('EVTCHNOP_reset takes every IPI port back', () => {
    const m = buildModel({ flavor: 'kvm' });
    const g = new Guest(m, m.domain(1)!.vcpu(0)!);
    for (let i = 0; i < 5; i++) g.bindIpi(0);
    expect(kvmEvtchnEntries(m.domain(1)!).size).toBe(5);
    expect(g.reset()).toBe(0);
    expect(kvmEvtchnEntries(m.domain(1)!).size).toBe(0);
  });

  it('Xen itself hands nothing over', () => {
    const m = buildModel({ flavor: 'xen' });
    const g = new Guest(m, m.domain(1)!.vcpu(0)!);
    g.bindIpi(0);
    g.bindVirq(VIRQ_TIMER, 0);
    expect(kvmEvtchnEntries(m.domain(1)!).size).toBe(0);
    expect(kvmXenGetAttr(m.domain(1)!, g.v, 'timer_port')).toBe(0n);
  });

  it('VIRQ_TIMER becomes KVM\'s timer port; closing it stops KVM\'s timer', () => {
    const m = buildModel({ flavor: 'kvm' });
    const d = m.domain(1)!;
    const g = new Guest(m, d.vcpu(0)!);
    const p = g.bindVirq(VIRQ_TIMER, 0);
    expect(kvmXenGetAttr(d, g.v, 'timer_port')).toBe(BigInt(p));
    setTimerOp(m, g.v, 1n << 40n);
    expect(kvmXenGetAttr(d, g.v, 'timer_expires')).toBe(1n << 40n);
    expect(g.close(p)).toBe(0);
    expect(kvmXenGetAttr(d, g.v, 'timer_port')).toBe(0n);
    expect(kvmXenGetAttr(d, g.v, 'timer_expires')).toBe(0n);
    expect(timerOf(g.v).singleshot).toBeNull();
  });

  it('KVM\'s timer raises its own port, bound or not, once, and reads back 0 after', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1023 }), fc.bigInt({ min: 1n, max: 1n << 40n }), (port, delay) => {
        const m = buildModel({ flavor: 'kvm', mode: 32 });
        const d = m.domain(1)!;
        const g = new Guest(m, d.vcpu(0)!);
        expect(kvmXenSetTimer(m, g.v, BigInt(port), KVM_XEN_PRIO_2LEVEL, m.now + delay)).toBe(0n);
        expect(pending(g, port)).toBe(false);
        m.advance(delay - 1n);
        expect(pending(g, port)).toBe(false);
        m.advance(1n);
        expect(pending(g, port)).toBe(true);
        expect(kvmXenGetAttr(d, g.v, 'timer_expires')).toBe(0n);
      }),
    );
  });
});

describe('KVM\'s timer without a shared_info (xen_timer_callback, kvm_xen_inject_timer_irqs)', () => {
  const NONE = (1n << 64n) - 1n;
  const setup = () => {
    const m = buildModel({ flavor: 'kvm' });
    const d = m.domain(1)!;
    const g = new Guest(m, d.vcpu(0)!);
    const si = BigInt(d.sharedInfoGpa! >> 12);
    return { m, d, g, v: d.vcpu(0)!, si };
  };

  it('holds an expiry KVM cannot raise and raises it at the vCPU\'s next entry once shared_info is back', () => {
    const { m, d, g, v, si } = setup();
    expect(kvmXenSetAttr(d, v, 'shared_info', NONE)).toBe(0n);
    expect(kvmXenSetTimer(m, v, 1n, KVM_XEN_PRIO_2LEVEL, NONE)).toBe(0n);
    expect(kvmXenSetAttr(d, v, 'shared_info', si)).toBe(0n);
    expect(pending(g, 1)).toBe(false);
    enterGuest(v);
    expect(pending(g, 1)).toBe(true);
  });

  it('reading the timer attribute delivers a held expiry first, with no entry (6.12 kvm_xen_vcpu_get_attr)', () => {
    for (const attr of ['timer_port', 'timer_priority', 'timer_expires'] as const) {
      const { m, d, g, v, si } = setup();
      kvmXenSetAttr(d, v, 'shared_info', NONE);
      kvmXenSetTimer(m, v, 1n, KVM_XEN_PRIO_2LEVEL, NONE);
      kvmXenSetAttr(d, v, 'shared_info', si);
      expect(pending(g, 1)).toBe(false);
      kvmXenGetAttr(d, v, attr);
      expect(pending(g, 1)).toBe(true);
      expect(kvmXenGetAttr(d, v, 'timer_expires')).toBe(0n);
    }
  });

  it('drops it at an entry still without shared_info, and a new timer forgets it', () => {
    const { m, d, g, v, si } = setup();
    kvmXenSetAttr(d, v, 'shared_info', NONE);
    kvmXenSetTimer(m, v, 1n, KVM_XEN_PRIO_2LEVEL, NONE);
    enterGuest(v);
    kvmXenSetAttr(d, v, 'shared_info', si);
    enterGuest(v);
    expect(pending(g, 1)).toBe(false);
    kvmXenSetAttr(d, v, 'shared_info', NONE);
    kvmXenSetTimer(m, v, 1n, KVM_XEN_PRIO_2LEVEL, NONE);
    kvmXenSetTimer(m, v, 1n, KVM_XEN_PRIO_2LEVEL, 0n); // port kept, no deadline: timer_pending cleared
    kvmXenSetAttr(d, v, 'shared_info', si);
    enterGuest(v);
    expect(pending(g, 1)).toBe(false);
  });

  it('with shared_info in place raises the port at once, as before', () => {
    const { m, g, v } = setup();
    kvmXenSetTimer(m, v, 1n, KVM_XEN_PRIO_2LEVEL, NONE);
    expect(pending(g, 1)).toBe(true);
  });
});
