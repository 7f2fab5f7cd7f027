// Step arbitraries over the YAML op vocabulary. A generated step is plain data
// (op name, integer args, domain, vCPU, CPL) that becomes a YAML step as is, so
// a finding replays through `xconf run`. Arguments mix valid values, boundaries
// (limit, limit-1, the last byte of a page) and hostile ones; the weights steer
// sequences into deep state (bound and masked ports, FIFO queues, grants mapped
// and copied, registered areas, armed timers, polls).

import fc from 'fast-check';
import { big, k, step, type Gen } from './step-gen.js';
import { KVM_HOST_OPS, kvmHostGenerators } from './steps-kvm.js';
import { UNMAPPED_VA } from '../drivers/kvm/guest.js';

/** An op argument: a number, a list, a list of records, or a name (kvm.xen_get_attr's attr). */
export type ArgValue = bigint | string | bigint[] | Array<Record<string, bigint>>;

export interface FuzzStep {
  op: string;
  args: Record<string, ArgValue>;
  dom: number;
  vcpu: number;
  cpl: number;
}


/** The fixed frame numbers the fuzzer uses for its guest-side structures. */
export const FUZZ_FRAMES = {
  /** Frames granted to the peer domain: 0x300.. */
  granted: 0x300,
  /** Where mappings land in the mapping domain: 0x2000000 + n * 4096. */
  mapBase: 0x2000000,
  /** A page (guest-physical address) for vcpu_info and runstate areas. */
  area: 0x5000,
};


/** A port: the low ports in use, the limits around 2-level sizes and hostile values. */
export function portArb(limit: number): fc.Arbitrary<bigint> {
  return fc.oneof(
    { weight: 12, arbitrary: big(fc.integer({ min: 0, max: 8 })) },
    { weight: 2, arbitrary: big(fc.constantFrom(limit, limit - 1, limit + 1, 1023, 1024, 4095, 4096)) },
    { weight: 1, arbitrary: big(fc.constantFrom(0x7fffffff, 0xffffffff, -1 >>> 0)) },
  );
}

const refArb = fc.oneof(
  { weight: 10, arbitrary: big(fc.integer({ min: 0, max: 12 })) },
  { weight: 1, arbitrary: big(fc.constantFrom(511, 512, 1023, 0xffffffff)) },
);
const vcpuArgArb = (vcpus: number) => fc.oneof(
  { weight: 8, arbitrary: big(fc.integer({ min: 0, max: vcpus - 1 })) },
  { weight: 1, arbitrary: big(fc.constantFrom(vcpus, 31, 32, 0xffffffff)) },
);
/** Guest addresses: in a page, at its last bytes (page-crossing structs), and outside RAM. */
const addrArb = fc.oneof(
  { weight: 4, arbitrary: big(fc.integer({ min: 0, max: 63 }).map((o) => FUZZ_FRAMES.area + o * 64)) },
  // 4-byte aligned but not 8: fields that straddle a cache line.
  { weight: 3, arbitrary: big(fc.integer({ min: 0, max: 63 }).map((o) => FUZZ_FRAMES.area + o * 64 + 0x34 + (o & 1) * 4)) },
  { weight: 2, arbitrary: big(fc.constantFrom(FUZZ_FRAMES.area + 0xff8, FUZZ_FRAMES.area + 0xffc, FUZZ_FRAMES.area + 0xfe0)) },
  { weight: 1, arbitrary: big(fc.constantFrom(0xfff00000, 0x1000000 - 8)) },
);
const timeArb = fc.oneof(
  { weight: 6, arbitrary: fc.bigInt({ min: 1n, max: 50_000_000n }) },
  { weight: 1, arbitrary: fc.constantFrom(0n, 1n << 50n, (1n << 63n) - 1n, (1n << 64n) - 1n) },
);

export interface StepContext {
  /** Domain ids of the session: [first, peer]. */
  doms: readonly [number, number];
  vcpus: number;
  /** The first domain's max_evtchn_port. */
  portLimit: number;
  /** Ops the target (and reference) can run; all when absent. */
  allowed?: ReadonlySet<string>;
  /** A live clock: no step may block a vCPU for good (engine.ts FuzzTargets.liveClock). */
  liveClock?: boolean;
  /** Hypercalls may run at CPL 3 (default true). */
  cpl3?: boolean;
  /** The target has a dom0 of its own that the model's setup lacks (real Xen): no step names domain 0. */
  ownDom0?: boolean;
  /** Optional KVM features the targets have (absent: all of them). */
  kvmFeatures?: readonly string[];
}


