import { describe, expect, it } from 'vitest';
import { buildModel, Guest } from './evtchn-test-util.js';
import type { Vcpu } from './domain.js';
import { eventChannels } from './event-delivery.js';
import { ECS, evtchnState, VIRQ } from './evtchn.js';
import { wrmsr } from './hypercall.js';
import { XEN_ERRNO } from './errno.js';
import { hypercall } from './hypercall.js';
import { HVMOP, HVM_PARAM, hvmVcpu } from './hvm-op.js';

const E = (n: keyof typeof XEN_ERRNO) => -XEN_ERRNO[n];
/** evtchn_upcall_pending of the vCPU's vcpu_info. */
const upcallPending = (v: Vcpu) => v.domain.memory.u8(v.vcpuInfoAddress()!) !== 0;

describe('event channel port table', () => {
  it('allocates the lowest free port from 1 and reuses closed ports', () => {
    const m = buildModel();
    const g = new Guest(m, m.domain(1)!.vcpus[0]);
    expect([g.allocUnbound(0), g.allocUnbound(0), g.allocUnbound(0)]).toEqual([1, 2, 3]);
    expect(g.close(2)).toBe(0);
    expect(g.bindIpi(0)).toBe(2);
    expect(g.close(0)).toBe(E('EINVAL'));
  });

  it('caps 2-level ports by the latched width, which the hypercall MSR write latches', () => {
    for (const mode of [64, 32] as const) {
      const m = buildModel({ mode, domains: [{ id: 1, limits: { max_evtchn_port: 9999 } }] });
      const g = new Guest(m, m.domain(1)!.vcpus[0]);
      let last = 0;
      for (;;) {
        const p = g.allocUnbound(0);
        if (p < 0) {
          expect(p).toBe(E('ENOSPC'));
          break;
        }
        last = p;
      }
      expect(last).toBe(mode * mode - 1);
    }
  });

  it('a 32-bit MSR write latches compat shared_info: 1024 ports', () => {
    const m = buildModel({ domains: [{ id: 1, limits: { max_evtchn_port: 9999 } }] });
    const d = m.domain(1)!;
    d.vcpus[0].mode = 32;
    expect(wrmsr(m, d.vcpus[0], 0x40000000, 0x81000n).ok).toBe(true);
    d.vcpus[0].mode = 64;
    const g = new Guest(m, d.vcpus[0]);
    let n = 0;
    while (g.allocUnbound(0) > 0) n++;
    expect(n).toBe(1023);
  });

  it('destroying a domain leaves its interdomain peers UNBOUND towards it', () => {
    const m = buildModel({ domains: [{ id: 1 }, { id: 2 }] });
    const g1 = new Guest(m, m.domain(1)!.vcpus[0]);
    const g2 = new Guest(m, m.domain(2)!.vcpus[0]);
    const p = g1.allocUnbound(2);
    const l = g2.bindInterdomain(1, p);
    expect(l).toBe(1);
    m.destroyDomain(2);
    const ch = evtchnState(m.domain(1)!).chans[p];
    expect(ch.state).toBe(ECS.unbound);
    expect(ch.unboundRemote).toBe(2);
  });
});

describe('EventChannelSubsystem contract', () => {
  it('sendVirq raises a bound per-vCPU VIRQ on its vCPU and drops an unbound one', () => {
    const m = buildModel({ vcpus: 2 });
    const d = m.domain(1)!;
    const g = new Guest(m, d.vcpus[0]);
    const ec = eventChannels();
    ec.sendVirq(d.vcpus[1], VIRQ.TIMER);
    expect(upcallPending(d.vcpus[1])).toBe(false);
    const p = g.bindVirq(VIRQ.TIMER, 1);
    expect(ec.portPending(d, p)).toBe(false);
    ec.sendVirq(d.vcpus[1], VIRQ.TIMER);
    expect(ec.portPending(d, p)).toBe(true);
    expect(upcallPending(d.vcpus[1])).toBe(true);
    expect(upcallPending(d.vcpus[0])).toBe(false);
    // Without a callback that is no interrupt a Xen HVM vCPU would take (hvm_local_events_need_delivery).
    expect(ec.eventsDeliverable(d.vcpus[1])).toBe(false);
    expect(new Guest(m, d.vcpus[1]).runUpcall()).toEqual([p]);
    expect(ec.portPending(d, 40)).toBe(null);
  });

  it('notifies pollers on 0->1 of pending only (2-level), also for masked ports', () => {
    const m = buildModel();
    const d = m.domain(1)!;
    const g = new Guest(m, d.vcpus[0]);
    const seen: number[] = [];
    eventChannels().onPending((dd, port) => { if (dd === d) seen.push(port); });
    const p = g.bindIpi(0);
    g.setMask(p, true);
    g.send(p);
    g.send(p);
    expect(seen).toEqual([p]);
  });

  it('keeps 2-level state in Xen\'s page while shared_info is not mapped', () => {
    const m = buildModel();
    const d = m.domain(1)!;
    d.sharedInfoGpa = null;
    const g = new Guest(m, d.vcpus[0]);
    const p = g.bindIpi(0);
    expect(g.send(p)).toBe(0);
    expect(eventChannels().portPending(d, p)).toBe(true);
  });
});

