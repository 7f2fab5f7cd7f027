import { describe, expect, it } from 'vitest';
import { buildModel } from './evtchn-test-util.js';
import { wrmsr, XEN_HYPERCALL_MSR } from './hypercall.js';
import { SHARED_INFO } from './memory-layout.js';
import { writeWallclock } from './time.js';

const SI = 0x80000;

describe('Xen rewrites the wallclock on every shared_info latch (hvm_latch_shinfo_size)', () => {
  it('each hypercall-page MSR write moves wc_version on by 2 and writes the system wallclock in the latched layout', () => {
    for (const mode of [64, 32] as const) {
      const m = buildModel({ flavor: 'xen', mode });
      const d = m.domain(1)!;
      const v = d.vcpu(0)!;
      const f = SHARED_INFO[mode].fields;
      const wc = () => d.memory.u32(SI + f.wc_version.offset);
      const before = wc();
      expect(before % 2).toBe(0);
      writeWallclock(d, 0x1_0000_0005n, 77);
      expect(wc()).toBe(before + 2);
      d.memory.setU32(SI + f.wc_sec.offset, 0); // the guest scribbles on it
      expect(wrmsr(m, v, XEN_HYPERCALL_MSR, 0x81000n).ok).toBe(true);
      expect(wc()).toBe(before + 4);
      expect(d.memory.u32(SI + f.wc_sec.offset)).toBe(5);
      expect(d.memory.u32(SI + f.wc_sec_hi.offset)).toBe(1);
      expect(d.memory.u32(SI + f.wc_nsec.offset)).toBe(77);
      expect(wrmsr(m, v, XEN_HYPERCALL_MSR, 0x81000n).ok).toBe(true);
      expect(wc()).toBe(before + 6); // on every latch, whether the width changed or not
    }
  });

  it('a refused MSR write (a page index past the one page) latches nothing', () => {
    const m = buildModel({ flavor: 'xen' });
    const d = m.domain(1)!;
    const at = SI + SHARED_INFO[64].fields.wc_version.offset;
    const before = d.memory.u32(at);
    expect(wrmsr(m, d.vcpu(0)!, XEN_HYPERCALL_MSR, 0x81001n).ok).toBe(false);
    expect(d.memory.u32(at)).toBe(before);
  });
});
