import { describe, expect, it } from 'vitest';
import { upcallForwarding } from './upcall-live.js';
import { kvmCapabilities } from './kvm-driver.js';
import { xenHvmFlagNames, type KvmProbe } from './addon.js';

function probe(xenHvm: number, irqchip = true): KvmProbe {
  return {
    module: 'kvm_amd' as KvmProbe['module'], apiVersion: 12, xenHvm, xenHvmFlags: xenHvmFlagNames(xenHvm),
    irqchip, irqRouting: true, irqfd: true, immediateExit: true, maxVcpus: 8,
  };
}

describe('upcall vector forwarding to KVM', () => {
  it('sets the vCPU attribute for each changed per-vCPU vector, the VM attribute for the callback vector', () => {
    expect(upcallForwarding({ vcpu: [0, 0], callback: null }, { vcpu: [0, 0xf3], callback: null })).toEqual([{ kind: 'vcpu', vcpu: 1, vector: 0xf3 }]);
    expect(upcallForwarding({ vcpu: [0xf3], callback: null }, { vcpu: [0xf3], callback: null })).toEqual([]);
    expect(upcallForwarding({ vcpu: [0], callback: null }, { vcpu: [0], callback: 0xf1 })).toEqual([{ kind: 'vm', vector: 0xf1 }]);
    // Leaving the vector type (e.g. to a GSI) turns KVM's callback vector off.
    expect(upcallForwarding({ vcpu: [0], callback: 0xf1 }, { vcpu: [0], callback: null })).toEqual([{ kind: 'vm', vector: 0 }]);
  });

  it('maps the capabilities to KVM_CAP_XEN_HVM bits and the in-kernel LAPIC', () => {
    const k61 = kvmCapabilities(probe(0x3f), 'amd');
    expect(k61.has.has('evtchn.upcall_vector')).toBe(true);
    expect(k61.has.has('evtchn.callback_vector')).toBe(true);
    expect(k61.has.has('host-op:evtchn.take_upcalls')).toBe(true);
    const noSend = kvmCapabilities(probe(0x1f), 'amd');
    expect(noSend.missing.get('evtchn.upcall_vector')).toMatch(/lacks EVTCHN_SEND \(bit 5\)/);
    expect(noSend.has.has('evtchn.callback_vector')).toBe(true);
    const noLapic = kvmCapabilities(probe(0x1ff, false), 'amd');
    expect(noLapic.missing.get('evtchn.upcall_vector')).toMatch(/in-kernel LAPIC/);
    expect(noLapic.missing.get('evtchn.callback_vector')).toMatch(/in-kernel LAPIC/);
  });
});
