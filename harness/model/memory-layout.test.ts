import { describe, expect, it } from 'vitest';
import { fieldOffset, HYPERCALL_PAGE, SHARED_INFO, VCPU_INFO, VCPU_TIME_INFO } from './memory-layout.js';

// Offsets from spec/xen-abi.md section 2 (compiled from Xen's public headers)
// and the BUILD_BUG_ONs in arch/x86/kvm/xen.c.
describe('shared_info / vcpu_info layouts', () => {
  it('64-bit shared_info', () => {
    const f = SHARED_INFO[64].fields;
    expect(SHARED_INFO[64].size).toBe(3136);
    expect([f.evtchn_pending.offset, f.evtchn_mask.offset, f.wc_version.offset, f.wc_sec.offset, f.wc_nsec.offset, f.wc_sec_hi.offset, f['arch.max_pfn'].offset])
      .toEqual([0x800, 0xa00, 0xc00, 0xc04, 0xc08, 0xc0c, 0xc10]);
    expect(f.evtchn_pending.count).toBe(4096);
  });
  it('compat shared_info', () => {
    const f = SHARED_INFO[32].fields;
    expect(SHARED_INFO[32].size).toBe(2344);
    expect([f.evtchn_pending.offset, f.evtchn_mask.offset, f.wc_version.offset, f.wc_sec_hi.offset, f['arch.max_pfn'].offset])
      .toEqual([0x800, 0x880, 0x900, 0x924, 0x90c]);
    expect(f.evtchn_pending.count).toBe(1024);
  });
  it('vcpu_info in both ABIs', () => {
    expect(VCPU_INFO[64].fields.evtchn_pending_sel).toMatchObject({ offset: 8, type: 'u64' });
    expect(VCPU_INFO[32].fields.evtchn_pending_sel).toMatchObject({ offset: 4, type: 'u32' });
    for (const w of [64, 32] as const) {
      expect(VCPU_INFO[w].size).toBe(64);
      expect(VCPU_INFO[w].fields['time.version'].offset).toBe(32);
      expect(VCPU_INFO[w].fields['time.system_time'].offset).toBe(48);
      expect(VCPU_INFO[w].fields.evtchn_upcall_mask.offset).toBe(1);
    }
  });
  it('vcpu_time_info', () => {
    const f = VCPU_TIME_INFO.fields;
    expect([f.version.offset, f.tsc_timestamp.offset, f.system_time.offset, f.tsc_to_system_mul.offset, f.tsc_shift.offset, f.flags.offset])
      .toEqual([0, 8, 16, 24, 28, 29]);
  });
  it('bitmap fields locate port bits in words of the ABI width', () => {
    expect(fieldOffset(SHARED_INFO[64].fields.evtchn_pending, 65)).toEqual({ offset: 0x808, bit: 1 });
    expect(fieldOffset(SHARED_INFO[32].fields.evtchn_pending, 65)).toEqual({ offset: 0x808, bit: 1 });
    expect(fieldOffset(SHARED_INFO[32].fields.evtchn_mask, 33)).toEqual({ offset: 0x884, bit: 1 });
    expect(() => fieldOffset(SHARED_INFO[32].fields.evtchn_pending, 1024)).toThrow(RangeError);
    expect(fieldOffset(HYPERCALL_PAGE.fields.stub, 3)).toEqual({ offset: 96 });
  });
});
