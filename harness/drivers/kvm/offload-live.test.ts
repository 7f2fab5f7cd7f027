import { describe, expect, it } from 'vitest';
import { buildModel, Guest } from '../../model/evtchn-test-util.js';
import { setTimerOp, VIRQ_TIMER } from '../../model/timer.js';
import { applyOffload, offloadSnapshot } from './offload-live.js';
import type { GuestVm } from './addon.js';
import { kvmXenSetTimer } from '../../model/kvm-attr.js';

/** A stand-in for the VM that records the ioctls the VMM layer would issue. */
function recorder(kvmTimer = { port: 0, priority: 0, expiresNs: 0n }) {
  const calls: Array<Record<string, unknown>> = [];
  const vcpu = (i: number) => ({
    xenSetAttr: (a: object) => calls.push({ vcpu: i, ...a }),
    xenGetAttr: (type: string) => ({ type, ...kvmTimer }),
  });
  const guest = { vm: { xenSetAttr: (a: object) => calls.push({ vm: true, ...a }) }, vcpus: [vcpu(0), vcpu(1)] } as unknown as GuestVm;
  return { guest, calls };
}

describe('what the kvm target hands KVM after a VMM-served hypercall (offload-live.ts)', () => {
  it('assigns a bound IPI port, deassigns it on close, and leaves unchanged entries alone', () => {
    const m = buildModel({ flavor: 'kvm', vcpus: 2 });
    const d = m.domain(1)!;
    const g = new Guest(m, d.vcpu(0)!);
    const { guest, calls } = recorder();
    let before = offloadSnapshot(d);
    const p = g.bindIpi(1);
    applyOffload(guest, before, offloadSnapshot(d));
    expect(calls).toEqual([{ vm: true, type: 'evtchn', sendPort: p, evtchnType: 5, flags: 0, deliver: { kind: 'port', port: p, vcpu: 1, priority: 0xffffffff } }]);
    calls.length = 0;
    before = offloadSnapshot(d);
    g.allocUnbound();
    applyOffload(guest, before, offloadSnapshot(d));
    expect(calls).toEqual([]);
    before = offloadSnapshot(d);
    g.close(p);
    applyOffload(guest, before, offloadSnapshot(d));
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ vm: true, type: 'evtchn', sendPort: p, flags: 1 });
  });

  it('gives the VIRQ_TIMER port to the vCPU it is bound on, and port 0 when it closes', () => {
    const m = buildModel({ flavor: 'kvm', vcpus: 2 });
    const d = m.domain(1)!;
    const g = new Guest(m, d.vcpu(0)!);
    const { guest, calls } = recorder();
    let before = offloadSnapshot(d);
    const t = g.bindVirq(VIRQ_TIMER, 1);
    applyOffload(guest, before, offloadSnapshot(d));
    expect(calls).toEqual([{ vcpu: 1, type: 'timer', port: t, priority: 0xffffffff, expiresNs: 0n }]);
    calls.length = 0;
    before = offloadSnapshot(d);
    g.close(t);
    applyOffload(guest, before, offloadSnapshot(d));
    expect(calls).toEqual([{ vcpu: 1, type: 'timer', port: 0, priority: 0xffffffff, expiresNs: 0n }]);
  });

  it('hands KVM the one-shot deadline the guest armed before it bound VIRQ_TIMER, as QEMU does (fuzz finding on 6.1 and 6.12)', () => {
    const m = buildModel({ flavor: 'kvm', vcpus: 2 });
    const d = m.domain(1)!;
    const g = new Guest(m, d.vcpu(0)!);
    const { guest, calls } = recorder();
    setTimerOp(m, d.vcpu(0)!, 1n << 49n);
    const before = offloadSnapshot(d);
    const t = g.bindVirq(VIRQ_TIMER, 0);
    applyOffload(guest, before, offloadSnapshot(d));
    expect(calls).toEqual([{ vcpu: 0, type: 'timer', port: t, priority: 0xffffffff, expiresNs: 1n << 49n }]);
  });

  it('keeps the deadline of a timer KVM already held when VIRQ_TIMER is bound (fuzz finding on 6.12, VMM ops)', () => {
    const m = buildModel({ flavor: 'kvm', vcpus: 2 });
    const d = m.domain(1)!;
    const g = new Guest(m, d.vcpu(0)!);
    // The VMM gave KVM a timer on port 2 armed 2^49 ns (kvm.xen_set_timer): its own record has no deadline.
    const { guest, calls } = recorder({ port: 2, priority: 0xffffffff, expiresNs: 1n << 49n });
    kvmXenSetTimer(m, d.vcpu(0)!, 2n, 0xffffffffn, 0n);
    const before = offloadSnapshot(d);
    const t = g.bindVirq(VIRQ_TIMER, 0);
    applyOffload(guest, before, offloadSnapshot(d));
    expect(calls).toEqual([{ vcpu: 0, type: 'timer', port: t, priority: 0xffffffff, expiresNs: 1n << 49n }]);
  });
});
