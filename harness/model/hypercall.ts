// Hypercall entry: calling convention, privilege check, dispatch by number,
// and the hypercall page written on the MSR write.
// Sources: xen/arch/x86/hvm/hypercall.c (hvm_hypercall), xen/include/hypercall-defs.c
// (which hypercalls an HVM guest can reach), xen/arch/x86/hvm/{vmx/vmx.c,svm/svm.c}
// (vmx_init_hypercall_page / svm_init_hypercall_page), xen/arch/x86/msr.c
// (guest_wrmsr_xen), arch/x86/kvm/xen.c (kvm_xen_write_hypercall_page).

import { kvmBlobPage, kvmInterceptsHypercalls, kvmOwnHypercall } from './kvm-config.js';
import { kvmLatchWidth } from './kvm-shared-info.js';
import { latchSharedInfoLayout } from './time.js';
import { err } from './errno.js';
import { hasBug } from './variant.js';
import { GuestFault, PAGE_SIZE } from './guest-memory.js';
import { getI16, getI32, getU16, getU32, getU64, getU8, setU16, setU32, setU64, setU8 } from './le-bytes.js';
import { enterGuest, modelHooks, type Domain, type Vcpu, type XenModel } from './domain.js';
import type { Width } from './memory-layout.js';

export const HYPERVISOR = {
  set_trap_table: 0, mmu_update: 1, set_gdt: 2, stack_switch: 3, set_callbacks: 4,
  fpu_taskswitch: 5, sched_op_compat: 6, platform_op: 7, set_debugreg: 8, get_debugreg: 9,
  update_descriptor: 10, memory_op: 12, multicall: 13, update_va_mapping: 14,
  set_timer_op: 15, event_channel_op_compat: 16, xen_version: 17, console_io: 18,
  physdev_op_compat: 19, grant_table_op: 20, vm_assist: 21,
  update_va_mapping_otherdomain: 22, iret: 23, vcpu_op: 24, set_segment_base: 25,
  mmuext_op: 26, xsm_op: 27, nmi_op: 28, sched_op: 29, callback_op: 30, xenoprof_op: 31,
  event_channel_op: 32, physdev_op: 33, hvm_op: 34, sysctl: 35, domctl: 36, kexec_op: 37,
  tmem_op: 38, argo_op: 39, xenpmu_op: 40, dm_op: 41, hypfs_op: 42,
} as const;

/** The Xen hypercall MSR (0x40000200 when Viridian is enabled). */
export const XEN_HYPERCALL_MSR = 0x40000000;

/** Registers at the hypercall instruction; only the ones the convention uses matter. */
export interface Regs {
  rax: bigint;
  rbx?: bigint; rcx?: bigint; rdx?: bigint; rsi?: bigint; rdi?: bigint; rbp?: bigint;
  r8?: bigint; r9?: bigint; r10?: bigint;
}

/** Everything a hypercall handler may touch. */
export class HypercallContext {
  constructor(readonly model: XenModel, readonly vcpu: Vcpu) {}

  get domain(): Domain {
    return this.vcpu.domain;
  }

  /** The calling vCPU's execution mode selects compat argument layouts. */
  get compat(): boolean {
    return this.vcpu.mode === 32;
  }

  get width(): Width {
    return this.vcpu.mode;
  }

  /** copy_from_guest: null when the range is not guest RAM (caller returns -EFAULT). */
  copyFrom(gva: bigint | number, len: number): Uint8Array | null {
    const a = Number(gva);
    if (!Number.isSafeInteger(a) || !this.domain.memory.contains(a, len)) return null;
    return this.domain.memory.read(a, len);
  }

  /** copy_to_guest: false when the range is not guest RAM. */
  copyTo(gva: bigint | number, bytes: Uint8Array): boolean {
    const a = Number(gva);
    if (!Number.isSafeInteger(a) || !this.domain.memory.contains(a, bytes.length)) return false;
    this.domain.memory.write(a, bytes);
    return true;
  }

  /** Guest-handle view of an argument struct: reads/writes fields or reports a fault. */
  view(gva: bigint | number, size: number): GuestStruct | null {
    const bytes = this.copyFrom(gva, size);
    return bytes ? new GuestStruct(this, Number(gva), bytes) : null;
  }
}

