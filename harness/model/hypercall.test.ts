import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { hypercallArgs, hypercallPageImage } from './hypercall.js';
import { hypercall, wrmsr } from './hypercall-table.js';
import { XenModel } from './domain.js';

const model = (mode: 32 | 64 = 64, flavor: 'xen' | 'kvm' = 'xen') => new XenModel({
  flavor, cpu: 'intel', mode, xenVersion: { major: 4, minor: 19, extra: '.0' },
  domains: [{ id: 1, vcpus: 2, memoryBytes: 1 << 24, privileged: false, limits: {} }],
});

describe('hypercall page', () => {
  it('has 128 stubs, int3 padding, and ud2 at iret only in the Xen flavour', () => {
    const xen = hypercallPageImage('intel', 'xen');
    const kvm = hypercallPageImage('amd', 'kvm');
    expect(Array.from(xen.subarray(17 * 32, 17 * 32 + 10))).toEqual([0xb8, 17, 0, 0, 0, 0x0f, 0x01, 0xc1, 0xc3, 0xcc]);
    expect(Array.from(kvm.subarray(5 * 32 + 5, 5 * 32 + 8))).toEqual([0x0f, 0x01, 0xd9]);
    expect(Array.from(xen.subarray(23 * 32, 23 * 32 + 3))).toEqual([0x0f, 0x0b, 0xcc]);
    expect(kvm[23 * 32]).toBe(0xb8);
  });
  it('wrmsr with a non-zero page index is a #GP and latches nothing', () => {
    const m = model(32);
    const d = m.domain(1)!;
    d.width = 64;
    expect(wrmsr(m, d.vcpus[0], 0x40000000, 0x90001n)).toEqual({ ok: false, fault: 'GP' });
    expect(d.width).toBe(64);
    expect(wrmsr(m, d.vcpus[0], 0x40000000, 0x90000n)).toEqual({ ok: true });
    expect(d.width).toBe(32);
  });
});

describe('calling convention', () => {
  it('takes 64-bit args from rdi rsi rdx r10 r8 and compat args from the low halves of ebx ecx edx esi edi', () => {
    fc.assert(fc.property(fc.array(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { minLength: 6, maxLength: 6 }), (v) => {
      const regs = { rax: 0n, rdi: v[0], rsi: v[1], rdx: v[2], r10: v[3], r8: v[4], rbx: v[5], rcx: v[0] };
      expect(hypercallArgs(64, regs)).toEqual([v[0], v[1], v[2], v[3], v[4]]);
      expect(hypercallArgs(32, regs)).toEqual([v[5], v[0], v[2], v[1], v[0]].map((x) => x & 0xffffffffn));
    }));
  });
  it('returns -EPERM for any call from CPL > 0 and -ENOSYS for unknown numbers', () => {
    const m = model();
    const v = m.domain(1)!.vcpus[0];
    v.cpl = 3;
    expect(hypercall(m, v, { rax: 17n }).ret).toBe(-1n);
    v.cpl = 0;
    expect(hypercall(m, v, { rax: 17n, rdi: 0n }).ret).toBe(0x40013n);
    expect(hypercall(m, v, { rax: 99n }).ret).toBe(-38n);
  });
  it('sign-extends 32-bit results in compat mode', () => {
    const m = model(32);
    expect(hypercall(m, m.domain(1)!.vcpus[0], { rax: 99n }).ret).toBe(-38n);
  });
});
