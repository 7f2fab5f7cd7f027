// Typed wrapper over the native KVM addon (native/src/addon.cc).
//
// - loadAddon() / openKvm() / probeKvm() never throw for environment
//   problems: they return { ok: false, reason, code } saying exactly why
//   (addon not built, /dev/kvm missing, permission denied, ...).
// - KvmSystem, KvmVm, KvmVcpu, KvmEventfd own descriptors; close() them or
//   use `using`. Every argument is checked here before the native call (and
//   again in C++). ioctl failures throw DriverError with code/errno/syscall.
// - GuestVm is the high-level helper: a VM with N vCPUs running the xconf
//   test guest (guest.ts) in 64- or 32-bit mode, one native crossing per batch
//   of guest commands, with a callback for KVM_EXIT_XEN.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DriverError } from '../../errors.js';
import {
  GUEST_LAYOUT,
  HDR,
  GUEST_STATE,
  blockAddress,
  buildGdt,
  buildIdt,
  buildPageTables,
  buildTss,
  checkMode,
  decodeBlockHeader,
  decodeResults,
  decodeUpcallRing,
  encodeBlockHeader,
  encodeCommands,
  guestRegs,
  guestSregs,
  loadGuestImage,
  type BlockHeader,
  type CommandResult,
  type GuestCommand,
  type GuestImage,
  type GuestMode,
  type UpcallRecord,
} from './guest.js';

// ------------------------------------------------------------- constants --

/** KVM_CHECK_EXTENSION capability numbers used by xconf (linux/kvm.h). */
export const KVM_CAP = {
  IRQCHIP: 0,
  HLT: 1,
  USER_MEMORY: 3,
  SET_TSS_ADDR: 4,
  NR_VCPUS: 9,
  NR_MEMSLOTS: 10,
  MP_STATE: 14,
  IRQ_ROUTING: 25,
  IRQFD: 32,
  XEN_HVM: 38,
  MAX_VCPUS: 66,
  IMMEDIATE_EXIT: 136,
  DISABLE_QUIRKS2: 213,
} as const;

/** KVM_CAP_XEN_HVM flag bits (also the settable kvm_xen_hvm_config.flags). */
export const XEN_HVM_FLAG = {
  HYPERCALL_MSR: 1 << 0,
  INTERCEPT_HCALL: 1 << 1,
  SHARED_INFO: 1 << 2,
  RUNSTATE: 1 << 3,
  EVTCHN_2LEVEL: 1 << 4,
  EVTCHN_SEND: 1 << 5,
  RUNSTATE_UPDATE_FLAG: 1 << 6,
  PVCLOCK_TSC_UNSTABLE: 1 << 7,
  SHARED_INFO_HVA: 1 << 8,
} as const;
export type XenHvmFlagName = keyof typeof XEN_HVM_FLAG;
export const XEN_HVM_FLAG_NAMES = Object.keys(XEN_HVM_FLAG) as XenHvmFlagName[];
const XEN_HVM_KNOWN_BITS = Object.values(XEN_HVM_FLAG).reduce((a, b) => a | b, 0);

/** The names of the KVM_CAP_XEN_HVM bits set in `caps` (unknown bits as `bit<n>`). */
export function xenHvmFlagNames(caps: number): string[] {
  const out: string[] = [];
  for (let bit = 0; bit < 32; bit++) {
    if (((caps >>> bit) & 1) === 0) continue;
    const name = XEN_HVM_FLAG_NAMES.find((n) => XEN_HVM_FLAG[n] === 1 << bit);
    out.push(name ?? `bit${bit}`);
  }
  return out;
}

/** KVM_XEN_HVM_{GET,SET}_ATTR types (6.12 adds 5 and 6). */
export const XEN_ATTR = {
  LONG_MODE: 0,
  SHARED_INFO: 1,
  UPCALL_VECTOR: 2,
  EVTCHN: 3,
  XEN_VERSION: 4,
  RUNSTATE_UPDATE_FLAG: 5,
  SHARED_INFO_HVA: 6,
} as const;

/** KVM_XEN_VCPU_{GET,SET}_ATTR types (6.12 adds 9). */
export const XEN_VCPU_ATTR = {
  VCPU_INFO: 0,
  VCPU_TIME_INFO: 1,
  RUNSTATE_ADDR: 2,
  RUNSTATE_CURRENT: 3,
  RUNSTATE_DATA: 4,
  RUNSTATE_ADJUST: 5,
  VCPU_ID: 6,
  TIMER: 7,
  UPCALL_VECTOR: 8,
  VCPU_INFO_HVA: 9,
} as const;

/** kvm_xen_hvm_attr.u.evtchn.flags */
export const XEN_EVTCHN_FLAG = { DEASSIGN: 1, UPDATE: 2, RESET: 4 } as const;
/** Xen EVTCHNSTAT_* values KVM accepts as evtchn.type. */
export const EVTCHNSTAT = { interdomain: 2, ipi: 5 } as const;
export const XEN_EVTCHN_PRIO_2LEVEL = 0xffffffff;
export const KVM_XEN_INVALID_GFN = (1n << 64n) - 1n;
export const KVM_XEN_INVALID_GPA = (1n << 64n) - 1n;
/** The hypercall MSR index Xen uses (0x40000000; 0x40000200 with Viridian). */
export const XEN_HYPERCALL_MSR = 0x40000000;

export const KVM_EXIT = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  SET_TPR: 11,
  TPR_ACCESS: 12,
  NMI: 16,
  INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
  IOAPIC_EOI: 26,
  HYPERV: 27,
  X86_RDMSR: 29,
  X86_WRMSR: 30,
  DIRTY_RING_FULL: 31,
  AP_RESET_HOLD: 32,
  X86_BUS_LOCK: 33,
  XEN: 34,
  NOTIFY: 37,
  MEMORY_FAULT: 39,
} as const;

export function exitReasonName(reason: number): string {
  for (const [k, v] of Object.entries(KVM_EXIT)) if (v === reason) return `KVM_EXIT_${k}`;
  return `KVM_EXIT_${reason}`;
}

export const MP_STATE = { RUNNABLE: 0, UNINITIALIZED: 1, INIT_RECEIVED: 2, HALTED: 3, SIPI_RECEIVED: 4 } as const;
export const IRQ_ROUTING = { IRQCHIP: 1, MSI: 2, XEN_EVTCHN: 5 } as const;
export const IRQFD_FLAG = { DEASSIGN: 1, RESAMPLE: 2 } as const;
/** KVM's own hypercall error numbers, as a plain-KVM guest sees them in rax. */
export const KVM_HC_ERR = { ENOSYS: -1000n, EFAULT: -14n, EPERM: -1n, EOPNOTSUPP: -95n } as const;

const STRUCT_SIZES = {
  kvm_regs: 144,
  kvm_sregs: 312,
  kvm_cpuid_entry2: 40,
  kvm_xen_hvm_config: 56,
  kvm_xen_hvm_attr: 72,
  kvm_xen_vcpu_attr: 72,
  kvm_irq_routing_entry: 48,
} as const;

// ---------------------------------------------------------- native types --

export interface NativeRunOutcome {
  kind: 'done' | 'yield' | 'fault' | 'timeout' | 'exit';
  value: number;
  runs: number;
  logs: number[];
  logsDropped: number;
  exit?: NativeExit;
}

export interface NativeExit {
  reason: number;
  io?: { direction: 'in' | 'out'; size: number; port: number; count: number; data?: Buffer };
  mmio?: { physAddr: bigint; len: number; isWrite: boolean; data: Buffer };
  xen?: { type: number; longmode: number; cpl: number; input: bigint; result: bigint; params: bigint[] };
  failEntry?: { hardwareReason: bigint; cpu: number };
  internal?: { suberror: number; data: bigint[] };
  systemEvent?: { type: number; data: bigint[] };
  hypercall?: { nr: bigint; args: bigint[] };
  exception?: { exception: number; errorCode: number };
}

export interface NativeVcpu {
  readonly id: number;
  readonly fd: number;
  readonly closed: boolean;
  readonly busy: boolean;
  getRegs(): Buffer;
  setRegs(b: Uint8Array): void;
  getSregs(): Buffer;
  setSregs(b: Uint8Array): void;
  setCpuid(b: Uint8Array): void;
  getMpState(): number;
  setMpState(s: number): void;
  xenGetAttr(b: Uint8Array): Buffer;
  xenSetAttr(b: Uint8Array): void;
  run(timeoutMs: number, portBase: number): NativeRunOutcome;
  runAsync(timeoutMs: number, portBase: number): Promise<NativeRunOutcome>;
  runOnce(): number;
  exitInfo(): NativeExit;
  setXenResult(v: bigint): void;
  close(): void;
}

