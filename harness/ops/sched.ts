// Ops for HYPERVISOR_sched_op. Struct layouts: xen/include/public/sched.h
// (sched_shutdown, sched_poll 24 bytes native / 16 compat, sched_remote_shutdown,
// sched_watchdog, sched_pin_override).

import { z } from 'zod';
import { defineConstants } from './constants.js';
import { defineOp, int, structCall, StructWriter, type Action, type Outcome } from './types.js';
import { HYPERVISOR } from '../model/hypercall.js';
import { domainSchedOf, kick, schedOf, SCHEDOP, SHUTDOWN, SHUTDOWN_CODE_INVALID } from '../model/sched.js';

defineConstants('SCHEDOP_', SCHEDOP);
defineConstants('SHUTDOWN_', SHUTDOWN);
defineConstants('', { SHUTDOWN_CODE_INVALID });

const simple = (cmd: number): Action => ({ kind: 'hypercall', nr: HYPERVISOR.sched_op, args: [BigInt(cmd), 0n], writes: [] });

export const schedOpRaw = defineOp({
  name: 'sched.op',
  summary: 'HYPERVISOR_sched_op(cmd, arg) with a raw argument',
  args: z.strictObject({ cmd: int(), arg: int().optional() }),
  requires: ['hypercall.intercept'],
  encode: (a): Action => ({ kind: 'hypercall', nr: HYPERVISOR.sched_op, args: [a.cmd, a.arg ?? 0n], writes: [] }),
});

export const schedYield = defineOp({
  name: 'sched.yield',
  summary: 'SCHEDOP_yield',
  args: z.strictObject({}).optional(),
  requires: ['hypercall.intercept'],
  encode: (): Action => simple(SCHEDOP.yield),
});

export const schedBlock = defineOp({
  name: 'sched.block',
  summary: 'SCHEDOP_block: enable event delivery (clear evtchn_upcall_mask) and block unless events are deliverable',
  args: z.strictObject({}).optional(),
  requires: ['hypercall.intercept'],
  encode: (): Action => simple(SCHEDOP.block),
});

export const schedShutdown = defineOp({
  name: 'sched.shutdown',
  summary: 'SCHEDOP_shutdown with struct sched_shutdown {u32 reason}',
  args: z.strictObject({ reason: int() }),
  requires: ['hypercall.intercept'],
  encode: (a, ctx): Action => structCall(ctx, HYPERVISOR.sched_op, [BigInt(SCHEDOP.shutdown)], new StructWriter(4).u32(0, a.reason)),
});

export const schedShutdownCode = defineOp({
  name: 'sched.shutdown_code',
  summary: 'SCHEDOP_shutdown_code: latch the code a later shutdown reports',
  args: z.strictObject({ reason: int() }),
  requires: ['hypercall.intercept'],
  encode: (a, ctx): Action => structCall(ctx, HYPERVISOR.sched_op, [BigInt(SCHEDOP.shutdown_code)], new StructWriter(4).u32(0, a.reason)),
});

export const schedRemoteShutdown = defineOp({
  name: 'sched.remote_shutdown',
  summary: 'SCHEDOP_remote_shutdown {domid_t domain_id; u32 reason}',
  args: z.strictObject({ domid: int(), reason: int() }),
  requires: ['hypercall.intercept'],
  encode: (a, ctx): Action => structCall(ctx, HYPERVISOR.sched_op, [BigInt(SCHEDOP.remote_shutdown)], new StructWriter(8).u16(0, a.domid).u32(4, a.reason)),
});

export const schedWatchdog = defineOp({
  name: 'sched.watchdog',
  summary: 'SCHEDOP_watchdog {u32 id; u32 timeout (s)}: id 0 allocates (returns id), timeout 0 frees',
  args: z.strictObject({ id: int(), timeout: int() }),
  requires: ['hypercall.intercept'],
  encode: (a, ctx): Action => structCall(ctx, HYPERVISOR.sched_op, [BigInt(SCHEDOP.watchdog)], new StructWriter(8).u32(0, a.id).u32(4, a.timeout)),
});

