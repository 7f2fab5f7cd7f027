// Byte-exact layouts of the guest-visible structures, for the 64-bit and the
// 32-bit compat ABI. Offsets: xen/include/public/xen.h, arch-x86/xen.h,
// arch-x86/xen-x86_64.h, arch-x86/xen-x86_32.h (compiled with gcc -m64/-m32;
// see spec/xen-abi.md section 2 and the BUILD_BUG_ONs in arch/x86/kvm/xen.c).

export type Width = 64 | 32;
export type Scalar = 'u8' | 'u16' | 'u32' | 'u64' | 'i8' | 'i16' | 'i32' | 'i64';

export interface FieldDef {
  offset: number;
  /** scalar, raw bytes (`size` long), or a bitmap of `wordBits`-bit words indexed by bit number */
  type: Scalar | 'bytes' | 'bits';
  size?: number;
  /** array elements (scalars/bytes) or bits (bitmaps) */
  count?: number;
  /** distance between array elements; defaults to the element size */
  stride?: number;
  wordBits?: 32 | 64;
}

export interface StructLayout {
  name: string;
  size: number;
  fields: Record<string, FieldDef>;
}

export const SCALAR_SIZE: Record<Scalar, 1 | 2 | 4 | 8> = {
  u8: 1, u16: 2, u32: 4, u64: 8, i8: 1, i16: 2, i32: 4, i64: 8,
};

export function elementSize(f: FieldDef): number {
  if (f.type === 'bytes') return f.size ?? 1;
  if (f.type === 'bits') return (f.wordBits ?? 64) / 8;
  return SCALAR_SIZE[f.type];
}

/** Byte address and bit of a field element, relative to the struct base. */
export function fieldOffset(f: FieldDef, index = 0): { offset: number; bit?: number } {
  const count = f.count ?? 1;
  if (index < 0 || index >= count) throw new RangeError(`index ${index} outside 0..${count - 1}`);
  if (f.type === 'bits') {
    const wb = f.wordBits ?? 64;
    const word = Math.floor(index / wb);
    return { offset: f.offset + word * (wb / 8), bit: index % wb };
  }
  return { offset: f.offset + index * (f.stride ?? elementSize(f)) };
}

/** struct vcpu_time_info: 32 bytes, identical in both ABIs (public/xen.h). */
const VCPU_TIME_FIELDS = (base: number): Record<string, FieldDef> => ({
  [`${base ? 'time.' : ''}version`]: { offset: base + 0, type: 'u32' },
  [`${base ? 'time.' : ''}tsc_timestamp`]: { offset: base + 8, type: 'u64' },
  [`${base ? 'time.' : ''}system_time`]: { offset: base + 16, type: 'u64' },
  [`${base ? 'time.' : ''}tsc_to_system_mul`]: { offset: base + 24, type: 'u32' },
  [`${base ? 'time.' : ''}tsc_shift`]: { offset: base + 28, type: 'i8' },
  [`${base ? 'time.' : ''}flags`]: { offset: base + 29, type: 'u8' },
});

export const VCPU_TIME_INFO: StructLayout = {
  name: 'vcpu_time_info',
  size: 32,
  fields: VCPU_TIME_FIELDS(0),
};

/** struct vcpu_info: 64 bytes in both ABIs; time at 32 in both. */
export const VCPU_INFO: Record<Width, StructLayout> = {
  64: {
    name: 'vcpu_info',
    size: 64,
    fields: {
      evtchn_upcall_pending: { offset: 0, type: 'u8' },
      evtchn_upcall_mask: { offset: 1, type: 'u8' },
      evtchn_pending_sel: { offset: 8, type: 'u64' },
      'arch.cr2': { offset: 16, type: 'u64' },
      ...VCPU_TIME_FIELDS(32),
    },
  },
  32: {
    name: 'vcpu_info',
    size: 64,
    fields: {
      evtchn_upcall_pending: { offset: 0, type: 'u8' },
      evtchn_upcall_mask: { offset: 1, type: 'u8' },
      evtchn_pending_sel: { offset: 4, type: 'u32' },
      'arch.cr2': { offset: 8, type: 'u32' },
      ...VCPU_TIME_FIELDS(32),
    },
  },
};