export interface NativeVm {
  readonly fd: number;
  readonly closed: boolean;
  checkExtension(cap: number): number;
  enableCap(cap: number, flags: number, args: Uint8Array): void;
  setTssAddr(addr: number): void;
  createIrqchip(): void;
  setMemory(slot: number, gpa: number, size: number, flags: number): bigint;
  removeMemory(slot: number): void;
  read(gpa: number, len: number): Buffer;
  write(gpa: number, data: Uint8Array): void;
  hva(gpa: number): bigint;
  xenHvmConfig(b: Uint8Array): void;
  xenGetAttr(b: Uint8Array): Buffer;
  xenSetAttr(b: Uint8Array): void;
  xenEvtchnSend(port: number, vcpu: number, priority: number): void;
  setGsiRouting(b: Uint8Array): void;
  irqfd(fd: number, gsi: number, flags: number, resamplefd: number): void;
  createVcpu(id: number): NativeVcpu;
  close(): void;
}

export interface NativeSystem {
  readonly fd: number;
  readonly closed: boolean;
  apiVersion(): number;
  checkExtension(cap: number): number;
  vcpuMmapSize(): number;
  supportedCpuid(): Buffer;
  createVm(type: number): NativeVm;
  close(): void;
}

export interface NativeEventfd {
  readonly fd: number;
  readonly closed: boolean;
  signal(v?: bigint | number): void;
  read(): bigint | null;
  close(): void;
}

export interface NativeAddon {
  System: new (path: string) => NativeSystem;
  Eventfd: new (initval: number) => NativeEventfd;
  structSizes: Record<string, number>;
  timeoutSignal: number;
  abiVersion: number;
}

// --------------------------------------------------------------- loading --

export type Unavailable = { ok: false; reason: string; code: string; errno?: number };

const nativeDir = process.env.XCONF_NATIVE_BUILD_DIR ?? fileURLToPath(new URL('../../../native/build/', import.meta.url));
export const NATIVE_BUILD_DIR = nativeDir;
const NATIVE_ABI_VERSION = 1;

let cached: { ok: true; addon: NativeAddon } | Unavailable | undefined;

/** Load the built addon, or say why it is not available. Cached. */
export function loadAddon(): { ok: true; addon: NativeAddon } | Unavailable {
  cached ??= loadAddonFrom(nativeDir);
  return cached;
}

/** Load the addon from a native build directory (holding status.json and Release/), uncached. */
export function loadAddonFrom(buildDir: string): { ok: true; addon: NativeAddon } | Unavailable {
  const dir = buildDir.endsWith('/') ? buildDir : `${buildDir}/`;
  const statusPath = `${dir}status.json`;
  const addonPath = `${dir}Release/xconf_kvm.node`;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    return { ok: false, code: 'ENOTSUP', reason: `the KVM addon needs Linux on x86-64 (this is ${process.platform}/${process.arch})` };
  }
  if (!existsSync(statusPath)) {
    return {
      ok: false,
      code: 'ENOADDON',
      reason: 'the native KVM addon was never built (native/build/status.json is missing): run `npm ci` or `npm rebuild`',
    };
  }
  let status: { ok?: unknown; reason?: unknown };
  try {
    status = JSON.parse(readFileSync(statusPath, 'utf8'));
  } catch (e) {
    return { ok: false, code: 'ENOADDON', reason: `native/build/status.json is unreadable: ${(e as Error).message}` };
  }
  if (status.ok !== true) {
    return {
      ok: false,
      code: 'ENOADDON',
      reason: `the native KVM addon did not build: ${typeof status.reason === 'string' ? status.reason : 'no reason recorded'}`,
    };
  }
  if (!existsSync(addonPath)) {
    return { ok: false, code: 'ENOADDON', reason: `native/build/status.json says ok but ${addonPath} is missing: run \`npm rebuild\`` };
  }
  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(addonPath) as NativeAddon;
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    return { ok: false, code: 'ENOADDON', reason: `loading the native KVM addon failed: ${msg}` };
  }
  if (addon.abiVersion !== NATIVE_ABI_VERSION) {
    return { ok: false, code: 'ENOADDON', reason: `the native addon is version ${addon.abiVersion}, expected ${NATIVE_ABI_VERSION}: run \`npm rebuild\`` };
  }
  for (const [name, size] of Object.entries(STRUCT_SIZES)) {
    if (addon.structSizes[name] !== size) {
      return { ok: false, code: 'ENOADDON', reason: `struct ${name} is ${addon.structSizes[name]} bytes in the addon, ${size} here` };
    }
  }
  return { ok: true, addon };
}

function isSysError(e: unknown): e is Error & { code: string; errno: number; syscall: string } {
  return e instanceof Error && typeof (e as { errno?: unknown }).errno === 'number' && typeof (e as { syscall?: unknown }).syscall === 'string';
}

/** Run a native call; turn its system errors into DriverError. */
function sys<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (isSysError(e)) throw new DriverError(e.message, { code: e.code, errno: e.errno, syscall: e.syscall });
    throw e;
  }
}

async function sysAsync<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (isSysError(e)) throw new DriverError(e.message, { code: e.code, errno: e.errno, syscall: e.syscall });
    throw e;
  }
}

function describeOpenError(path: string, code: string, errno: number): string {
  switch (code) {
    case 'ENOENT':
      return `${path} does not exist: this kernel has no KVM, or the kvm module is not loaded`;
    case 'EACCES':
    case 'EPERM':
      return `permission denied opening ${path}: run as a user in the group owning it (usually 'kvm')`;
    case 'ENXIO':
    case 'ENODEV':
      return `${path} exists but has no KVM behind it (module not loaded or virtualization disabled)`;
    case 'EBUSY':
      return `${path} is busy (another hypervisor holds the virtualization extensions)`;
    default:
      return `opening ${path} failed: ${code} (errno ${errno})`;
  }
}

/** Open /dev/kvm, or say why not. */
export function openKvm(path = '/dev/kvm'): { ok: true; kvm: KvmSystem } | Unavailable {
  const loaded = loadAddon();
  if (!loaded.ok) return loaded;
  let native: NativeSystem;
  try {
    native = new loaded.addon.System(path);
  } catch (e) {
    if (isSysError(e)) return { ok: false, code: e.code, errno: e.errno, reason: describeOpenError(path, e.code, e.errno) };
    throw e;
  }
  const kvm = new KvmSystem(native, loaded.addon);
  try {
    const v = kvm.apiVersion();
    if (v !== 12) {
      kvm.close();
      return { ok: false, code: 'EPROTO', reason: `KVM API version is ${v}, xconf needs 12` };
    }
  } catch (e) {
    kvm.close();
    if (e instanceof DriverError) return { ok: false, code: e.code, errno: e.errno, reason: e.message };
    throw e;
  }
  return { ok: true, kvm };
}

/** Which vendor module backs /dev/kvm (from /sys/module). PVM runs guests without VMX/SVM. */
export function kvmModule(): 'kvm_intel' | 'kvm_amd' | 'kvm_pvm' | 'unknown' {
  for (const m of ['kvm_intel', 'kvm_amd', 'kvm_pvm'] as const) if (existsSync(`/sys/module/${m}`)) return m;
  return 'unknown';
}

export interface KvmProbe {
  module: ReturnType<typeof kvmModule>;
  apiVersion: number;
  /** KVM_CHECK_EXTENSION(KVM_CAP_XEN_HVM): 0 when the kernel has no Xen support. */
  xenHvm: number;
  xenHvmFlags: string[];
  irqchip: boolean;
  irqRouting: boolean;
  irqfd: boolean;
  immediateExit: boolean;
  maxVcpus: number;
}

/** What this host's KVM offers, or why it cannot be used. */
export function probeKvm(path = '/dev/kvm'): ({ ok: true } & KvmProbe) | Unavailable {
  const o = openKvm(path);
  if (!o.ok) return o;
  using kvm = o.kvm;
  const xenHvm = kvm.checkExtension(KVM_CAP.XEN_HVM);
  return {
    ok: true,
    module: kvmModule(),
    apiVersion: kvm.apiVersion(),
    xenHvm,
    xenHvmFlags: xenHvmFlagNames(xenHvm),
    irqchip: kvm.checkExtension(KVM_CAP.IRQCHIP) > 0,
    irqRouting: kvm.checkExtension(KVM_CAP.IRQ_ROUTING) > 0,
    irqfd: kvm.checkExtension(KVM_CAP.IRQFD) > 0,
    immediateExit: kvm.checkExtension(KVM_CAP.IMMEDIATE_EXIT) > 0,
    maxVcpus: kvm.checkExtension(KVM_CAP.MAX_VCPUS) || kvm.checkExtension(KVM_CAP.NR_VCPUS),
  };
}

// ---------------------------------------------------------- arg checking --

function argErr(msg: string): never {
  throw new RangeError(msg);
}

export function checkU32(v: unknown, what: string, max = 0xffffffff): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    argErr(`${what} must be an integer in 0..${max}, got ${String(v)}`);
  }
  return v;
}

const U64_MAX = (1n << 64n) - 1n;

