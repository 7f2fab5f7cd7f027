import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { buildModel } from './evtchn-test-util.js';
import { EVTCHNSTAT, KVM_XEN_EVTCHN_FLAG, kvmEvtchnSend, kvmEvtchnSetattr, type KvmEvtchnAttr } from './kvm-evtchn.js';

const P2 = 0xffffffffn;
const attr = (a: Partial<KvmEvtchnAttr> & { sendPort: bigint }): KvmEvtchnAttr =>
  ({ flags: 0n, type: EVTCHNSTAT.ipi, port: a.sendPort, vcpu: 0n, priority: P2, ...a });

describe('model of KVM\'s event-channel table (arch/x86/kvm/xen.c)', () => {
  it('assign / duplicate / update / deassign / reset return what kvm_xen_setattr_evtchn returns', () => {
    const d = buildModel({ vcpus: 2 }).domain(1)!;
    expect(kvmEvtchnSetattr(d, attr({ sendPort: 0n }))).toBe(-22n);
    expect(kvmEvtchnSetattr(d, attr({ sendPort: 4096n }))).toBe(-22n);
    expect(kvmEvtchnSetattr(d, attr({ sendPort: 5n, port: 6n }))).toBe(-22n);
    expect(kvmEvtchnSetattr(d, attr({ sendPort: 5n, type: EVTCHNSTAT.virq }))).toBe(-22n);
    expect(kvmEvtchnSetattr(d, attr({ sendPort: 5n, priority: 0n }))).toBe(-22n);
    expect(kvmEvtchnSetattr(d, attr({ sendPort: 5n, flags: KVM_XEN_EVTCHN_FLAG.UPDATE }))).toBe(-2n);
    expect(kvmEvtchnSetattr(d, attr({ sendPort: 5n }))).toBe(0n);
    expect(kvmEvtchnSetattr(d, attr({ sendPort: 5n }))).toBe(-17n);
    expect(kvmEvtchnSetattr(d, attr({ sendPort: 5n, flags: KVM_XEN_EVTCHN_FLAG.UPDATE, vcpu: 1n }))).toBe(0n);
    expect(kvmEvtchnSetattr(d, attr({ sendPort: 5n, flags: KVM_XEN_EVTCHN_FLAG.UPDATE, port: 6n }))).toBe(-22n);
    expect(kvmEvtchnSetattr(d, attr({ sendPort: 5n, flags: 3n }))).toBe(-22n);
    expect(kvmEvtchnSetattr(d, attr({ sendPort: 5n, flags: KVM_XEN_EVTCHN_FLAG.DEASSIGN }))).toBe(0n);
    expect(kvmEvtchnSetattr(d, attr({ sendPort: 5n, flags: KVM_XEN_EVTCHN_FLAG.DEASSIGN }))).toBe(-2n);
    expect(kvmEvtchnSetattr(d, attr({ sendPort: 9n }))).toBe(0n);
    expect(kvmEvtchnSetattr(d, attr({ sendPort: 0n, flags: KVM_XEN_EVTCHN_FLAG.RESET }))).toBe(0n);
    expect(kvmEvtchnSend(d, 9)).toBeNull();
  });

  it('limits ports by the latched width: 1024 in compat mode', () => {
    const d = buildModel({ mode: 32 }).domain(1)!;
    expect(kvmEvtchnSetattr(d, attr({ sendPort: 1024n }))).toBe(-22n);
    expect(kvmEvtchnSetattr(d, attr({ sendPort: 1023n }))).toBe(0n);
  });

  it('serves EVTCHNOP_send for a registered port on its target vCPU, and only for those', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 0, max: 1 }), (target, vcpu) => {
        const m = buildModel({ vcpus: 2, domains: [{ id: 1 }] });
        const d = m.domain(1)!;
        expect(kvmEvtchnSend(d, 300)).toBeNull();
        expect(kvmEvtchnSetattr(d, attr({ sendPort: 300n, type: EVTCHNSTAT.interdomain, port: BigInt(target), vcpu: BigInt(vcpu) }))).toBe(0n);
        expect(kvmEvtchnSend(d, 300)).toBe(0n);
        const word = d.memory.read(0x80000 + 0x800 + Math.floor(target / 64) * 8, 8);
        expect((word[(target % 64) >> 3] >> (target % 8)) & 1).toBe(1);
        expect(d.memory.read(0x80000 + vcpu * 64, 1)[0]).toBe(1);
        expect(d.memory.read(0x80000 + (1 - vcpu) * 64, 1)[0]).toBe(0);
      }),
      { numRuns: 30 },
    );
  });
});
