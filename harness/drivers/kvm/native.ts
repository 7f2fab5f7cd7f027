// The native addon: KVM constants, the addon's interface, loading it, opening /dev/kvm,
// probing what it offers, and the argument checks every call makes first.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { sep } from 'node:path';
import { DriverError } from '../../errors.js';
import { packagePath } from '../../paths.js';

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

export const STRUCT_SIZES = {
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
  /** Fills dst from guest memory (no allocation in the addon). */
  readInto(gpa: number, dst: Uint8Array): void;
  hva(gpa: number): bigint;
  xenHvmConfig(b: Uint8Array): void;
  xenGetAttr(b: Uint8Array): Buffer;
  xenSetAttr(b: Uint8Array): void;
  xenEvtchnSend(port: number, vcpu: number, priority: number): void;
  setGsiRouting(b: Uint8Array): void;
  irqfd(fd: number, gsi: number, flags: number, resamplefd: number): void;
  createVcpu(id: number): NativeVcpu;
  close(): void;
  /** close() for JavaScript now; the unmaps and closes (the kernel's teardown) on a thread of their own. */
  closeInBackground(): void;
}

export interface NativeSystem {
  readonly fd: number;
  readonly closed: boolean;
  apiVersion(): number;
  checkExtension(cap: number): number;
  vcpuMmapSize(): number;
  supportedCpuid(): Buffer;
  createVm(type: number): NativeVm;
  /** With a setup: KVM_SET_TSS_ADDR (tssAddr > 0), KVM_CREATE_IRQCHIP, slot 0 at gpa 0 (memSize > 0) with its first `prefault` bytes touched. */
  createVmAsync(type: number, tssAddr?: number, irqchip?: boolean, memSize?: number, prefault?: number): Promise<NativeVm>;
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
  /** KCOV (trace-pc) for this thread and every addon thread that later enters KVM; words per thread. */
  kcovStart(words: number): void;
  /** What the threads recorded since the last call, folded into the process-wide PC and edge sets. */
  kcovCollect(): {
    newPcs: number; newEdges: number; pcs: number; edges: number; records: number; overflows: number; threads: number; failedThreads: number;
  };
}

// --------------------------------------------------------------- loading --

export type Unavailable = { ok: false; reason: string; code: string; errno?: number };

export const nativeDir = process.env.XCONF_NATIVE_BUILD_DIR ?? packagePath('native', 'build') + sep;
export const NATIVE_BUILD_DIR = nativeDir;
export const NATIVE_ABI_VERSION = 2;

export let cached: { ok: true; addon: NativeAddon } | Unavailable | undefined;

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

export function isSysError(e: unknown): e is Error & { code: string; errno: number; syscall: string } {
  return e instanceof Error && typeof (e as { errno?: unknown }).errno === 'number' && typeof (e as { syscall?: unknown }).syscall === 'string';
}

/** Run a native call; turn its system errors into DriverError. */
export function sys<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (isSysError(e)) throw new DriverError(e.message, { code: e.code, errno: e.errno, syscall: e.syscall });
    throw e;
  }
}

export async function sysAsync<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (isSysError(e)) throw new DriverError(e.message, { code: e.code, errno: e.errno, syscall: e.syscall });
    throw e;
  }
}

export function describeOpenError(path: string, code: string, errno: number): string {
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

export function argErr(msg: string): never {
  throw new RangeError(msg);
}

export function checkU32(v: unknown, what: string, max = 0xffffffff): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    argErr(`${what} must be an integer in 0..${max}, got ${String(v)}`);
  }
  return v;
}

export const U64_MAX = (1n << 64n) - 1n;

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
export function checkU64OrNeg(v: unknown, what: string): bigint {
  if ((typeof v === 'bigint' && v < 0n) || (typeof v === 'number' && v < 0)) {
    const b = BigInt(v as number | bigint);
    if (b < -(1n << 63n)) argErr(`${what} is below -2^63`);
    return BigInt.asUintN(64, b);
  }
  return checkU64(v, what);
}

export const PAGE = 4096;

export function checkGpaLen(gpa: unknown, len: unknown, what: string): void {
  if (typeof gpa !== 'number' || !Number.isSafeInteger(gpa) || gpa < 0) argErr(`${what}: gpa must be a non-negative safe integer, got ${String(gpa)}`);
  if (typeof len !== 'number' || !Number.isSafeInteger(len) || len < 0 || len > 1 << 30) {
    argErr(`${what}: length must be an integer in 0..2^30, got ${String(len)}`);
  }
}

export function checkBytes(b: unknown, what: string): Uint8Array {
  if (!(b instanceof Uint8Array)) throw new TypeError(`${what} must be a Buffer or Uint8Array`);
  return b;
}

// -------------------------------------------------------- struct codecs --