/** Timer times that mean the same on a live clock and the model's: none, 2^49 ns (6.5 days) and 3 * 2^48 ns (9.8 days) ahead. */
export const LIVE_CLOCK_TIMES = [0n, 1n << 49n, 3n << 48n] as const;
/** A poll's timeout on a live clock: already past, so no poll holds a vCPU for good. */
export const LIVE_POLL_TIMEOUT = 1000n;

/** Every op the fuzzer generates, with its weight. */
export function generators(c: StepContext): Array<{ weight: number; arbitrary: Gen }> {
  const port = portArb(c.portLimit);
  // Timer deadlines are absolute system time. The model's clock starts near 0 and moves only
  // when a step says; a live one has run for seconds: a deadline of a few ms is past on one
  // and ahead on the other. On a live clock, only "none" and far-future deadlines (2^49 ns:
  // 6.5 days; 3 * 2^48: 9.8 days) mean the same on both. Not 2^50 or more: SCHEDOP_set_timer_op
  // fires a deadline 2^50 ns or more ahead after 100 ms (Xen's Linux workaround,
  // xen/common/sched/core.c do_set_timer_op; KVM's kvm_xen_hcall_set_timer_op the same),
  // which a live clock reaches during a long step and the model's does not.
  const timeout = c.liveClock ? fc.constantFrom(...LIVE_CLOCK_TIMES) : timeArb;
  const [self, peer] = c.doms;
  const domArg = big(fc.constantFrom(k('DOMID_SELF'), self, peer, ...(c.ownDom0 ? [] : [0]), 0x7ff4).map(Number));
  const vcpu = vcpuArgArb(c.vcpus);
  const w = (weight: number, arbitrary: Gen) => ({ weight, arbitrary });
  const all = [
    // Event channels.
    w(6, step('evtchn.alloc_unbound', fc.record({ dom: domArg, remote_dom: domArg }))),
    w(3, step('evtchn.bind_ipi', fc.record({ vcpu }))),
    w(3, step('evtchn.bind_virq', fc.record({ virq: big(fc.constantFrom(0, 1, 2, 3, 7, 24)), vcpu }))),
    w(2, step('evtchn.bind_interdomain', fc.record({ remote_dom: big(fc.constantFrom(peer, self, 0x7ff0)), remote_port: port }))),
    w(2, step('evtchn.bind_vcpu', fc.record({ port, vcpu }))),
    w(6, step('evtchn.send', fc.record({ port }))),
    w(4, step('evtchn.host_send', fc.record({ port }))),
    w(3, step('evtchn.set_mask', fc.record({ port: big(fc.integer({ min: 0, max: 8 })), masked: big(fc.constantFrom(0, 1)) }))),
    w(3, step('evtchn.unmask', fc.record({ port }))),
    w(3, step('evtchn.close', fc.record({ port }))),
    w(2, step('evtchn.status', fc.record({ port, dom: domArg }))),
    w(3, step('evtchn.run_upcall')),
    // The domain's callback (HVM_PARAM_CALLBACK_IRQ): none, or the vector type with vector
    // 0, which on kvm the VMM hands to KVM (KVM_XEN_ATTR_TYPE_UPCALL_VECTOR) and KVM never
    // injects. Not a real vector: the live test guest runs with interrupts on and its
    // default handler leaves evtchn_upcall_pending set, so a level-like callback vector
    // would come back forever (live-steps.ts). Not on real Xen: there it is the guest's own domain's.
    ...(c.ownDom0 ? [] : [w(1, step('hvm.set_param', fc.record({
      index: fc.constant(k('HVM_PARAM_CALLBACK_IRQ')),
      value: fc.constantFrom(2n << 56n, 0n),
    })))]),
    w(1, step('evtchn.alloc_many', fc.record({ count: big(fc.constantFrom(4, c.portLimit - 1, c.portLimit, c.portLimit + 2)) }))),
    w(1, step('evtchn.use_fifo', fc.record({ pages: big(fc.constantFrom(1, 2)) }))),
    w(2, step('evtchn.set_priority', fc.record({ port, priority: big(fc.constantFrom(0, 7, 8, 15, 16)) }))),
    w(1, step('evtchn.reset', fc.record({ dom: big(fc.constantFrom(Number(k('DOMID_SELF')), self)) }))),
    // Grant tables: the peer grants frames to the first domain, which maps and copies them.
    w(4, step('gnttab.grant', fc.record({ ref: refArb, domid: big(fc.constantFrom(self, peer)), frame: big(fc.integer({ min: 0, max: 3 }).map((i) => FUZZ_FRAMES.granted + i)) }))),
    w(4, step('gnttab.map', fc.record({ host_addr: big(fc.integer({ min: 0, max: 7 }).map((i) => FUZZ_FRAMES.mapBase + i * 4096)), ref: refArb, dom: big(fc.constantFrom(peer, self, 0x7ff0)), flags: big(fc.constantFrom(1, 1, 5, 0)) }))),
    w(1, step('gnttab.map_batch', fc.record({ ref: refArb, n: fc.constantFrom(8, 120) }).map(({ ref, n }) => ({
      ops: Array.from({ length: n }, () => ({ host_addr: BigInt(FUZZ_FRAMES.mapBase), ref, dom: BigInt(peer) })),
    })))),
    w(3, step('gnttab.unmap', fc.record({ host_addr: big(fc.integer({ min: 0, max: 7 }).map((i) => FUZZ_FRAMES.mapBase + i * 4096)), handle: big(fc.integer({ min: 0, max: 300 })) }))),
    w(2, step('gnttab.copy', fc.record({
      src: refArb, src_dom: big(fc.constant(peer)), src_off: big(fc.constantFrom(0, 0x100, 0xff0, 0xfff)),
      dst: big(fc.constant(0x500)), len: big(fc.constantFrom(8, 0x100, 0x10, 0x1000)), flags: big(fc.constantFrom(Number(k('GNTCOPY_source_gref')))),
    }))),
    w(2, step('gnttab.end_access', fc.record({ ref: refArb }))),
    w(1, step('gnttab.set_version', fc.record({ version: big(fc.constantFrom(1, 2, 3, 0)) }))),
    w(1, step('gnttab.setup_table', fc.record({ nr_frames: big(fc.constantFrom(1, 2, 4, 65)) }))),
    w(2, step('gnttab.maptrack')),
    w(1, step('gnttab.active', fc.record({ ref: refArb }))),
    w(1, step('gnttab.query_size')),
    // Scheduling, timers and time.
    // The timeout is absolute system time: on a live clock only one already past (the poll
    // returns at once) is safe; no timeout, or 2^40 ns of uptime, would hold the vCPU.
    w(2, step('sched.poll', fc.record({ ports: fc.array(port, { minLength: 1, maxLength: 3 }), timeout: c.liveClock ? fc.constant(LIVE_POLL_TIMEOUT) : fc.constantFrom(0n, 1000n, 1n << 40n) }))),
    ...(c.liveClock ? [] : [w(1, step('sched.block'))]),
    w(1, step('sched.yield')),
    w(2, step('timer.set_singleshot', fc.record({ timeout, vcpuid: vcpu }))),
    w(1, step('timer.stop_singleshot', fc.record({ vcpuid: vcpu }))),
    w(1, step('timer.set_periodic', fc.record({ period_ns: timeout, vcpuid: vcpu }))),
    w(2, step('timer.set_timer_op', fc.record({ timeout }))),
    w(3, step('time.advance', fc.record({ ns: fc.bigInt({ min: 1n, max: 20_000_000n }) }))),
    w(1, step('time.update')),
    // Runstate, vcpu_info and the areas.
    w(3, step('runstate.switch', fc.record({ state: big(fc.constantFrom(0, 1, 2, 3)) }))),
    w(2, step('runstate.get')),
    w(1, step('runstate.check_atomic', fc.record({ state: big(fc.constantFrom(0, 1, 2)) }))),
    w(2, step('vcpu.register_runstate', fc.record({ addr: addrArb }))),
    w(1, step('vcpu.register_runstate_phys', fc.record({ gpa: addrArb }))),
    w(1, step('vcpu.get_runstate_info', fc.record({ vcpuid: vcpu }))),
    w(1, step('vcpu.register_vcpu_info', fc.record({ mfn: big(fc.constantFrom(FUZZ_FRAMES.area >> 12, 0xfffff)), offset: big(fc.constantFrom(0, 0x40, 0xfc0, 0xfc8, 0x1000)) }))),
    // Arguments no page maps (drivers/kvm/guest.ts UNMAPPED_VA): -EFAULT from each reader
    // (the poll's port list, the poll's and the send's own struct), and more ports than
    // the 128 a poll may name (-EINVAL before any is read).
    w(1, step('sched.poll', fc.record({ ports_addr: fc.constant(BigInt(UNMAPPED_VA.base)), nr_ports: big(fc.constantFrom(1, 129)), timeout: fc.constant(1000n) }))),
    w(1, step('hypercall.raw', fc.record({
      nr: fc.constantFrom(k('HYPERVISOR_event_channel_op'), k('HYPERVISOR_sched_op')),
      a1: fc.constant(0n), a2: fc.constant(BigInt(UNMAPPED_VA.base)),
    }).map((r) => ({ ...r, a1: r.nr === k('HYPERVISOR_sched_op') ? k('SCHEDOP_poll') : k('EVTCHNOP_send') })))),
    // Mostly the one assist an HVM guest has (enable VMASST_TYPE_runstate_update_flag: the
    // byte protocol of the runstate writer), else other commands and types.
    w(1, step('xen.vm_assist', fc.oneof(
      { weight: 3, arbitrary: fc.constant({ cmd: 0n, type: 5n }) },
      { weight: 2, arbitrary: fc.record({ cmd: big(fc.constantFrom(0, 1, 2)), type: big(fc.constantFrom(5, 2, 31, 32)) }) },
    ))),
    w(1, step('xen.version', fc.record({ cmd: big(fc.integer({ min: 0, max: 12 })) }))),
    // What only a VMM does to KVM (its attributes, send ports, irqfds): flavour kvm only.
    ...kvmHostGenerators(FUZZ_FRAMES.area, port, vcpu, c.kvmFeatures),
  ];
  return c.allowed ? all.filter((g) => c.allowed!.has(g.arbitrary.opName)) : all;
}

