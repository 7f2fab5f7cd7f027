import { describe, expect, it } from 'vitest';
import { kvmCapabilities } from './kvm-driver.js';
import { XEN_HVM_FLAG, xenHvmFlagNames, type KvmProbe } from './addon.js';
import { loadPaths } from '../../suite/loader.js';
import { plan } from '../../runner/plan.js';
import { skipReason } from '../../runner/run-case.js';
import { CAPABILITIES } from '../../suite/vocabulary.js';

function probe(xenHvm: number, irqchip = true): KvmProbe {
  return {
    module: 'kvm_amd' as KvmProbe['module'], apiVersion: 12, xenHvm, xenHvmFlags: xenHvmFlagNames(xenHvm),
    irqchip, irqRouting: true, irqfd: true, immediateExit: true, maxVcpus: 8,
  };
}

describe('kvm capabilities', () => {
  it('names the missing KVM_CAP_XEN_HVM bit for each Xen capability', () => {
    const caps = kvmCapabilities(probe(0x3f), 'amd');
    expect(caps.has.has('runstate')).toBe(true);
    expect(caps.has.has('runstate.update_flag')).toBe(false);
    expect(caps.missing.get('runstate.update_flag')).toMatch(/KVM_CAP_XEN_HVM = 0x3f lacks RUNSTATE_UPDATE_FLAG \(bit 6\)/);
    const none = kvmCapabilities(probe(0), 'amd');
    expect(none.has.has('kvm.plain')).toBe(true);
    expect(none.missing.get('shared_info')).toMatch(/KVM_CAP_XEN_HVM = 0/);
    // Every vocabulary capability is either present or explained.
    for (const c of Object.keys(CAPABILITIES)) expect(none.has.has(c) || none.missing.has(c)).toBe(true);
  });

  it('SCHEDOP_poll is the same capability for both guest widths: a 32-bit poll case runs on every kernel with sched.poll', () => {
    // Linux 6.1 answers a 32-bit poll as a yield; that is a known divergence (expectations/kvm-6.1.yaml), not a skip.
    const { cases, problems } = loadPaths(['suites/sched/poll-events-deliverable-kvm.yaml']);
    expect(problems).toEqual([]);
    const caps = kvmCapabilities(probe(0x3f), 'amd');
    expect(plan(cases, {}).map((pc) => skipReason(pc, caps))).toEqual([undefined, undefined]);
    expect(Object.keys(CAPABILITIES)).not.toContain('sched.poll.compat');
  });
});

describe('host-op OUT values', () => {
  it('a case reading an OUT value KVM cannot show skips naming it; one reading only observable values runs', () => {
    const caps = kvmCapabilities(probe(0x1ff), 'amd');
    const reasons = (file: string) => {
      const { cases, problems } = loadPaths([file]);
      expect(problems).toEqual([]);
      return plan(cases, {}).map((pc) => skipReason(pc, caps));
    };
    for (const r of reasons('suites/sched/sched-yield-counted.yaml')) {
      expect(r).toMatch(/host-op:sched\.status\.yields \(KVM answers SCHEDOP_yield in-kernel/);
    }
    for (const r of reasons('suites/sched/poll-too-many-ports.yaml')) expect(r).toBeUndefined();
  });
});

describe('servedBy on the kvm target', () => {
  it('names a server for every host op the driver implements and for every kvm.* op', async () => {
    const { defaultServedBy, HOST_OP_SERVER, KVM_HOST_OPS } = await import('./kvm-driver.js');
    const { ops } = await import('../../ops/index.js');
    const kvmOps = [...ops.keys()].filter((n) => n.startsWith('kvm.'));
    expect(kvmOps.length).toBeGreaterThan(0);
    for (const op of [...KVM_HOST_OPS, ...kvmOps]) expect(HOST_OP_SERVER[op], op).toMatch(/^(kernel|vmm)$/);
    expect(defaultServedBy({ kind: 'host', op: 'evtchn.host_send', args: {} })).toBe('kernel');
    expect(defaultServedBy({ kind: 'host', op: 'evtchn.set_mask', args: {} })).toBe('vmm');
    expect(defaultServedBy({ kind: 'check' })).toBe('vmm');
    expect(defaultServedBy({ kind: 'wrmsr', msr: 0x40000000, value: 0n })).toBe('kernel');
  });
});

describe('the VMM layer\'s view of a timer handed to KVM', () => {
  it('keeps the port but never fires it: a timer set already due writes nothing into guest memory (6.1 f30)', async () => {
    const { vmmNoteKvmTimer } = await import('./kvm-driver.js');
    const { buildModel } = await import('../../model/evtchn-test-util.js');
    const { kvmVcpuAttrs } = await import('../../model/kvm-vcpu.js');
    const { timerOf } = await import('../../model/timer.js');
    const m = buildModel({ flavor: 'kvm', mode: 32 });
    const v = m.domain(1)!.vcpu(0)!;
    const before = m.domain(1)!.memory.read(0x80000, 4096);
    vmmNoteKvmTimer(m, v, 1n, 0xffffffffn);
    expect(kvmVcpuAttrs(v).timerPort).toBe(1n);
    expect(timerOf(v).singleshot).toBeNull();
    expect(m.domain(1)!.memory.read(0x80000, 4096)).toEqual(before);
  });
});