export const schedPinOverride = defineOp({
  name: 'sched.pin_override',
  summary: 'SCHEDOP_pin_override {i32 pcpu}: hardware domain only',
  args: z.strictObject({ pcpu: int() }),
  requires: ['hypercall.intercept'],
  encode: (a, ctx): Action => structCall(ctx, HYPERVISOR.sched_op, [BigInt(SCHEDOP.pin_override)], new StructWriter(4).u32(0, a.pcpu)),
});

export const schedPoll = defineOp({
  name: 'sched.poll',
  summary: 'SCHEDOP_poll: `ports` placed in the scratch page (or a raw `ports_addr`), `nr_ports` defaults to their count; timeout absolute (Xen) or relative (KVM)',
  args: z.strictObject({
    ports: z.array(int()).max(256).optional(),
    ports_addr: int().optional(),
    nr_ports: int().optional(),
    timeout: int().optional(),
  }),
  // Linux 6.1's kvm_xen_schedop_poll() answers a 32-bit guest's poll as a yield
  // (return 0, nothing checked); later kernels read compat_sched_poll (arch/x86/kvm/xen.c).
  // That is a divergence from Xen, listed in expectations/kvm-6.1.yaml, not a capability.
  requires: ['hypercall.intercept', 'sched.poll'],
  encode(a, ctx): Action {
    const ports = a.ports ?? [];
    const portsGpa = a.ports_addr ?? BigInt(ctx.scratch + 256);
    const nr = a.nr_ports ?? BigInt(ports.length);
    const w = ctx.width === 32
      ? new StructWriter(16).u32(0, portsGpa).u32(4, nr).u64(8, a.timeout ?? 0n)
      : new StructWriter(24).u64(0, portsGpa).u32(8, nr).u64(16, a.timeout ?? 0n);
    const action = structCall(ctx, HYPERVISOR.sched_op, [BigInt(SCHEDOP.poll)], w);
    if (action.kind === 'hypercall' && a.ports_addr === undefined && ports.length) {
      const pw = new StructWriter(ports.length * 4);
      ports.forEach((p, i) => pw.u32(i * 4, p));
      action.writes.push({ gpa: ctx.scratch + 256, bytes: pw.bytes });
    }
    return action;
  },
});

export const schedStatus = defineOp({
  name: 'sched.status',
  summary: 'Host view of scheduling state: blocked / polling vCPU, wake-ups, yields, domain shutdown and code',
  args: z.strictObject({}).optional(),
  requires: [],
  out: ['blocked', 'polling', 'poll_port', 'wakeups', 'yields', 'shutdown', 'shutdown_code'],
  encode: (): Action => ({ kind: 'host', op: 'sched.status', args: {} }),
  model(_m, _a, { dom, vcpu }): Outcome {
    const s = schedOf(vcpu);
    const d = domainSchedOf(dom);
    return {
      out: {
        blocked: s.blocked ? 1n : 0n, polling: s.pollPort === null ? 0n : 1n, poll_port: BigInt(s.pollPort ?? 0),
        wakeups: BigInt(s.wakeups), yields: BigInt(s.yields), shutdown: d.shuttingDown ? 1n : 0n, shutdown_code: BigInt(d.shutdownCode),
      },
    };
  },
});

export const schedKick = defineOp({
  name: 'sched.kick',
  summary: 'Host: re-check a blocked vCPU after guest memory changed (e.g. evtchn_upcall_pending written); wakes it if events are deliverable',
  args: z.strictObject({}).optional(),
  requires: [],
  encode: (): Action => ({ kind: 'host', op: 'sched.kick', args: {} }),
  model(m, _a, { vcpu }): Outcome {
    kick(m, vcpu);
    return {};
  },
});