/** One step placed on a domain, vCPU and privilege level. */
export function stepArb(c: StepContext): fc.Arbitrary<FuzzStep> {
  return fc.record({
    s: fc.oneof(...generators(c)),
    peer: fc.integer({ min: 0, max: 9 }),
    vcpu: fc.integer({ min: 0, max: c.vcpus - 1 }),
    cpl: c.cpl3 === false ? fc.constant(0) : fc.oneof({ weight: 30, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constant(3) }),
  }).map(({ s, peer, vcpu, cpl }) => {
    // Grants are written by the peer; most other steps run on the first domain.
    const onPeer = s.op === 'gnttab.grant' || s.op === 'gnttab.end_access' || peer === 0;
    // Every generator yields exactly { op, args } (see step()): a literal, not a spread, in the same key order.
    return { op: s.op, args: s.args, dom: onPeer ? c.doms[1] : c.doms[0], vcpu: onPeer ? 0 : vcpu, cpl: s.op.includes('.') && !HOST_OPS.has(s.op) ? cpl : 0 };
  });
}

/** Host- and guest-side ops: they are not hypercalls, so CPL does not apply. */
const HOST_OPS = new Set([
  'evtchn.host_send', 'evtchn.set_mask', 'evtchn.run_upcall', 'evtchn.use_fifo', 'gnttab.grant', 'gnttab.end_access',
  'gnttab.maptrack', 'gnttab.active', 'time.advance', 'time.update', 'runstate.switch', 'runstate.get', 'runstate.check_atomic',
  'evtchn.alloc_many', ...KVM_HOST_OPS,
]);

/** The op names the fuzzer can generate (the coverage denominator). */
export function vocabulary(c: StepContext = { doms: [1, 2], vcpus: 2, portLimit: 63 }): string[] {
  return [...new Set(generators(c).map((g) => g.arbitrary.opName))].sort();
}