export function checkU64(v: unknown, what: string): bigint {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) argErr(`${what} must be a non-negative safe integer or a bigint, got ${v}`);
    return BigInt(v);
  }
  if (typeof v === 'bigint') {
    if (v < 0n || v > U64_MAX) argErr(`${what} must fit in 64 unsigned bits, got ${v}`);
    return v;
  }
  throw new TypeError(`${what} must be a number or bigint`);
}

/** A u64 that may also be given as a negative number (two's complement), e.g. -1 for "unchanged". */
function checkU64OrNeg(v: unknown, what: string): bigint {
  if ((typeof v === 'bigint' && v < 0n) || (typeof v === 'number' && v < 0)) {
    const b = BigInt(v as number | bigint);
    if (b < -(1n << 63n)) argErr(`${what} is below -2^63`);
    return BigInt.asUintN(64, b);
  }
  return checkU64(v, what);
}

const PAGE = 4096;

function checkGpaLen(gpa: unknown, len: unknown, what: string): void {
  if (typeof gpa !== 'number' || !Number.isSafeInteger(gpa) || gpa < 0) argErr(`${what}: gpa must be a non-negative safe integer, got ${String(gpa)}`);
  if (typeof len !== 'number' || !Number.isSafeInteger(len) || len < 0 || len > 1 << 30) {
    argErr(`${what}: length must be an integer in 0..2^30, got ${String(len)}`);
  }
}

function checkBytes(b: unknown, what: string): Uint8Array {
  if (!(b instanceof Uint8Array)) throw new TypeError(`${what} must be a Buffer or Uint8Array`);
  return b;
}

// -------------------------------------------------------- struct codecs --

export interface Regs {
  rax: bigint; rbx: bigint; rcx: bigint; rdx: bigint; rsi: bigint; rdi: bigint; rsp: bigint; rbp: bigint;
  r8: bigint; r9: bigint; r10: bigint; r11: bigint; r12: bigint; r13: bigint; r14: bigint; r15: bigint;
  rip: bigint; rflags: bigint;
}
const REG_NAMES = [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags',
] as const;

export function decodeRegs(b: Buffer): Regs {
  const r = {} as Regs;
  REG_NAMES.forEach((n, i) => (r[n] = b.readBigUInt64LE(8 * i)));
  return r;
}

export function encodeRegs(r: Regs): Buffer {
  const b = Buffer.alloc(STRUCT_SIZES.kvm_regs);
  REG_NAMES.forEach((n, i) => b.writeBigUInt64LE(checkU64(r[n], `regs.${n}`), 8 * i));
  return b;
}

export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}
export interface DescriptorTable {
  base: bigint;
  limit: number;
}
export interface Sregs {
  cs: Segment; ds: Segment; es: Segment; fs: Segment; gs: Segment; ss: Segment; tr: Segment; ldt: Segment;
  gdt: DescriptorTable;
  idt: DescriptorTable;
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint; efer: bigint; apicBase: bigint;
  interruptBitmap: bigint[];
}
const SEG_NAMES = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
const SEG_BYTES = ['type', 'present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable'] as const;
const CR_NAMES = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apicBase'] as const;

export function decodeSregs(b: Buffer): Sregs {
  const s = {} as Sregs;
  SEG_NAMES.forEach((n, i) => {
    const o = 24 * i;
    const seg = { base: b.readBigUInt64LE(o), limit: b.readUInt32LE(o + 8), selector: b.readUInt16LE(o + 12) } as Segment;
    SEG_BYTES.forEach((f, j) => (seg[f] = b.readUInt8(o + 14 + j)));
    s[n] = seg;
  });
  s.gdt = { base: b.readBigUInt64LE(192), limit: b.readUInt16LE(200) };
  s.idt = { base: b.readBigUInt64LE(208), limit: b.readUInt16LE(216) };
  CR_NAMES.forEach((n, i) => (s[n] = b.readBigUInt64LE(224 + 8 * i)));
  s.interruptBitmap = [0, 1, 2, 3].map((i) => b.readBigUInt64LE(280 + 8 * i));
  return s;
}

export function encodeSregs(s: Sregs): Buffer {
  const b = Buffer.alloc(STRUCT_SIZES.kvm_sregs);
  SEG_NAMES.forEach((n, i) => {
    const o = 24 * i;
    const seg = s[n];
    b.writeBigUInt64LE(checkU64(seg.base, `sregs.${n}.base`), o);
    b.writeUInt32LE(checkU32(seg.limit, `sregs.${n}.limit`), o + 8);
    b.writeUInt16LE(checkU32(seg.selector, `sregs.${n}.selector`, 0xffff), o + 12);
    SEG_BYTES.forEach((f, j) => b.writeUInt8(checkU32(seg[f], `sregs.${n}.${f}`, 0xff), o + 14 + j));
  });
  b.writeBigUInt64LE(checkU64(s.gdt.base, 'sregs.gdt.base'), 192);
  b.writeUInt16LE(checkU32(s.gdt.limit, 'sregs.gdt.limit', 0xffff), 200);
  b.writeBigUInt64LE(checkU64(s.idt.base, 'sregs.idt.base'), 208);
  b.writeUInt16LE(checkU32(s.idt.limit, 'sregs.idt.limit', 0xffff), 216);
  CR_NAMES.forEach((n, i) => b.writeBigUInt64LE(checkU64(s[n], `sregs.${n}`), 224 + 8 * i));
  (s.interruptBitmap ?? [0n, 0n, 0n, 0n]).forEach((v, i) => b.writeBigUInt64LE(checkU64(v, 'sregs.interruptBitmap'), 280 + 8 * i));
  return b;
}

export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}
/** kvm_cpuid_entry2.flags: the index (sub-leaf) is significant. */
export const CPUID_FLAG_SIGNIFICANT_INDEX = 1;

export function decodeCpuid(b: Buffer): CpuidEntry[] {
  const out: CpuidEntry[] = [];
  for (let o = 0; o + 40 <= b.length; o += 40) {
    out.push({
      function: b.readUInt32LE(o),
      index: b.readUInt32LE(o + 4),
      flags: b.readUInt32LE(o + 8),
      eax: b.readUInt32LE(o + 12),
      ebx: b.readUInt32LE(o + 16),
      ecx: b.readUInt32LE(o + 20),
      edx: b.readUInt32LE(o + 24),
    });
  }
  return out;
}

export function encodeCpuid(entries: readonly CpuidEntry[]): Buffer {
  if (entries.length > 4096) argErr('at most 4096 CPUID entries');
  const b = Buffer.alloc(entries.length * 40);
  entries.forEach((e, i) => {
    const o = i * 40;
    (['function', 'index', 'flags', 'eax', 'ebx', 'ecx', 'edx'] as const).forEach((f, j) =>
      b.writeUInt32LE(checkU32(e[f], `cpuid[${i}].${f}`), o + 4 * j),
    );
  });
  return b;
}

export interface XenHvmConfig {
  /** KVM_XEN_HVM_CONFIG_* bits to set (6.1 accepts INTERCEPT_HCALL and EVTCHN_SEND). */
  flags: number;
  /** Hypercall MSR index; 0 leaves the MSR off. */
  msr: number;
  blobAddr32?: U64Like;
  blobAddr64?: U64Like;
  blobSize32?: number;
  blobSize64?: number;
}
export type U64Like = bigint | number;

export function encodeXenHvmConfig(c: XenHvmConfig): Buffer {
  const flags = checkU32(c.flags, 'xen config flags');
  if ((flags & ~XEN_HVM_KNOWN_BITS) !== 0) argErr(`xen config flags 0x${flags.toString(16)} has unknown bits`);
  const b = Buffer.alloc(STRUCT_SIZES.kvm_xen_hvm_config);
  b.writeUInt32LE(flags, 0);
  b.writeUInt32LE(checkU32(c.msr, 'xen config msr'), 4);
  b.writeBigUInt64LE(checkU64(c.blobAddr32 ?? 0, 'blobAddr32'), 8);
  b.writeBigUInt64LE(checkU64(c.blobAddr64 ?? 0, 'blobAddr64'), 16);
  b.writeUInt8(checkU32(c.blobSize32 ?? 0, 'blobSize32', 0xff), 24);
  b.writeUInt8(checkU32(c.blobSize64 ?? 0, 'blobSize64', 0xff), 25);
  return b;
}

export type XenEvtchnDeliver =
  | { kind: 'port'; port: number; vcpu: number; priority?: number }
  | { kind: 'eventfd'; fd: number };

/** A per-VM Xen attribute (KVM_XEN_HVM_{GET,SET}_ATTR). */
export type XenHvmAttr =
  | { type: 'long_mode'; longMode: boolean }
  | { type: 'shared_info'; gfn: U64Like }
  | { type: 'upcall_vector'; vector: number }
  | {
      type: 'evtchn';
      sendPort: number;
      evtchnType: number;
      flags?: number;
      deliver?: XenEvtchnDeliver;
    }
  | { type: 'xen_version'; version: number }
  | { type: 'runstate_update_flag'; enabled: boolean }
  | { type: 'shared_info_hva'; hva: U64Like };