export const XEN_LEGACY_MAX_VCPUS = 32;
export const VCPU_INFO_SIZE = 64;

/** struct shared_info (public/xen.h with arch-x86 xen-x86_64.h / xen-x86_32.h). */
export const SHARED_INFO: Record<Width, StructLayout> = {
  64: {
    name: 'shared_info',
    size: 0xc40,
    fields: {
      evtchn_pending: { offset: 0x800, type: 'bits', wordBits: 64, count: 4096 },
      evtchn_mask: { offset: 0xa00, type: 'bits', wordBits: 64, count: 4096 },
      evtchn_pending_word: { offset: 0x800, type: 'u64', count: 64 },
      evtchn_mask_word: { offset: 0xa00, type: 'u64', count: 64 },
      wc_version: { offset: 0xc00, type: 'u32' },
      wc_sec: { offset: 0xc04, type: 'u32' },
      wc_nsec: { offset: 0xc08, type: 'u32' },
      wc_sec_hi: { offset: 0xc0c, type: 'u32' },
      'arch.max_pfn': { offset: 0xc10, type: 'u64' },
      'arch.pfn_to_mfn_frame_list_list': { offset: 0xc18, type: 'u64' },
      'arch.nmi_reason': { offset: 0xc20, type: 'u64' },
      'arch.p2m_cr3': { offset: 0xc28, type: 'u64' },
      'arch.p2m_vaddr': { offset: 0xc30, type: 'u64' },
      'arch.p2m_generation': { offset: 0xc38, type: 'u64' },
    },
  },
  32: {
    name: 'shared_info',
    size: 0x928,
    fields: {
      evtchn_pending: { offset: 0x800, type: 'bits', wordBits: 32, count: 1024 },
      evtchn_mask: { offset: 0x880, type: 'bits', wordBits: 32, count: 1024 },
      evtchn_pending_word: { offset: 0x800, type: 'u32', count: 32 },
      evtchn_mask_word: { offset: 0x880, type: 'u32', count: 32 },
      wc_version: { offset: 0x900, type: 'u32' },
      wc_sec: { offset: 0x904, type: 'u32' },
      wc_nsec: { offset: 0x908, type: 'u32' },
      'arch.max_pfn': { offset: 0x90c, type: 'u32' },
      'arch.pfn_to_mfn_frame_list_list': { offset: 0x910, type: 'u32' },
      'arch.nmi_reason': { offset: 0x914, type: 'u32' },
      'arch.p2m_cr3': { offset: 0x918, type: 'u32' },
      'arch.p2m_vaddr': { offset: 0x91c, type: 'u32' },
      'arch.p2m_generation': { offset: 0x920, type: 'u32' },
      wc_sec_hi: { offset: 0x924, type: 'u32' },
    },
  },
};

/** Offset of vcpu_info[n] inside shared_info (same in both ABIs). */
export function sharedInfoVcpuOffset(vcpu: number): number {
  if (vcpu < 0 || vcpu >= XEN_LEGACY_MAX_VCPUS) throw new RangeError(`vCPU ${vcpu} has no shared_info slot`);
  return vcpu * VCPU_INFO_SIZE;
}

/** Event-channel words per bitmap and ports of the 2-level ABI for a width (spec/xen-abi.md 2.3). */
export function evtchn2lPorts(width: Width): number {
  return width * width;
}

/** The hypercall page: 128 stubs of 32 bytes (xen/arch/x86/hvm/{vmx,svm}: *_init_hypercall_page). */
export const HYPERCALL_PAGE: StructLayout = {
  name: 'hypercall_page',
  size: 4096,
  fields: {
    stub: { offset: 0, type: 'bytes', size: 32, count: 128 },
    byte: { offset: 0, type: 'u8', count: 4096 },
  },
};
