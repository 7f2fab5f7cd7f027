// Property tests of event-channel delivery: exactly-once handling, FIFO
// priority order, and consistency of the port table, for both ABIs and widths.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { buildModel, Guest } from './evtchn-test-util.js';
import type { Domain } from './domain.js';
import { ECS, evtchnState, vcpuEvtchn, virqIsGlobal } from './evtchn.js';
import { eventChannels } from './event-delivery.js';
import { hostSend } from '../ops/evtchn.js';

const VCPUS = 3;

type Act =
  | { k: 'ipi'; vcpu: number }
  | { k: 'loopback' }
  | { k: 'send'; i: number }
  | { k: 'host'; i: number }
  | { k: 'mask'; i: number }
  | { k: 'unmask'; i: number }
  | { k: 'close'; i: number }
  | { k: 'bindVcpu'; i: number; vcpu: number }
  | { k: 'prio'; i: number; prio: number }
  | { k: 'run'; vcpu: number };

const idx = fc.nat(6);
const act: fc.Arbitrary<Act> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ k: fc.constant('ipi' as const), vcpu: fc.nat(VCPUS - 1) }) },
  { weight: 2, arbitrary: fc.constant({ k: 'loopback' as const }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('send' as const), i: idx }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('host' as const), i: idx }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('mask' as const), i: idx }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('unmask' as const), i: idx }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('close' as const), i: idx }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('bindVcpu' as const), i: idx, vcpu: fc.nat(VCPUS - 1) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('prio' as const), i: idx, prio: fc.nat(15) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('run' as const), vcpu: fc.nat(VCPUS - 1) }) },
);

/** Impossible combinations the port table must never reach. */
function checkInvariants(d: Domain): void {
  const s = evtchnState(d);
  const ec = eventChannels();
  expect(s.chans[0].state).toBe(ECS.reserved);
  expect(s.chans.length % 64).toBe(0);
  for (const ch of s.chans) {
    if (ch.state === ECS.free) {
      expect(ch.notifyVcpu).toBe(0);
      if (ch.port > 0) expect(ec.portPending(d, ch.port)).toBe(null);
    }
    if (ch.state === ECS.interdomain) {
      const rd = d.model.domain(ch.remoteDom)!;
      const peer = evtchnState(rd).chans[ch.remotePort];
      expect(peer.state).toBe(ECS.interdomain);
      expect(peer.remoteDom).toBe(d.id);
      expect(peer.remotePort).toBe(ch.port);
    }
    if (ch.state === ECS.virq) {
      const owner = virqIsGlobal(ch.virq) ? d.vcpus[0] : d.vcpus[ch.notifyVcpu];
      expect(vcpuEvtchn(owner).virqToPort[ch.virq]).toBe(ch.port);
    }
    expect(ch.notifyVcpu).toBeLessThan(d.vcpus.length);
    expect(ch.priority).toBeLessThanOrEqual(15);
  }
  for (const v of d.vcpus) {
    vcpuEvtchn(v).virqToPort.forEach((port, virq) => {
      if (port) expect(s.chans[port]).toMatchObject({ state: ECS.virq, virq });
    });
  }
}

