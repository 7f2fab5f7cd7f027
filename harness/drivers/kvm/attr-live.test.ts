import { describe, expect, it } from 'vitest';
import { assignTarget } from './attr-live.js';
import { EVTCHNSTAT, kvmEvtchnSetattr } from '../../model/kvm-evtchn.js';
import { KVM_XEN_PRIO_2LEVEL } from '../../model/kvm-attr.js';
import { buildModel } from '../../model/evtchn-test-util.js';

describe('kvm.xen_evtchn_assign target on the kvm target', () => {
  it('an interdomain port to port 0 is an eventfd target: never the vcpu field read as a descriptor (kvm_xen_eventfd_assign)', () => {
    const { interdomain, ipi } = EVTCHNSTAT;
    // The shrunk fuzz finding: interdomain, port 0, vcpu 0, no eventfd. KVM read fd 0 from
    // the vcpu field (-EINVAL: open, not an eventfd); the op means "no descriptor".
    expect(assignTarget({ type: interdomain, port: 0n, eventfd: 0n })).toBe('invalid');
    expect(assignTarget({ type: interdomain, port: 0n, eventfd: -1n })).toBe('invalid');
    expect(assignTarget({ type: interdomain, port: 0n, eventfd: 1n })).toBe('fresh');
    expect(assignTarget({ type: interdomain, port: 3n, eventfd: 0n })).toBe('port');
    expect(assignTarget({ type: ipi, port: 0n, eventfd: 0n })).toBe('port');
    // The model answers that case -EBADF, which NOT_A_DESCRIPTOR gets from KVM.
    const d = buildModel({ flavor: 'kvm' }).domain(1)!;
    const ret = kvmEvtchnSetattr(d, { flags: 0n, sendPort: 1n, type: interdomain, port: 0n, vcpu: 0n, priority: KVM_XEN_PRIO_2LEVEL, eventfd: 0n });
    expect(ret).toBe(-9n);
  });
});