export type XenHvmAttrType = XenHvmAttr['type'];

const HVM_ATTR_NUM: Record<XenHvmAttrType, number> = {
  long_mode: XEN_ATTR.LONG_MODE,
  shared_info: XEN_ATTR.SHARED_INFO,
  upcall_vector: XEN_ATTR.UPCALL_VECTOR,
  evtchn: XEN_ATTR.EVTCHN,
  xen_version: XEN_ATTR.XEN_VERSION,
  runstate_update_flag: XEN_ATTR.RUNSTATE_UPDATE_FLAG,
  shared_info_hva: XEN_ATTR.SHARED_INFO_HVA,
};

function checkVector(v: unknown, what: string): number {
  return checkU32(v, what, 0xff);
}

export function encodeXenHvmAttr(a: XenHvmAttr): Buffer {
  const type = HVM_ATTR_NUM[a?.type as XenHvmAttrType];
  if (type === undefined) throw new TypeError(`unknown Xen VM attribute type ${String(a?.type)}`);
  const b = Buffer.alloc(STRUCT_SIZES.kvm_xen_hvm_attr);
  b.writeUInt16LE(type, 0);
  switch (a.type) {
    case 'long_mode':
      b.writeUInt8(a.longMode ? 1 : 0, 8);
      break;
    case 'shared_info':
      b.writeBigUInt64LE(checkU64(a.gfn, 'shared_info.gfn'), 8);
      break;
    case 'upcall_vector':
      b.writeUInt8(checkVector(a.vector, 'upcall_vector.vector'), 8);
      break;
    case 'evtchn': {
      b.writeUInt32LE(checkU32(a.sendPort, 'evtchn.sendPort'), 8);
      b.writeUInt32LE(checkU32(a.evtchnType, 'evtchn.evtchnType'), 12);
      const flags = checkU32(a.flags ?? 0, 'evtchn.flags', 7);
      b.writeUInt32LE(flags, 16);
      const d = a.deliver;
      if (d?.kind === 'port') {
        b.writeUInt32LE(checkU32(d.port, 'evtchn.deliver.port'), 20);
        b.writeUInt32LE(checkU32(d.vcpu, 'evtchn.deliver.vcpu'), 24);
        b.writeUInt32LE(checkU32(d.priority ?? XEN_EVTCHN_PRIO_2LEVEL, 'evtchn.deliver.priority'), 28);
      } else if (d?.kind === 'eventfd') {
        b.writeUInt32LE(0, 20);
        b.writeInt32LE(checkU32(d.fd, 'evtchn.deliver.fd', 0x7fffffff), 24);
      } else if (d !== undefined) {
        throw new TypeError("evtchn.deliver.kind must be 'port' or 'eventfd'");
      } else if ((flags & (XEN_EVTCHN_FLAG.DEASSIGN | XEN_EVTCHN_FLAG.RESET)) === 0) {
        argErr('evtchn.deliver is required unless flags has DEASSIGN or RESET');
      }
      break;
    }
    case 'xen_version':
      b.writeUInt32LE(checkU32(a.version, 'xen_version.version'), 8);
      break;
    case 'runstate_update_flag':
      b.writeUInt8(a.enabled ? 1 : 0, 8);
      break;
    case 'shared_info_hva':
      b.writeBigUInt64LE(checkU64(a.hva, 'shared_info_hva.hva'), 8);
      break;
  }
  return b;
}

export function decodeXenHvmAttr(b: Buffer): XenHvmAttr {
  const type = b.readUInt16LE(0);
  switch (type) {
    case XEN_ATTR.LONG_MODE:
      return { type: 'long_mode', longMode: b.readUInt8(8) !== 0 };
    case XEN_ATTR.SHARED_INFO:
      return { type: 'shared_info', gfn: b.readBigUInt64LE(8) };
    case XEN_ATTR.UPCALL_VECTOR:
      return { type: 'upcall_vector', vector: b.readUInt8(8) };
    case XEN_ATTR.EVTCHN:
      return {
        type: 'evtchn',
        sendPort: b.readUInt32LE(8),
        evtchnType: b.readUInt32LE(12),
        flags: b.readUInt32LE(16),
        deliver: { kind: 'port', port: b.readUInt32LE(20), vcpu: b.readUInt32LE(24), priority: b.readUInt32LE(28) },
      };
    case XEN_ATTR.XEN_VERSION:
      return { type: 'xen_version', version: b.readUInt32LE(8) };
    case XEN_ATTR.RUNSTATE_UPDATE_FLAG:
      return { type: 'runstate_update_flag', enabled: b.readUInt8(8) !== 0 };
    case XEN_ATTR.SHARED_INFO_HVA:
      return { type: 'shared_info_hva', hva: b.readBigUInt64LE(8) };
    default:
      throw new RangeError(`unknown Xen VM attribute type ${type}`);
  }
}

export interface RunstateData {
  state: U64Like;
  stateEntryTime: U64Like;
  timeRunning: U64Like;
  timeRunnable: U64Like;
  timeBlocked: U64Like;
  timeOffline: U64Like;
}

/** A per-vCPU Xen attribute (KVM_XEN_VCPU_{GET,SET}_ATTR). */
export type XenVcpuAttr =
  | { type: 'vcpu_info' | 'vcpu_time_info' | 'runstate_addr'; gpa: U64Like }
  | { type: 'vcpu_info_hva'; hva: U64Like }
  | { type: 'runstate_current'; state: U64Like }
  | ({ type: 'runstate_data' | 'runstate_adjust' } & RunstateData)
  | { type: 'vcpu_id'; vcpuId: number }
  | { type: 'timer'; port: number; priority?: number; expiresNs: U64Like }
  | { type: 'upcall_vector'; vector: number };
export type XenVcpuAttrType = XenVcpuAttr['type'];

const VCPU_ATTR_NUM: Record<XenVcpuAttrType, number> = {
  vcpu_info: XEN_VCPU_ATTR.VCPU_INFO,
  vcpu_time_info: XEN_VCPU_ATTR.VCPU_TIME_INFO,
  runstate_addr: XEN_VCPU_ATTR.RUNSTATE_ADDR,
  runstate_current: XEN_VCPU_ATTR.RUNSTATE_CURRENT,
  runstate_data: XEN_VCPU_ATTR.RUNSTATE_DATA,
  runstate_adjust: XEN_VCPU_ATTR.RUNSTATE_ADJUST,
  vcpu_id: XEN_VCPU_ATTR.VCPU_ID,
  timer: XEN_VCPU_ATTR.TIMER,
  upcall_vector: XEN_VCPU_ATTR.UPCALL_VECTOR,
  vcpu_info_hva: XEN_VCPU_ATTR.VCPU_INFO_HVA,
};

const RUNSTATE_FIELDS = ['state', 'stateEntryTime', 'timeRunning', 'timeRunnable', 'timeBlocked', 'timeOffline'] as const;

export function encodeXenVcpuAttr(a: XenVcpuAttr): Buffer {
  const type = VCPU_ATTR_NUM[a?.type as XenVcpuAttrType];
  if (type === undefined) throw new TypeError(`unknown Xen vCPU attribute type ${String(a?.type)}`);
  const b = Buffer.alloc(STRUCT_SIZES.kvm_xen_vcpu_attr);
  b.writeUInt16LE(type, 0);
  switch (a.type) {
    case 'vcpu_info':
    case 'vcpu_time_info':
    case 'runstate_addr':
      b.writeBigUInt64LE(checkU64(a.gpa, `${a.type}.gpa`), 8);
      break;
    case 'vcpu_info_hva':
      b.writeBigUInt64LE(checkU64(a.hva, 'vcpu_info_hva.hva'), 8);
      break;
    case 'runstate_current':
      // Any u64 (or a negative two's complement): KVM itself rejects a state
      // above RUNSTATE_offline with -EINVAL (kvm_xen_vcpu_set_attr), and that
      // check is what conformance cases exercise.
      b.writeBigUInt64LE(checkU64OrNeg(a.state, 'runstate_current.state'), 8);
      break;
    case 'runstate_data':
    case 'runstate_adjust':
      RUNSTATE_FIELDS.forEach((f, i) => {
        // ADJUST deltas, "state unchanged" (-1), and DATA times whose u64 sum
        // wraps are two's complement; KVM validates the values itself.
        const v = checkU64OrNeg(a[f], `${a.type}.${f}`);
        b.writeBigUInt64LE(v, 8 + 8 * i);
      });
      break;
    case 'vcpu_id':
      b.writeUInt32LE(checkU32(a.vcpuId, 'vcpu_id.vcpuId'), 8);
      break;
    case 'timer':
      b.writeUInt32LE(checkU32(a.port, 'timer.port'), 8);
      b.writeUInt32LE(checkU32(a.priority ?? XEN_EVTCHN_PRIO_2LEVEL, 'timer.priority'), 12);
      b.writeBigUInt64LE(checkU64(a.expiresNs, 'timer.expiresNs'), 16);
      break;
    case 'upcall_vector':
      b.writeUInt8(checkVector(a.vector, 'upcall_vector.vector'), 8);
      break;
  }
  return b;
}