describe('event delivery properties', () => {
  it('every event sent to an open port is handled exactly once once everything is unmasked and handlers ran', () => {
    fc.assert(
      fc.property(fc.constantFrom<'2l' | 'fifo'>('2l', 'fifo'), fc.constantFrom<64 | 32>(64, 32), fc.array(act, { maxLength: 60 }), (abi, mode, acts) => {
        const m = buildModel({ mode, vcpus: VCPUS });
        const d = m.domain(1)!;
        const guests = d.vcpus.map((v) => new Guest(m, v));
        const g = guests[0];
        if (abi === 'fifo') expect(g.useFifo()).toBe(0);
        /** Ports the guest holds open, in creation order. */
        const open: number[] = [];
        /** Receiving ports with an event not yet handled (repeat sends coalesce). */
        const outstanding = new Set<number>();
        const masked = new Set<number>();
        const pick = (i: number): number | undefined => (open.length ? open[i % open.length] : undefined);
        const receiver = (port: number): number => {
          const ch = evtchnState(d).chans[port];
          return ch.state === ECS.interdomain ? ch.remotePort : port;
        };
        const handle = (vcpu: number): void => {
          for (const p of guests[vcpu].runUpcall()) {
            expect(outstanding.has(p), `port ${p} handled without an outstanding event`).toBe(true);
            outstanding.delete(p);
          }
        };
        // Linux's unmask: the hypercall with the mask bit still set.
        const unmask = (p: number): void => {
          g.setMask(p, true);
          expect(g.unmask(p)).toBe(0);
          masked.delete(p);
        };
        // A newly bound port may carry the mask bit of a closed channel that had its number:
        // Linux unmasks it when the irq starts up (drivers/xen/events, startup_dynirq).
        const startup = (p: number): void => { if (masked.has(p)) unmask(p); };
        for (const a of acts) {
          switch (a.k) {
            case 'ipi': {
              const p = g.bindIpi(a.vcpu);
              if (p > 0) { open.push(p); startup(p); }
              break;
            }
            case 'loopback': {
              const p = g.allocUnbound();
              if (p < 0) break;
              const l = g.bindInterdomain(0x7ff0, p);
              open.push(p);
              startup(p);
              if (l > 0) { open.push(l); outstanding.add(l); startup(l); }
              break;
            }
            case 'send': {
              const p = pick(a.i);
              if (p === undefined) break;
              const st = evtchnState(d).chans[p].state;
              expect(g.send(p)).toBe(0);
              if (st !== ECS.unbound) outstanding.add(receiver(p));
              break;
            }
            case 'host': {
              const p = pick(a.i);
              if (p === undefined) break;
              expect(hostSend(m, d, p, evtchnState(d).chans[p].notifyVcpu, 0)).toBe(0n);
              outstanding.add(p);
              break;
            }
            case 'mask': {
              const p = pick(a.i);
              if (p !== undefined) { g.setMask(p, true); masked.add(p); }
              break;
            }
            case 'unmask': {
              const p = pick(a.i);
              if (p !== undefined && masked.has(p)) unmask(p);
              break;
            }
            case 'close': {
              const p = pick(a.i);
              if (p === undefined) break;
              const ch = evtchnState(d).chans[p];
              const peer = ch.state === ECS.interdomain ? ch.remotePort : 0;
              expect(g.close(p)).toBe(0);
              open.splice(open.indexOf(p), 1);
              outstanding.delete(p);
              // The mask bit belongs to the port number and outlives the channel: Xen's
              // evtchn_free (xen/common/event_channel.c) clears the pending bit, not the mask.
              // The peer became UNBOUND; a loopback peer stays open for the guest.
              void peer;
              break;
            }
            case 'bindVcpu': {
              const p = pick(a.i);
              if (p === undefined) break;
              const st = evtchnState(d).chans[p].state;
              if (st !== ECS.interdomain && st !== ECS.unbound) break;
              // Linux rebinding: mask, EVTCHNOP_bind_vcpu, unmask if it was unmasked.
              const was = masked.has(p);
              g.setMask(p, true);
              expect(g.bindVcpu(p, a.vcpu)).toBe(0);
              if (!was) unmask(p);
              break;
            }
            case 'prio': {
              const p = pick(a.i);
              if (p === undefined) break;
              expect(g.setPriority(p, a.prio)).toBe(abi === 'fifo' ? 0 : -38);
              break;
            }
            case 'run':
              handle(a.vcpu);
              break;
          }
          checkInvariants(d);
        }
        for (const p of [...masked]) unmask(p);
        for (let round = 0; round < 2; round++) for (let v = 0; v < VCPUS; v++) handle(v);
        expect([...outstanding]).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });

  it('FIFO handles higher priorities first, each queue in arrival order', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(15), { minLength: 1, maxLength: 30 }), fc.func(fc.integer()), (prios, order) => {
        const m = buildModel();
        const g = new Guest(m, m.domain(1)!.vcpus[0]);
        expect(g.useFifo()).toBe(0);
        const ports = prios.map((pr) => {
          const p = g.bindIpi(0);
          expect(g.setPriority(p, pr)).toBe(0);
          return { p, pr };
        });
        const sendOrder = [...ports].sort((a, b) => order(a.p) - order(b.p) || a.p - b.p);
        for (const { p } of sendOrder) expect(g.send(p)).toBe(0);
        const expected = sendOrder.map((x, i) => ({ ...x, i })).sort((a, b) => a.pr - b.pr || a.i - b.i).map((x) => x.p);
        expect(g.runUpcall()).toEqual(expected);
      }),
      { numRuns: 200 },
    );
  });

  it('2-level handles in port order within the selected words and never twice', () => {
    fc.assert(
      fc.property(fc.constantFrom<64 | 32>(64, 32), fc.uniqueArray(fc.integer({ min: 1, max: 200 }), { maxLength: 40 }), (mode, picks) => {
        const m = buildModel({ mode });
        const g = new Guest(m, m.domain(1)!.vcpus[0]);
        const ports: number[] = [];
        for (let i = 0; i < 200; i++) ports.push(g.bindIpi(0));
        for (const i of picks) expect(g.send(ports[i - 1])).toBe(0);
        const want = picks.map((i) => ports[i - 1]).sort((a, b) => a - b);
        expect(g.runUpcall()).toEqual(want);
        expect(g.runUpcall()).toEqual([]);
      }),
      { numRuns: 100 },
    );
  });
});