/** A copied-in argument struct; `commit` copies it back (copy_to_guest of the whole struct). */
export class GuestStruct {
  constructor(private readonly ctx: HypercallContext, readonly gva: number, readonly bytes: Uint8Array) {}
  u8(o: number): number { return getU8(this.bytes, o); }
  u16(o: number): number { return getU16(this.bytes, o); }
  i16(o: number): number { return getI16(this.bytes, o); }
  u32(o: number): number { return getU32(this.bytes, o); }
  i32(o: number): number { return getI32(this.bytes, o); }
  u64(o: number): bigint { return getU64(this.bytes, o); }
  setU8(o: number, v: number): void { setU8(this.bytes, o, v & 0xff); }
  setU16(o: number, v: number): void { setU16(this.bytes, o, v & 0xffff); }
  setI16(o: number, v: number): void { setU16(this.bytes, o, v & 0xffff); }
  setU32(o: number, v: number): void { setU32(this.bytes, o, v >>> 0); }
  setU64(o: number, v: bigint | number): void { setU64(this.bytes, o, BigInt(v)); }
  /** Write the whole struct back; false if the guest memory is gone (-EFAULT). */
  commit(): boolean {
    return this.ctx.copyTo(this.gva, this.bytes);
  }
  /** Write back only [off, off+len). */
  commitRange(off: number, len: number): boolean {
    return this.ctx.copyTo(this.gva + off, this.bytes.subarray(off, off + len));
  }
}

/** A hypercall: arguments already taken from registers per the calling convention. */
export type HypercallHandler = (ctx: HypercallContext, args: bigint[]) => bigint | number;

/** Hypercall numbers handled by the model; filled by the subsystem modules (see hypercall-table.ts). */
export const hypercallHandlers = new Map<number, HypercallHandler>();

export function registerHypercalls(table: Partial<Record<number, HypercallHandler>>): void {
  for (const [nr, fn] of Object.entries(table)) {
    if (!fn) continue;
    if (hypercallHandlers.has(Number(nr))) throw new Error(`hypercall ${nr} registered twice`);
    hypercallHandlers.set(Number(nr), fn);
  }
}

export interface HypercallResult {
  /** rax after the call, as the guest sees it (sign-extended from 32 bits in compat mode). */
  ret: bigint;
  /** The five argument registers Xen read, for tests of the convention. */
  args: bigint[];
}

const MASK32 = 0xffffffffn;

/** Arguments per the calling convention of the vCPU's current mode (spec/xen-abi.md 1.2). */
export function hypercallArgs(mode: Width, r: Regs): bigint[] {
  if (mode === 64) return [u64(r.rdi), u64(r.rsi), u64(r.rdx), u64(r.r10), u64(r.r8)];
  return [u32(r.rbx), u32(r.rcx), u32(r.rdx), u32(r.rsi), u32(r.rdi)];
}

const MASK64 = 0xffff_ffff_ffff_ffffn;

/**
 * A register as a 64-bit unsigned value (absent: 0). One already in range (every register
 * a step sets) is itself: no new BigInt per argument of every call.
 */
function u64(v: bigint | undefined): bigint {
  if (v === undefined) return 0n;
  return v >= 0n && v <= MASK64 ? v : BigInt.asUintN(64, v);
}

/** Its low 32 bits, unsigned. */
function u32(v: bigint | undefined): bigint {
  if (v === undefined) return 0n;
  return v >= 0n && v <= MASK32 ? v : BigInt.asUintN(64, v) & MASK32;
}

/** rax as the guest sees it after the call (sign-extended from 32 bits in compat mode). */
function result(mode: Width, v: bigint | number, args: bigint[]): HypercallResult {
  // A small integer return (every handler's errno or count) is its own sign extension.
  if (typeof v === 'number' && v >= -0x8000_0000 && v <= 0x7fff_ffff && Number.isInteger(v)) return { ret: BigInt(v), args };
  const raw = BigInt(v);
  return { ret: mode === 64 ? BigInt.asIntN(64, raw) : BigInt.asIntN(32, raw), args };
}