describe('host delivery (a kernel that sets 2-level bits for the VMM)', () => {
  it('hands every 2-level raise to Domain.hostDelivery, which then owns the bits; pollers still hear of it', () => {
    const m = buildModel({ vcpus: 2 });
    const d = m.domain(1)!;
    const g = new Guest(m, d.vcpus[0]);
    const p = g.bindIpi(1);
    const handed: Array<[number, number]> = [];
    const seen: number[] = [];
    eventChannels().onPending((dd, port) => { if (dd === d) seen.push(port); });
    // The stand-in kernel sets the pending bit as KVM_XEN_HVM_EVTCHN_SEND would, nothing else.
    d.hostDelivery = (v, port) => {
      handed.push([v.id, port]);
      const si = d.sharedInfoGpa!;
      d.memory.write(si + 2048 + Math.floor(port / 8), Uint8Array.of(d.memory.u8(si + 2048 + Math.floor(port / 8)) | (1 << (port % 8))));
      return true;
    };
    expect(g.send(p)).toBe(0);
    expect(handed).toEqual([[1, p]]);
    expect(seen).toEqual([p]);
    expect(eventChannels().portPending(d, p)).toBe(true);
    // The model set neither the selector nor the upcall: those were the kernel's to set.
    expect(upcallPending(d.vcpus[1])).toBe(false);
    // A second send of a pending port is handed over too (the kernel decides), no new poll wake-up.
    expect(g.send(p)).toBe(0);
    expect(handed).toEqual([[1, p], [1, p]]);
    expect(seen).toEqual([p]);
  });

  it('a refusal (no shared_info with the kernel) leaves the bits to the model; FIFO is never handed over', () => {
    const m = buildModel();
    const d = m.domain(1)!;
    const g = new Guest(m, d.vcpus[0]);
    let asked = 0;
    d.hostDelivery = () => { asked++; return false; };
    const p = g.bindIpi(0);
    expect(g.send(p)).toBe(0);
    expect(asked).toBe(1);
    expect(upcallPending(d.vcpus[0])).toBe(true);
    expect(g.close(p)).toBe(0);
    expect(g.useFifo()).toBe(0);
    const q = g.bindIpi(0);
    expect(g.send(q)).toBe(0);
    expect(asked).toBe(1);
    expect(eventChannels().portPending(d, q)).toBe(true);
  });
});

describe('FIFO', () => {
  it('re-raises a saved 2-level pending event only once its array page exists', () => {
    const m = buildModel();
    const g = new Guest(m, m.domain(1)!.vcpus[0]);
    const p = g.allocUnbound();
    const l = g.bindInterdomain(0x7ff0, p);
    expect(g.useFifo(0)).toBe(0);
    expect(g.runUpcall()).toEqual([]);
    expect(g.expandArray(0x300)).toBe(0);
    expect(g.runUpcall()).toEqual([l]);
    expect(g.runUpcall()).toEqual([]);
  });

  it('returns to 2-level on reset and can switch again', () => {
    const m = buildModel();
    const d = m.domain(1)!;
    const g = new Guest(m, d.vcpus[0]);
    expect(g.useFifo()).toBe(0);
    expect(evtchnState(d).ops.abi).toBe('fifo');
    expect(g.setPriority(0, 3)).toBe(E('EACCES'));
    expect(g.reset()).toBe(0);
    expect(evtchnState(d).ops.abi).toBe('2l');
    const p = g.bindIpi(0);
    expect(g.setPriority(p, 3)).toBe(E('ENOSYS'));
    expect(g.useFifo()).toBe(0);
    expect(g.setPriority(p, 3)).toBe(0);
  });
});

describe('hvm_op upcall routing', () => {
  it('setting CALLBACK_IRQ latches the shared_info width from the caller\'s mode', () => {
    const m = buildModel({ domains: [{ id: 1, limits: { max_evtchn_port: 9999 } }] });
    const d = m.domain(1)!;
    const v = d.vcpus[0];
    expect(d.width).toBe(64);
    v.mode = 32;
    d.memory.write(0x100000, new Uint8Array(16));
    d.memory.setU16(0x100000, 0x7ff0);
    d.memory.setU32(0x100004, HVM_PARAM.CALLBACK_IRQ);
    d.memory.setU64(0x100008, 5n);
    expect(hypercall(m, v, { rax: 34n, rbx: BigInt(HVMOP.set_param), rcx: 0x100000n }).ret).toBe(0n);
    expect(d.width).toBe(32);
  });

  it('a per-vCPU vector is injected once per 0->1 of evtchn_upcall_pending', () => {
    const m = buildModel({ vcpus: 2 });
    const d = m.domain(1)!;
    const g = new Guest(m, d.vcpus[0]);
    d.memory.write(0x100000, new Uint8Array([1, 0, 0, 0, 0xf3, 0, 0, 0]));
    expect(hypercall(m, d.vcpus[0], { rax: 34n, rdi: BigInt(HVMOP.set_evtchn_upcall_vector), rsi: 0x100000n }).ret).toBe(0n);
    const before = hvmVcpu(d.vcpus[1]).vectorInjections;
    const p = g.bindIpi(1);
    const q = g.bindIpi(1);
    g.send(p);
    g.send(q);
    expect(hvmVcpu(d.vcpus[1]).vectorInjections - before).toBe(1);
    expect(new Guest(m, d.vcpus[1]).runUpcall()).toEqual([p, q]);
    g.send(q);
    expect(hvmVcpu(d.vcpus[1]).vectorInjections - before).toBe(2);
    expect(hvmVcpu(d.vcpus[0]).vectorInjections).toBe(0);
  });
});