export function decodeXenVcpuAttr(b: Buffer): XenVcpuAttr {
  const type = b.readUInt16LE(0);
  const u64 = (i: number) => b.readBigUInt64LE(8 + 8 * i);
  switch (type) {
    case XEN_VCPU_ATTR.VCPU_INFO:
      return { type: 'vcpu_info', gpa: u64(0) };
    case XEN_VCPU_ATTR.VCPU_TIME_INFO:
      return { type: 'vcpu_time_info', gpa: u64(0) };
    case XEN_VCPU_ATTR.RUNSTATE_ADDR:
      return { type: 'runstate_addr', gpa: u64(0) };
    case XEN_VCPU_ATTR.VCPU_INFO_HVA:
      return { type: 'vcpu_info_hva', hva: u64(0) };
    case XEN_VCPU_ATTR.RUNSTATE_CURRENT:
      return { type: 'runstate_current', state: Number(u64(0)) };
    case XEN_VCPU_ATTR.RUNSTATE_DATA:
    case XEN_VCPU_ATTR.RUNSTATE_ADJUST:
      return {
        type: type === XEN_VCPU_ATTR.RUNSTATE_DATA ? 'runstate_data' : 'runstate_adjust',
        state: u64(0),
        stateEntryTime: u64(1),
        timeRunning: u64(2),
        timeRunnable: u64(3),
        timeBlocked: u64(4),
        timeOffline: u64(5),
      };
    case XEN_VCPU_ATTR.VCPU_ID:
      return { type: 'vcpu_id', vcpuId: b.readUInt32LE(8) };
    case XEN_VCPU_ATTR.TIMER:
      return { type: 'timer', port: b.readUInt32LE(8), priority: b.readUInt32LE(12), expiresNs: b.readBigUInt64LE(16) };
    case XEN_VCPU_ATTR.UPCALL_VECTOR:
      return { type: 'upcall_vector', vector: b.readUInt8(8) };
    default:
      throw new RangeError(`unknown Xen vCPU attribute type ${type}`);
  }
}

export type GsiRoute =
  | { gsi: number; type: 'xen_evtchn'; port: number; vcpu: number; priority?: number }
  | { gsi: number; type: 'irqchip'; irqchip: number; pin: number }
  | { gsi: number; type: 'msi'; addressLo: number; addressHi: number; data: number; flags?: number; devid?: number };

export function encodeGsiRouting(routes: readonly GsiRoute[]): Buffer {
  if (!Array.isArray(routes) || routes.length > 4096) argErr('GSI routing takes an array of at most 4096 entries');
  const b = Buffer.alloc(routes.length * STRUCT_SIZES.kvm_irq_routing_entry);
  routes.forEach((r, i) => {
    const o = i * STRUCT_SIZES.kvm_irq_routing_entry;
    const w = `routes[${i}]`;
    b.writeUInt32LE(checkU32(r.gsi, `${w}.gsi`, 4095), o);
    switch (r.type) {
      case 'xen_evtchn':
        b.writeUInt32LE(IRQ_ROUTING.XEN_EVTCHN, o + 4);
        b.writeUInt32LE(checkU32(r.port, `${w}.port`), o + 16);
        b.writeUInt32LE(checkU32(r.vcpu, `${w}.vcpu`), o + 20);
        b.writeUInt32LE(checkU32(r.priority ?? XEN_EVTCHN_PRIO_2LEVEL, `${w}.priority`), o + 24);
        break;
      case 'irqchip':
        b.writeUInt32LE(IRQ_ROUTING.IRQCHIP, o + 4);
        b.writeUInt32LE(checkU32(r.irqchip, `${w}.irqchip`, 2), o + 16);
        b.writeUInt32LE(checkU32(r.pin, `${w}.pin`, 23), o + 20);
        break;
      case 'msi':
        b.writeUInt32LE(IRQ_ROUTING.MSI, o + 4);
        b.writeUInt32LE(checkU32(r.flags ?? 0, `${w}.flags`), o + 8);
        b.writeUInt32LE(checkU32(r.addressLo, `${w}.addressLo`), o + 16);
        b.writeUInt32LE(checkU32(r.addressHi, `${w}.addressHi`), o + 20);
        b.writeUInt32LE(checkU32(r.data, `${w}.data`), o + 24);
        b.writeUInt32LE(checkU32(r.devid ?? 0, `${w}.devid`), o + 28);
        break;
      default:
        throw new TypeError(`${w}.type must be 'xen_evtchn', 'irqchip' or 'msi'`);
    }
  });
  return b;
}

// --------------------------------------------------------------- classes --

/** /dev/kvm. */
export class KvmSystem implements Disposable {
  constructor(
    private readonly native: NativeSystem,
    private readonly addon: NativeAddon,
  ) {}

  get closed(): boolean {
    return this.native.closed;
  }
  apiVersion(): number {
    return sys(() => this.native.apiVersion());
  }
  checkExtension(cap: number): number {
    checkU32(cap, 'cap', 0x7fffffff);
    return sys(() => this.native.checkExtension(cap));
  }
  /** KVM_CAP_XEN_HVM flags (0: no Xen support). */
  xenHvmCaps(): number {
    return this.checkExtension(KVM_CAP.XEN_HVM);
  }
  vcpuMmapSize(): number {
    return sys(() => this.native.vcpuMmapSize());
  }
  supportedCpuid(): CpuidEntry[] {
    return decodeCpuid(sys(() => this.native.supportedCpuid()));
  }
  createVm(type = 0): KvmVm {
    checkU32(type, 'vm type', 0xff);
    return new KvmVm(sys(() => this.native.createVm(type)));
  }
  createEventfd(initval = 0): KvmEventfd {
    checkU32(initval, 'initval');
    return new KvmEventfd(sys(() => new this.addon.Eventfd(initval)));
  }
  close(): void {
    this.native.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

export interface MemorySlot {
  slot: number;
  gpa: number;
  size: number;
  hva: bigint;
}

export class KvmVm implements Disposable {
  private readonly slots = new Map<number, MemorySlot>();
  private readonly vcpuList: KvmVcpu[] = [];

  constructor(private readonly native: NativeVm) {}

  get closed(): boolean {
    return this.native.closed;
  }
  get fd(): number {
    return this.native.fd;
  }
  get memorySlots(): readonly MemorySlot[] {
    return [...this.slots.values()];
  }
  get vcpus(): readonly KvmVcpu[] {
    return this.vcpuList;
  }

  checkExtension(cap: number): number {
    checkU32(cap, 'cap', 0x7fffffff);
    return sys(() => this.native.checkExtension(cap));
  }
  enableCap(cap: number, args: readonly U64Like[] = [], flags = 0): void {
    checkU32(cap, 'cap');
    checkU32(flags, 'flags');
    if (args.length > 4) argErr('enableCap takes at most four args');
    const b = Buffer.alloc(32);
    args.forEach((a, i) => b.writeBigUInt64LE(checkU64(a, `args[${i}]`), 8 * i));
    sys(() => this.native.enableCap(cap, flags, b));
  }
  setTssAddr(addr: number): void {
    checkU32(addr, 'tss addr');
    sys(() => this.native.setTssAddr(addr));
  }
  createIrqchip(): void {
    sys(() => this.native.createIrqchip());
  }

  /** Map `size` bytes of anonymous memory at `gpa` in `slot`. */
  addMemory(slot: number, gpa: number, size: number, flags = 0): MemorySlot {
    checkU32(slot, 'slot', 0x7fff);
    checkGpaLen(gpa, 0, 'addMemory');
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0 || size > 2 ** 40) argErr(`addMemory: size must be 1..2^40 bytes, got ${size}`);
    if (gpa % PAGE !== 0 || size % PAGE !== 0) argErr('addMemory: gpa and size must be multiples of 4096');
    checkU32(flags, 'flags', 0xff);
    if (this.slots.has(slot)) argErr(`addMemory: slot ${slot} is in use`);
    for (const s of this.slots.values()) {
      if (gpa < s.gpa + s.size && s.gpa < gpa + size) argErr(`addMemory: [0x${gpa.toString(16)}, +0x${size.toString(16)}) overlaps slot ${s.slot}`);
    }
    const hva = sys(() => this.native.setMemory(slot, gpa, size, flags));
    const m = { slot, gpa, size, hva };
    this.slots.set(slot, m);
    return m;
  }
  removeMemory(slot: number): void {
    checkU32(slot, 'slot', 0x7fff);
    if (!this.slots.has(slot)) argErr(`removeMemory: no slot ${slot}`);
    sys(() => this.native.removeMemory(slot));
    this.slots.delete(slot);
  }

  private checkRange(gpa: number, len: number, what: string): void {
    checkGpaLen(gpa, len, what);
    for (const s of this.slots.values()) if (gpa >= s.gpa && gpa + len <= s.gpa + s.size) return;
    argErr(`${what}: [0x${gpa.toString(16)}, +${len}) is not inside one memory slot`);
  }
  /** A copy of guest memory. */
  read(gpa: number, len: number): Buffer {
    this.checkRange(gpa, len, 'read');
    return sys(() => this.native.read(gpa, len));
  }
  write(gpa: number, data: Uint8Array): void {
    checkBytes(data, 'data');
    this.checkRange(gpa, data.length, 'write');
    sys(() => this.native.write(gpa, data));
  }
  readU32(gpa: number): number {
    return this.read(gpa, 4).readUInt32LE(0);
  }
  readU64(gpa: number): bigint {
    return this.read(gpa, 8).readBigUInt64LE(0);
  }
  writeU32(gpa: number, v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(checkU32(v, 'value'));
    this.write(gpa, b);
  }
  writeU64(gpa: number, v: U64Like): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(checkU64(v, 'value'));
    this.write(gpa, b);
  }
  /** The host virtual address backing `gpa` (for the *_HVA Xen attributes). */
  hva(gpa: number): bigint {
    this.checkRange(gpa, 1, 'hva');
    return sys(() => this.native.hva(gpa));
  }