/** Execute one hypercall instruction on a vCPU (hvm_hypercall). */
export function hypercall(model: XenModel, vcpu: Vcpu, regs: Regs): HypercallResult {
  enterGuest(vcpu);
  const mode = vcpu.mode;
  const nr = mode === 64 ? u64(regs.rax) : u32(regs.rax);
  const args = hypercallArgs(mode, regs);
  // A KVM whose VMM left INTERCEPT_HCALL out answers with its own handler (kvm_emulate_hypercall).
  if (model.flavor === 'kvm' && !kvmInterceptsHypercalls(vcpu.domain)) {
    const cut = mode === 64 ? u64 : u32;
    const r = result(mode, kvmOwnHypercall(nr, [cut(regs.rbx), cut(regs.rcx), cut(regs.rdx), cut(regs.rsi)], vcpu.cpl), args);
    // An exit KVM handled in-kernel: vcpu_run delivers what it holds before the guest runs on.
    for (const h of modelHooks.inKernelExit) h(vcpu);
    return r;
  }
  // Xen: any hypercall from CPL > 0 fails with -EPERM. KVM forwards CPL > 0
  // calls to the VMM, and QEMU (target/i386/kvm/xen-emu.c) answers -EPERM too.
  if (vcpu.cpl > 0 && !hasBug(model, 'cpl_accepted')) return result(mode, err('EPERM'), args);
  const handler = nr < 64n ? hypercallHandlers.get(Number(nr)) : undefined;
  if (!handler) return result(mode, err('ENOSYS'), args);
  const ctx = new HypercallContext(model, vcpu);
  try {
    return result(mode, handler(ctx, args), args);
  } catch (e) {
    if (e instanceof GuestFault) return result(mode, err('EFAULT'), args);
    throw e;
  }
}

/** Outcome of a wrmsr: ok, or a #GP the guest would take. */
export type MsrResult = { ok: true } | { ok: false; fault: 'GP' };

const HYPERCALL_NR_STUBS = PAGE_SIZE / 32;

const pageImages = new Map<string, Uint8Array>();

/** The 128 32-byte stubs Xen (or KVM) writes into the hypercall page (built once per CPU and flavour; never mutate it). */
export function hypercallPageImage(cpu: 'intel' | 'amd', flavor: 'xen' | 'kvm'): Uint8Array {
  const key = `${cpu}/${flavor}`;
  let page = pageImages.get(key);
  if (!page) pageImages.set(key, (page = buildPageImage(cpu, flavor)));
  return page;
}

function buildPageImage(cpu: 'intel' | 'amd', flavor: 'xen' | 'kvm'): Uint8Array {
  const page = new Uint8Array(PAGE_SIZE).fill(0xcc); // int3 everywhere first
  for (let i = 0; i < HYPERCALL_NR_STUBS; i++) {
    const p = i * 32;
    if (flavor === 'xen' && i === HYPERVISOR.iret) {
      // Xen's HVM page: the iret slot holds ud2 (hvm_hypercall has no iret for HVM).
      page[p] = 0x0f;
      page[p + 1] = 0x0b;
      continue;
    }
    page[p] = 0xb8; // mov eax, imm32
    page[p + 1] = i & 0xff;
    page[p + 2] = (i >> 8) & 0xff;
    page[p + 3] = 0;
    page[p + 4] = 0;
    page[p + 5] = 0x0f;
    page[p + 6] = 0x01;
    page[p + 7] = cpu === 'intel' ? 0xc1 : 0xd9; // vmcall : vmmcall
    page[p + 8] = 0xc3; // ret
  }
  return page;
}

/** wrmsr by the guest on a vCPU (guest_wrmsr_xen / kvm_xen_write_hypercall_page). */
export function wrmsr(model: XenModel, vcpu: Vcpu, index: number, value: bigint): MsrResult {
  enterGuest(vcpu);
  if (index !== XEN_HYPERCALL_MSR) return { ok: false, fault: 'GP' };
  const pageIndex = Number(value & 0xfffn);
  const gpa = Number(BigInt.asUintN(64, value) & ~0xfffn);
  const d = vcpu.domain;
  // KVM latches its width first, whatever the page index (kvm_xen_write_hypercall_page).
  if (model.flavor === 'kvm') kvmLatchWidth(d, vcpu.mode, false);
  // KVM configured with a blob instead of INTERCEPT_HCALL copies the blob's page N (null:
  // past the blob); otherwise there is exactly one hypercall page, any other index is a #GP.
  const blob = model.flavor === 'kvm' ? kvmBlobPage(d, pageIndex) : undefined;
  if (blob === null || (blob === undefined && pageIndex !== 0)) return { ok: false, fault: 'GP' };
  if (!d.memory.contains(gpa, PAGE_SIZE)) return { ok: false, fault: 'GP' };
  d.memory.write(gpa, blob ?? hypercallPageImage(model.config.cpu, model.flavor));
  if (blob === undefined) {
    d.hypercallPageGpa = gpa;
    d.areas.set('hypercall_page', gpa);
  }
  // The MSR write latches the shared_info format from the writer's current mode (KVM
  // latched it above).
  latchSharedInfoLayout(d, vcpu.mode);
  return { ok: true };
}
