// Generic ops: raw hypercalls, MSR writes, direct memory writes, checks, and the clock.

import { z } from 'zod';
import { defineOp, int, type Action, type RegName } from './types.js';
import { XEN_HYPERCALL_MSR } from '../model/hypercall.js';

const regs = z.strictObject({
  rax: int().optional(), rbx: int().optional(), rcx: int().optional(), rdx: int().optional(),
  rsi: int().optional(), rdi: int().optional(), rbp: int().optional(), r8: int().optional(),
  r9: int().optional(), r10: int().optional(),
});

export const hypercallRaw = defineOp({
  name: 'hypercall.raw',
  summary: 'Issue hypercall `nr` with positional args a1..a6 (placed by the calling convention) and/or explicit registers',
  args: z.strictObject({
    nr: int(),
    a1: int().optional(), a2: int().optional(), a3: int().optional(),
    a4: int().optional(), a5: int().optional(), a6: int().optional(),
    regs: regs.optional(),
  }),
  requires: ['hypercall.intercept'],
  encode(a): Action {
    const pos = [a.a1, a.a2, a.a3, a.a4, a.a5, a.a6];
    let last = pos.length;
    while (last > 0 && pos[last - 1] === undefined) last--;
    const explicit = a.regs ? Object.fromEntries(Object.entries(a.regs).filter(([, v]) => v !== undefined)) as Partial<Record<RegName, bigint>> : undefined;
    return { kind: 'hypercall', nr: a.nr, args: pos.slice(0, last).map((v) => v ?? 0n), regs: explicit, writes: [] };
  },
});

export const msrWrite = defineOp({
  name: 'msr.write',
  summary: 'wrmsr from the guest; the Xen hypercall MSR (0x40000000) installs the hypercall page',
  args: z.strictObject({ msr: int().optional(), value: int() }),
  requires: ['hypercall.page'],
  encode(a): Action {
    return { kind: 'wrmsr', msr: Number(a.msr ?? BigInt(XEN_HYPERCALL_MSR)), value: a.value };
  },
});

export const memoryWrite = defineOp({
  name: 'memory.write',
  summary: 'Write guest memory directly (as the guest would with a plain store): a value of `size` bytes, or hex `bytes`',
  args: z.strictObject({
    gpa: int(),
    size: z.union([z.literal(1n), z.literal(2n), z.literal(4n), z.literal(8n)]).optional(),
    value: int().optional(),
    bytes: z.string().regex(/^([0-9a-fA-F]{2}\s*)+$/, 'hex bytes such as "de ad be ef"').optional(),
  }).refine((a) => (a.value === undefined) !== (a.bytes === undefined), { message: 'give exactly one of value or bytes' }),
  requires: [],
  encode(a): Action {
    const gpa = Number(a.gpa);
    if (a.bytes !== undefined) {
      const hex = a.bytes.replace(/\s+/g, '');
      const b = Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
      return { kind: 'write', writes: [{ gpa, bytes: b }] };
    }
    const size = Number(a.size ?? 8n);
    let v = BigInt.asUintN(size * 8, a.value ?? 0n);
    const b = new Uint8Array(size);
    for (let i = 0; i < size; i++) { b[i] = Number(v & 0xffn); v >>= 8n; }
    return { kind: 'write', writes: [{ gpa, bytes: b }] };
  },
});

export const memoryCheck = defineOp({
  name: 'memory.check',
  summary: 'Do nothing; evaluate the step\'s expectations against guest memory now',
  args: z.strictObject({}).optional(),
  requires: [],
  encode: (): Action => ({ kind: 'check' }),
});

export const timeAdvance = defineOp({
  name: 'time.advance',
  summary: 'Advance the host clock by `ns` nanoseconds (timers due in that window fire)',
  args: z.strictObject({ ns: int() }),
  requires: ['time.control'],
  encode: (a): Action => ({ kind: 'host', op: 'time.advance', args: { ns: a.ns } }),
  model(m, a) {
    if (a.ns < 0n) return { fault: 'time cannot go backwards' };
    m.advance(a.ns);
    return {};
  },
});