  xenHvmConfig(c: XenHvmConfig): void {
    const b = encodeXenHvmConfig(c);
    sys(() => this.native.xenHvmConfig(b));
  }
  xenGetAttr(type: XenHvmAttrType): XenHvmAttr {
    const num = HVM_ATTR_NUM[type];
    if (num === undefined) throw new TypeError(`unknown Xen VM attribute type ${String(type)}`);
    const b = Buffer.alloc(STRUCT_SIZES.kvm_xen_hvm_attr);
    b.writeUInt16LE(num, 0);
    return decodeXenHvmAttr(sys(() => this.native.xenGetAttr(b)));
  }
  xenSetAttr(a: XenHvmAttr): void {
    const b = encodeXenHvmAttr(a);
    sys(() => this.native.xenSetAttr(b));
  }
  /** KVM_XEN_HVM_EVTCHN_SEND: deliver a 2-level event to `vcpu` (Xen vCPU id). */
  xenEvtchnSend(port: number, vcpu: number, priority = XEN_EVTCHN_PRIO_2LEVEL): void {
    checkU32(port, 'port');
    checkU32(vcpu, 'vcpu');
    checkU32(priority, 'priority');
    sys(() => this.native.xenEvtchnSend(port, vcpu, priority));
  }
  setGsiRouting(routes: readonly GsiRoute[]): void {
    const b = encodeGsiRouting(routes);
    sys(() => this.native.setGsiRouting(b));
  }
  /** Attach (or with deassign, detach) an eventfd to a GSI. */
  irqfd(eventfd: KvmEventfd, gsi: number, opts: { deassign?: boolean; resample?: KvmEventfd } = {}): void {
    if (!(eventfd instanceof KvmEventfd)) throw new TypeError('irqfd needs a KvmEventfd');
    checkU32(gsi, 'gsi', 4095);
    const flags = (opts.deassign ? IRQFD_FLAG.DEASSIGN : 0) | (opts.resample ? IRQFD_FLAG.RESAMPLE : 0);
    const fd = eventfd.fd;
    const rfd = opts.resample ? opts.resample.fd : 0;
    sys(() => this.native.irqfd(fd, gsi, flags, rfd));
  }
  createVcpu(id: number): KvmVcpu {
    checkU32(id, 'vcpu id', 4095);
    const v = new KvmVcpu(sys(() => this.native.createVcpu(id)));
    this.vcpuList.push(v);
    return v;
  }
  /** Closes the VM's vCPUs, unmaps its memory and closes it. */
  close(): void {
    sys(() => this.native.close());
    this.slots.clear();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

export interface XenHypercallExit {
  type: number;
  longmode: number;
  cpl: number;
  input: bigint;
  params: bigint[];
}

/** Why run() returned. */
export type RunExit =
  | { kind: 'done'; generation: number; runs: number; logs: number[] }
  | { kind: 'yield'; tag: number; runs: number; logs: number[] }
  | { kind: 'guest-fault'; vector: number; runs: number; logs: number[] }
  | { kind: 'timeout'; runs: number; logs: number[] }
  | { kind: 'xen'; xen: XenHypercallExit; runs: number; logs: number[] }
  | { kind: 'exit'; reason: number; reasonName: string; detail: NativeExit; runs: number; logs: number[] };

export interface RunOptions {
  /** Stop the guest after this long (ms); 0 = never. Default 10 s. */
  timeoutMs?: number;
  /** Guest port protocol base (GUEST_LAYOUT.portBase); 0 = every I/O exit returns. */
  portBase?: number;
}

function toRunExit(o: NativeRunOutcome): RunExit {
  const common = { runs: o.runs, logs: o.logs };
  switch (o.kind) {
    case 'done':
      return { kind: 'done', generation: o.value, ...common };
    case 'yield':
      return { kind: 'yield', tag: o.value, ...common };
    case 'fault':
      return { kind: 'guest-fault', vector: o.value, ...common };
    case 'timeout':
      return { kind: 'timeout', ...common };
    default: {
      const d = o.exit ?? { reason: KVM_EXIT.UNKNOWN };
      if (d.reason === KVM_EXIT.XEN && d.xen) {
        const { type, longmode, cpl, input, params } = d.xen;
        return { kind: 'xen', xen: { type, longmode, cpl, input, params }, ...common };
      }
      return { kind: 'exit', reason: d.reason, reasonName: exitReasonName(d.reason), detail: d, ...common };
    }
  }
}

const DEFAULT_TIMEOUT_MS = 10_000;

function runArgs(opts: RunOptions): [number, number] {
  const timeout = checkU32(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs', 86_400_000);
  const port = checkU32(opts.portBase ?? 0, 'portBase', 0xfffc);
  return [timeout, port];
}

export class KvmVcpu implements Disposable {
  constructor(private readonly native: NativeVcpu) {}

  get id(): number {
    return this.native.id;
  }
  get closed(): boolean {
    return this.native.closed;
  }
  get busy(): boolean {
    return this.native.busy;
  }
  getRegs(): Regs {
    return decodeRegs(sys(() => this.native.getRegs()));
  }
  setRegs(r: Regs): void {
    const b = encodeRegs(r);
    sys(() => this.native.setRegs(b));
  }
  getSregs(): Sregs {
    return decodeSregs(sys(() => this.native.getSregs()));
  }
  setSregs(s: Sregs): void {
    const b = encodeSregs(s);
    sys(() => this.native.setSregs(b));
  }
  setCpuid(entries: readonly CpuidEntry[]): void {
    const b = encodeCpuid(entries);
    sys(() => this.native.setCpuid(b));
  }
  getMpState(): number {
    return sys(() => this.native.getMpState());
  }
  setMpState(state: number): void {
    checkU32(state, 'mp state', 8);
    sys(() => this.native.setMpState(state));
  }
  xenGetAttr(type: XenVcpuAttrType): XenVcpuAttr {
    const num = VCPU_ATTR_NUM[type];
    if (num === undefined) throw new TypeError(`unknown Xen vCPU attribute type ${String(type)}`);
    const b = Buffer.alloc(STRUCT_SIZES.kvm_xen_vcpu_attr);
    b.writeUInt16LE(num, 0);
    return decodeXenVcpuAttr(sys(() => this.native.xenGetAttr(b)));
  }
  xenSetAttr(a: XenVcpuAttr): void {
    const b = encodeXenVcpuAttr(a);
    sys(() => this.native.xenSetAttr(b));
  }
  /** Run on this thread until the guest needs JavaScript (blocks the event loop). */
  run(opts: RunOptions = {}): RunExit {
    const [t, p] = runArgs(opts);
    return toRunExit(sys(() => this.native.run(t, p)));
  }
  /** The same on a libuv pool thread (UV_THREADPOOL_SIZE bounds how many run at once). */
  async runAsync(opts: RunOptions = {}): Promise<RunExit> {
    const [t, p] = runArgs(opts);
    return toRunExit(await sysAsync(() => this.native.runAsync(t, p)));
  }
  /** One KVM_RUN without timer or port protocol; returns the exit reason. */
  runOnce(): number {
    return sys(() => this.native.runOnce());
  }
  /** The decoded kvm_run exit data of the last exit. */
  exitInfo(): NativeExit {
    return sys(() => this.native.exitInfo());
  }
  /** Answer the pending KVM_EXIT_XEN hypercall (negative = -errno). */
  setXenResult(result: U64Like): void {
    const v = checkU64OrNeg(result, 'result');
    sys(() => this.native.setXenResult(v));
  }
  close(): void {
    sys(() => this.native.close());
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

export class KvmEventfd implements Disposable {
  constructor(private readonly native: NativeEventfd) {}
  get fd(): number {
    return this.native.fd;
  }
  get closed(): boolean {
    return this.native.closed;
  }
  signal(value: U64Like = 1): void {
    const v = checkU64(value, 'value');
    if (v === 0n || v === U64_MAX) argErr('eventfd value must be 1..2^64-2');
    sys(() => this.native.signal(v));
  }
  /** The counter (and reset it), or null if it is zero. */
  read(): bigint | null {
    return sys(() => this.native.read());
  }
  close(): void {
    this.native.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

// ------------------------------------------------------------ Xen CPUID --

export interface XenCpuidOptions {
  /** XENVER_version value for leaf 1 (major << 16 | minor). Default 4.17. */
  version?: number;
  /** Hypercall MSR index reported in leaf 2. */
  msr?: number;
  /** Xen vCPU id reported in leaf 4 EBX. */
  vcpuId?: number;
}

/** Xen's CPUID leaves at 0x40000000..0x40000004 ("XenVMMXenVMM"). */
export function xenCpuidLeaves(o: XenCpuidOptions = {}): CpuidEntry[] {
  const base = 0x40000000;
  const e = (fn: number, eax: number, ebx = 0, ecx = 0, edx = 0, index = 0, flags = 0): CpuidEntry => ({
    function: fn, index, flags, eax, ebx, ecx, edx,
  });
  const HVM_VCPU_ID_PRESENT = 1 << 3;
  const HVM_UPCALL_VECTOR = 1 << 6;
  return [
    e(base, base + 4, 0x566e6558, 0x65584d4d, 0x4d4d566e),
    e(base + 1, checkU32(o.version ?? 0x00040011, 'xen version')),
    e(base + 2, 1, checkU32(o.msr ?? XEN_HYPERCALL_MSR, 'msr')),
    e(base + 3, 0, 0, 0, 0, 0, CPUID_FLAG_SIGNIFICANT_INDEX),
    e(base + 3, 0, 0, 0, 0, 1, CPUID_FLAG_SIGNIFICANT_INDEX),
    e(base + 3, 0, 0, 0, 0, 2, CPUID_FLAG_SIGNIFICANT_INDEX),
    e(base + 4, HVM_VCPU_ID_PRESENT | HVM_UPCALL_VECTOR, checkU32(o.vcpuId ?? 0, 'vcpuId')),
  ];
}

/**
 * The CPUID table for one vCPU: KVM's supported leaves with the APIC id set,
 * and with `xen` the Xen leaves at 0x40000000 (KVM's own moved to 0x40000100).
 */
export function vcpuCpuid(supported: readonly CpuidEntry[], apicId: number, xen?: XenCpuidOptions): CpuidEntry[] {
  checkU32(apicId, 'apicId', 0xff);
  const out: CpuidEntry[] = [];
  for (const s of supported) {
    const e = { ...s };
    if (e.function === 1) e.ebx = ((e.ebx & 0x00ffffff) | (apicId << 24)) >>> 0;
    if (e.function === 0xb || e.function === 0x1f) e.edx = apicId;
    if (xen && e.function >= 0x40000000 && e.function < 0x40000100) {
      e.function += 0x100;
      if (e.function === 0x40000100 && e.eax >= 0x40000000 && e.eax < 0x40000100) e.eax += 0x100;
    }
    out.push(e);
  }
  if (xen) out.push(...xenCpuidLeaves(xen));
  return out;
}

// ------------------------------------------------------- the test guest --

export interface XenSetup {
  /** kvm_xen_hvm_config.flags (default INTERCEPT_HCALL). */
  flags?: number;
  /** Hypercall MSR index (default 0x40000000). */
  msr?: number;
  /** Add the Xen CPUID leaves (default true). */
  cpuid?: boolean;
  version?: number;
}

export interface GuestVmOptions {
  vcpus?: number;
  /** Guest RAM at gpa 0 (default 8 MiB; at least 4 MiB, below 3 GiB). */
  memoryBytes?: number;
  mode?: GuestMode;
  /** Configure Xen HVM emulation (needs KVM_CAP_XEN_HVM). */
  xen?: XenSetup;
  /** In-kernel irqchip with LAPIC (default true). */
  irqchip?: boolean;
  /** Default per-run timeout (ms). */
  timeoutMs?: number;
  /** Device path (default /dev/kvm). */
  path?: string;
}

export interface XenCallContext {
  vcpu: number;
  /** Index of the command that made the call. */
  command: number;
  guest: GuestVm;
}

export interface BatchOptions {
  timeoutMs?: number;
  /** Serve a KVM_EXIT_XEN hypercall: return rax (-38 = -ENOSYS if absent). */
  onXen?: (exit: XenHypercallExit, ctx: XenCallContext) => U64Like | Promise<U64Like>;
  /** Called when the guest yields; the batch continues afterwards. */
  onYield?: (tag: number, ctx: { vcpu: number; command: number; guest: GuestVm }) => void | Promise<void>;
  /** Run on a pool thread (needed when several vCPUs must run at once). */
  concurrent?: boolean;
}

export interface BatchResult {
  /** 'done': every command ran; the others stop the batch early. */
  status: 'done' | 'timeout' | 'guest-fault' | 'exit';
  vcpu: number;
  generation: number;
  results: CommandResult[];
  logs: number[];
  /** KVM_EXIT_XEN hypercalls the VMM layer served during the batch. */
  xenExits: Array<XenHypercallExit & { command: number; result: bigint }>;
  /** Native crossings (run calls) and KVM_RUN calls made. */
  crossings: number;
  kvmRuns: number;
  fault?: BlockHeader['lastFault'];
  exit?: { reason: number; reasonName: string; detail: NativeExit };
  upcallCount: number;
}

const XEN_ENOSYS = -38n;

/**
 * A VM running the xconf test guest on every vCPU. Build with
 * `GuestVm.create()`; run command queues with run()/runAll(); close() it.
 */
export class GuestVm implements Disposable {
  private generation: number[] = [];
  private stale: boolean[] = [];
  private constructor(
    readonly system: KvmSystem,
    readonly vm: KvmVm,
    readonly vcpus: KvmVcpu[],
    readonly mode: GuestMode,
    readonly image: GuestImage,
    readonly options: Required<Pick<GuestVmOptions, 'irqchip' | 'timeoutMs' | 'memoryBytes'>> & { xen?: XenSetup },
    private readonly initialSregs: Sregs[],
  ) {
    this.generation = vcpus.map(() => 0);
    this.stale = vcpus.map(() => false);
  }

  /** Create the VM. Environment problems throw DriverError with a reason. */
  static create(opts: GuestVmOptions = {}): GuestVm {
    const mode = opts.mode ?? 64;
    checkMode(mode);
    const n = opts.vcpus ?? 1;
    checkU32(n, 'vcpus', GUEST_LAYOUT.maxVcpus);
    if (n < 1) argErr('vcpus must be at least 1');
    const memoryBytes = opts.memoryBytes ?? 8 << 20;
    if (!Number.isSafeInteger(memoryBytes) || memoryBytes < 4 << 20 || memoryBytes > 3 * 2 ** 30 || memoryBytes % PAGE !== 0) {
      argErr('memoryBytes must be a multiple of 4096 in 4 MiB..3 GiB');
    }
    const irqchip = opts.irqchip ?? true;
    const timeoutMs = checkU32(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs', 86_400_000);
    const img = loadGuestImage(mode);
    if (!img.ok) throw new DriverError(img.reason, { code: 'ENOGUEST' });
    const opened = openKvm(opts.path);
    if (!opened.ok) throw new DriverError(opened.reason, { code: opened.code, errno: opened.errno, syscall: 'open' });
    const system = opened.kvm;
    let vm: KvmVm | undefined;
    try {
      vm = system.createVm();
      vm.setTssAddr(GUEST_LAYOUT.kvmTssAddr);
      if (irqchip) vm.createIrqchip();
      const xen = opts.xen;
      if (xen && system.xenHvmCaps() === 0) {
        throw new DriverError('KVM_CAP_XEN_HVM is 0: this kernel has no Xen HVM emulation (CONFIG_KVM_XEN), so a Xen guest cannot be set up', {
          code: 'ENOTSUP',
          syscall: 'ioctl(KVM_CHECK_EXTENSION)',
        });
      }
      if (xen) {
        vm.xenHvmConfig({ flags: xen.flags ?? XEN_HVM_FLAG.INTERCEPT_HCALL, msr: xen.msr ?? XEN_HYPERCALL_MSR });
      }
      vm.addMemory(0, 0, memoryBytes);
      if (mode === 64) vm.write(GUEST_LAYOUT.pml4, buildPageTables());
      vm.write(GUEST_LAYOUT.idt, buildIdt(img.image));
      vm.write(GUEST_LAYOUT.imageBase, img.image.bytes);
      // Until a hypercall page is written, calling it hits int3 (#BP), as in
      // Xen's page before its stubs are filled in.
      vm.write(GUEST_LAYOUT.hypercallPage, Buffer.alloc(PAGE, 0xcc));
      const supported = system.supportedCpuid();
      const vcpus: KvmVcpu[] = [];
      const sregsList: Sregs[] = [];
      for (let i = 0; i < n; i++) {
        const block = blockAddress(i);
        vm.write(block, encodeBlockHeader({ vcpu: i, mode, lapic: irqchip }));
        vm.write(block + GUEST_LAYOUT.gdt, buildGdt(block));
        vm.write(block + GUEST_LAYOUT.tss, buildTss(block, mode));
        const v = vm.createVcpu(i);
        vcpus.push(v);
        const xenCpuid = xen && xen.cpuid !== false ? { version: xen.version, msr: xen.msr ?? XEN_HYPERCALL_MSR, vcpuId: i } : undefined;
        v.setCpuid(vcpuCpuid(supported, i, xenCpuid));
        const s = guestSregs(v.getSregs(), mode, i);
        v.setSregs(s);
        sregsList.push(s);
        v.setRegs(guestRegs(img.image, i));
        if (irqchip && i > 0) v.setMpState(MP_STATE.RUNNABLE);
      }
      return new GuestVm(system, vm, vcpus, mode, img.image, { irqchip, timeoutMs, memoryBytes, xen }, sregsList);
    } catch (e) {
      vm?.close();
      system.close();
      throw e;
    }
  }

  private blockBuf(i: number, off: number, len: number): Buffer {
    return this.vm.read(blockAddress(i) + off, len);
  }

  header(vcpu: number): BlockHeader {
    this.checkVcpu(vcpu);
    return decodeBlockHeader(this.blockBuf(vcpu, 0, HDR.size));
  }

  /** Upcalls recorded by vCPU `vcpu`'s handler (the last 64), oldest first. */
  upcalls(vcpu: number): UpcallRecord[] {
    const h = this.header(vcpu);
    const ring = this.blockBuf(vcpu, GUEST_LAYOUT.upcallRing, GUEST_LAYOUT.upcallRingEntries * GUEST_LAYOUT.upcallRecordSize);
    return decodeUpcallRing(ring, h.upcallCount);
  }

  /** Set the vcpu_info the upcall handler snapshots, and what it then does. */
  setUpcallWatch(vcpu: number, watchGpa: number, flags?: number): void {
    this.checkVcpu(vcpu);
    const b = Buffer.alloc(12);
    b.writeUInt32LE(checkU32(flags ?? 5, 'flags', 7), 0);
    b.writeBigUInt64LE(BigInt(checkU32(watchGpa, 'watch gpa')), 4);
    const base = blockAddress(vcpu);
    this.vm.write(base + HDR.upcallFlags, b.subarray(0, 4));
    this.vm.write(base + HDR.upcallWatch, b.subarray(4, 12));
  }

  /** Where the guest calls the hypercall page (default GUEST_LAYOUT.hypercallPage). */
  setHypercallPage(vcpu: number, gpa: number): void {
    this.checkVcpu(vcpu);
    if (!Number.isInteger(gpa) || gpa <= 0 || gpa % PAGE !== 0 || gpa + PAGE > this.options.memoryBytes) {
      argErr(`hypercall page 0x${gpa.toString(16)} must be a page inside guest RAM`);
    }
    this.vm.writeU64(blockAddress(vcpu) + HDR.hcallPage, gpa);
  }

  private checkVcpu(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.vcpus.length) argErr(`vCPU ${i} does not exist (this VM has ${this.vcpus.length})`);
  }

  /** Put vCPU `vcpu` back at the guest's entry (after a timeout or exit left a batch unfinished). */
  resetVcpu(vcpu: number): void {
    this.checkVcpu(vcpu);
    const v = this.vcpus[vcpu];
    v.setSregs(this.initialSregs[vcpu]);
    v.setRegs(guestRegs(this.image, vcpu));
    // A vCPU stopped in HLT is still halted in the in-kernel LAPIC's view.
    if (this.options.irqchip) v.setMpState(MP_STATE.RUNNABLE);
    this.stale[vcpu] = false;
  }

  /** Run one batch of commands on one vCPU and decode the results. */
  async run(vcpu: number, commands: readonly GuestCommand[], opts: BatchOptions = {}): Promise<BatchResult> {
    this.checkVcpu(vcpu);
    if (this.stale[vcpu]) {
      throw new DriverError(`vCPU ${vcpu} stopped in the middle of a batch; call resetVcpu(${vcpu}) first`, { code: 'ESTALE' });
    }
    const records = encodeCommands(commands, this.mode);
    const timeoutMs = checkU32(opts.timeoutMs ?? this.options.timeoutMs, 'timeoutMs', 86_400_000);
    const base = blockAddress(vcpu);
    const gen = (this.generation[vcpu] = (this.generation[vcpu] + 1) & 0xffffff || 1);
    this.vm.write(base + GUEST_LAYOUT.cmds, records);
    this.vm.write(base + GUEST_LAYOUT.results, Buffer.alloc(commands.length * GUEST_LAYOUT.resultSize));
    const hdr = Buffer.alloc(8);
    hdr.writeUInt32LE(commands.length, 0);
    hdr.writeUInt32LE(gen, 4);
    this.vm.write(base + HDR.count, hdr);

    const v = this.vcpus[vcpu];
    const runOpts = { timeoutMs, portBase: GUEST_LAYOUT.portBase };
    const logs: number[] = [];
    const xenExits: BatchResult['xenExits'] = [];
    const vmmServed = new Set<number>();
    let crossings = 0;
    let kvmRuns = 0;
    let status: BatchResult['status'];
    let exitInfo: BatchResult['exit'];
    for (;;) {
      const r = opts.concurrent ? await v.runAsync(runOpts) : v.run(runOpts);
      crossings++;
      kvmRuns += r.runs;
      logs.push(...r.logs);
      if (r.kind === 'done') {
        status = 'done';
        break;
      }
      if (r.kind === 'yield') {
        if (opts.onYield) await opts.onYield(r.tag, { vcpu, command: this.vm.readU32(base + HDR.cur), guest: this });
        continue;
      }
      if (r.kind === 'xen') {
        const command = this.vm.readU32(base + HDR.cur);
        vmmServed.add(command);
        const answer = opts.onXen ? await opts.onXen(r.xen, { vcpu, command, guest: this }) : XEN_ENOSYS;
        const result = checkU64OrNeg(answer, 'onXen result');
        xenExits.push({ ...r.xen, command, result });
        v.setXenResult(result);
        continue;
      }
      if (r.kind === 'guest-fault') {
        status = 'guest-fault';
        break;
      }
      if (r.kind === 'timeout') {
        status = 'timeout';
        this.stale[vcpu] = true;
        break;
      }
      status = 'exit';
      exitInfo = { reason: r.reason, reasonName: r.reasonName, detail: r.detail };
      this.stale[vcpu] = true;
      break;
    }
    const h = this.header(vcpu);
    const results = decodeResults(
      this.vm.read(base + GUEST_LAYOUT.results, commands.length * GUEST_LAYOUT.resultSize),
      commands,
      this.mode,
      gen,
    );
    for (const res of results) {
      if ((res.op === 'hypercall' || res.op === 'vmcall' || res.op === 'vmmcall') && res.status !== 'not-run') {
        res.servedBy = vmmServed.has(res.index) ? 'vmm' : 'kernel';
      }
    }
    const out: BatchResult = {
      status,
      vcpu,
      generation: gen,
      results,
      logs,
      xenExits,
      crossings,
      kvmRuns,
      upcallCount: h.upcallCount,
    };
    if (status === 'guest-fault' || h.state === GUEST_STATE.fatal) out.fault = h.lastFault;
    if (exitInfo) out.exit = exitInfo;
    return out;
  }

  /** Run one queue per vCPU at the same time (each on a pool thread). */
  async runAll(queues: ReadonlyArray<readonly GuestCommand[]>, opts: BatchOptions = {}): Promise<BatchResult[]> {
    if (queues.length > this.vcpus.length) argErr(`${queues.length} queues for ${this.vcpus.length} vCPUs`);
    const pool = Number(process.env.UV_THREADPOOL_SIZE ?? 4) || 4;
    if (queues.length > pool) {
      argErr(`runAll of ${queues.length} vCPUs needs UV_THREADPOOL_SIZE >= ${queues.length} (it is ${pool})`);
    }
    return Promise.all(queues.map((q, i) => this.run(i, q, { ...opts, concurrent: true })));
  }

  close(): void {
    try {
      if (!this.vm.closed) this.vm.close();
    } finally {
      this.system.close();
    }
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Create a guest VM, run one queue on vCPU 0, close it, and return the results. */
export async function runGuestQueue(
  commands: readonly GuestCommand[],
  opts: GuestVmOptions & BatchOptions = {},
): Promise<BatchResult> {
  using g = GuestVm.create(opts);
  return await g.run(0, commands, opts);
}

export type { GuestCommand, CommandResult, GuestMode } from './guest.js';
