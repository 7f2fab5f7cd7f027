// Plain-KVM sanity ops: the guest itself stores, loads, executes cpuid and
// writes to a log port, so a case checks VM/vCPU creation, guest execution
// and exits on any KVM host, Xen support or not. Only the kvm target has them.

import { z } from 'zod';
import { defineOp, int, type Action } from './types.js';

const size = z.union([z.literal(1n), z.literal(2n), z.literal(4n), z.literal(8n)]);

export const guestLog = defineOp({
  name: 'kvm.guest_log',
  summary: 'The guest writes `value` to the log I/O port (an exit the native run loop records); OUT logs',
  args: z.strictObject({ value: int() }),
  requires: ['kvm.plain'],
  out: ['logs'],
  encode: (a): Action => ({ kind: 'host', op: 'kvm.guest_log', args: a }),
});

export const guestWrite = defineOp({
  name: 'kvm.guest_write',
  summary: 'The guest stores `value` (size 1/2/4/8 bytes) at `gpa`',
  args: z.strictObject({ gpa: int(), size, value: int() }),
  requires: ['kvm.plain'],
  encode: (a): Action => ({ kind: 'host', op: 'kvm.guest_write', args: a }),
});

export const guestRead = defineOp({
  name: 'kvm.guest_read',
  summary: 'The guest loads `size` bytes at `gpa`; OUT value',
  args: z.strictObject({ gpa: int(), size }),
  requires: ['kvm.plain'],
  out: ['value'],
  encode: (a): Action => ({ kind: 'host', op: 'kvm.guest_read', args: a }),
});

export const guestCpuid = defineOp({
  name: 'kvm.guest_cpuid',
  summary: 'The guest executes cpuid(leaf, subleaf); OUT eax ebx ecx edx',
  args: z.strictObject({ leaf: int(), subleaf: int().optional() }),
  requires: ['kvm.plain'],
  out: ['eax', 'ebx', 'ecx', 'edx'],
  encode: (a): Action => ({ kind: 'host', op: 'kvm.guest_cpuid', args: { leaf: a.leaf, subleaf: a.subleaf ?? 0n } }),
});

export const guestWaitUpcall = defineOp({
  name: 'kvm.guest_wait_upcall',
  summary: 'The guest halts until `count` upcalls have arrived; with none coming it never returns, and the run stops it after `timeout_ms`',
  args: z.strictObject({ count: int(), timeout_ms: int().optional() }),
  requires: ['kvm.plain'],
  encode: (a): Action => ({ kind: 'host', op: 'kvm.guest_wait_upcall', args: { count: a.count, timeout_ms: a.timeout_ms ?? 2000n } }),
});
