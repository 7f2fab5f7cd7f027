import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { buildModel } from './evtchn-test-util.js';
import { kvmXenGetAttr, kvmXenSetAttr } from './kvm-attr.js';
import { wrmsr, XEN_HYPERCALL_MSR } from './hypercall.js';

const WC_VERSION = { 64: 0xc00, 32: 0x900 } as const;

const fresh = (flavor: 'xen' | 'kvm', mode: 64 | 32 = 64) => {
  const m = buildModel({ flavor, mode });
  const d = m.domain(1)!;
  return { m, d, v: d.vcpu(0)! };
};
const wc = (d: ReturnType<typeof fresh>['d'], w: 64 | 32, gpa = d.sharedInfoGpa!) => d.memory.u32(gpa + WC_VERSION[w]);

describe('model-kvm: what KVM writes into shared_info itself (kvm_xen_shared_info_init)', () => {
  it('rewrites the wallclock in the latched layout each time the VMM places shared_info; Xen only when it latches (the setup\'s MSR write)', () => {
    for (const mode of [64, 32] as const) {
      const k = fresh('kvm', mode);
      expect(wc(k.d, mode)).toBe(2);
      expect(wc(k.d, mode === 64 ? 32 : 64)).toBe(0);
      k.d.placeSharedInfo(0xc0000);
      expect(wc(k.d, mode)).toBe(4); // the page moved with its contents, then KVM initialised it
      const x = fresh('xen', mode).d;
      expect(wc(x, mode)).toBe(2);
      x.placeSharedInfo(0xc0000);
      expect(wc(x, mode)).toBe(2); // Xen's page moves with its contents, nothing rewritten
    }
  });

  it('the LONG_MODE attribute latches the width and always re-initialises; the MSR write only when the width changes', () => {
    const { m, d, v } = fresh('kvm', 64);
    expect(kvmXenSetAttr(d, v, 'long_mode', 0n)).toBe(0n);
    expect(kvmXenGetAttr(d, v, 'long_mode')).toBe(0n);
    expect(d.width).toBe(32);
    expect(wc(d, 32)).toBe(2);
    expect(kvmXenSetAttr(d, v, 'long_mode', 0n)).toBe(0n);
    expect(wc(d, 32)).toBe(4);
    expect(wc(d, 64)).toBe(2);
    // The 64-bit guest's MSR write latches 64 again: a change, so KVM re-initialises.
    expect(wrmsr(m, v, XEN_HYPERCALL_MSR, 0x81000n).ok).toBe(true);
    expect(kvmXenGetAttr(d, v, 'long_mode')).toBe(1n);
    expect(wc(d, 64)).toBe(4);
    // The same width again: no re-initialisation.
    expect(wrmsr(m, v, XEN_HYPERCALL_MSR, 0x81000n).ok).toBe(true);
    expect(wc(d, 64)).toBe(4);
    // A faulting write (page index past the one page) still latches, as KVM latches first.
    kvmXenSetAttr(d, v, 'long_mode', 0n);
    expect(wrmsr(m, v, XEN_HYPERCALL_MSR, 0x81001n).ok).toBe(false);
    expect(d.width).toBe(64);
  });

  it('leaves the wallclock to the kernel where the driver says the kernel initialises shared_info', () => {
    const { d, v } = fresh('kvm', 64);
    d.kernelInitsSharedInfo = true;
    kvmXenSetAttr(d, v, 'long_mode', 0n);
    d.placeSharedInfo(0xc0000);
    expect(wc(d, 32, 0xc0000)).toBe(0);
  });

  it('keeps wc_version even and moves it on by 2 per initialisation, for any history of attribute sets and MSR writes', () => {
    fc.assert(fc.property(fc.array(fc.oneof(fc.constant('attr32'), fc.constant('attr64'), fc.constant('msr'), fc.constant('move')), { maxLength: 20 }), (ops) => {
      const { m, d, v } = fresh('kvm', 64);
      const inits = { 64: 1, 32: 0 };
      let gpa = 0x80000;
      for (const op of ops) {
        if (op === 'move') {
          gpa = gpa === 0x80000 ? 0xc0000 : 0x80000;
          d.placeSharedInfo(gpa);
          inits[d.width]++;
        } else if (op === 'msr') {
          if (d.width !== 64) inits[64]++;
          wrmsr(m, v, XEN_HYPERCALL_MSR, 0x81000n);
        } else {
          const w = op === 'attr64' ? 64 : 32;
          kvmXenSetAttr(d, v, 'long_mode', w === 64 ? 1n : 0n);
          inits[w]++;
        }
      }
      expect(wc(d, 64)).toBe(2 * inits[64]);
      expect(wc(d, 32)).toBe(2 * inits[32]);
    }));
  });
});
