// The xconf test guest: its memory layout, command queue encoding and result
// decoding, and the CPU state the VMM gives it. This file is the one
// definition of the layout; native/guest/layout.inc mirrors it for the
// assembler and the guest image header repeats the key numbers, which
// parseGuestImage() checks, so a mismatch is reported instead of misread.
//
// Guest-physical map (identity mapped):
//   0x001000 IDT · 0x002000 PML4 · 0x003000 PDPT · 0x004000-0x007fff four PDs
//   0x010000 guest image · 0x020000 default hypercall page
//   0x030000 + i*0x10000 per-vCPU block i (i < 16) · 0x200000.. free for tests
//
// Per-vCPU block (64 KiB): header 0x0000, upcall ring 0x0100 (64 x 32 B),
// GDT 0x0900, TSS 0x0980, commands 0x1000 (128 x 64 B), results 0x3000
// (128 x 64 B), guest scratch 0x5000, harness scratch 0x6000-0x9fff,
// stacks 0xa000-0xffff.
//
// Command record (64 bytes): u32 op, u32 flags (bit 0: run at CPL 3),
// u64 a0..a6. Result record (64 bytes): u32 status = generation << 8 | code
// (1 ok, 2 faulted; 0 = not run), u32 fault vector, u64 ret, u64 aux[6].
import { readFileSync, existsSync } from 'node:fs';
import type { Regs, Sregs, Segment } from './addon.js';
import { packagePath } from '../../paths.js';

export type GuestMode = 64 | 32;

export const GUEST_MAGIC = 0x31474358; // "XCG1"
export const LAYOUT_VERSION = 1;
export const BLOCK_MAGIC = 0x42564358; // "XCVB"

export const GUEST_LAYOUT = {
  idt: 0x1000,
  pml4: 0x2000,
  pdpt: 0x3000,
  pageDirectories: 0x4000, // four, mapping 0..4 GiB with 2 MiB pages
  pageTablesEnd: 0x8000,
  imageBase: 0x10000,
  imageMaxSize: 0x10000,
  hypercallPage: 0x20000,
  blockBase: 0x30000,
  blockSize: 0x10000,
  maxVcpus: 16,
  freeBase: 0x200000,
  // inside a block
  upcallRing: 0x0100,
  upcallRingEntries: 64,
  upcallRecordSize: 32,
  gdt: 0x0900,
  tss: 0x0980,
  cmds: 0x1000,
  results: 0x3000,
  maxCmds: 128,
  cmdSize: 64,
  resultSize: 64,
  guestScratch: 0x5000,
  harnessScratch: 0x6000,
  harnessScratchEnd: 0xa000,
  ustackTop: 0xc000,
  trapStackTop: 0xe000,
  kstackTop: 0xfff0, // not 0x10000: rsp & ~0xffff must stay inside the block
  // guest I/O ports (32-bit OUT): base+0 done, +1 yield, +2 fault, +3 log
  portBase: 0x700,
  stubSize: 16,
  /** TSS address KVM_SET_TSS_ADDR gets (three pages, above guest RAM). */
  kvmTssAddr: 0xfffbd000,
} as const;

/** Byte offsets of the per-vCPU block header. */
export const HDR = {
  magic: 0x00,
  vcpu: 0x04,
  mode: 0x08,
  count: 0x0c,
  gen: 0x10,
  state: 0x14,
  cur: 0x18,
  doneGen: 0x1c,
  hcallPage: 0x20,
  flags: 0x28,
  upcallFlags: 0x2c,
  upcallWatch: 0x30,
  upcallCount: 0x38,
  upcallLast: 0x3c,
  curResult: 0x40,
  ksp: 0x48,
  resumeIp: 0x50,
  recover: 0x58,
  irqOn: 0x5c,
  faultVec: 0x60,
  faultCs: 0x64,
  faultErr: 0x68,
  faultRip: 0x70,
  faultCr2: 0x78,
  faults: 0x80,
  size: 0x100,
} as const;

export const HOST_FLAG = { LAPIC: 1, WAIT_GEN: 2 } as const;
/** What the upcall handler does after recording an upcall. */
export const UPCALL_FLAG = { CLEAR_PENDING: 1, CLEAR_SEL: 2, EOI: 4 } as const;
export const DEFAULT_UPCALL_FLAGS = UPCALL_FLAG.CLEAR_PENDING | UPCALL_FLAG.EOI;

export const OP = {
  end: 0,
  hypercall: 1,
  vmcall: 2,
  vmmcall: 3,
  wrmsr: 4,
  rdmsr: 5,
  read: 6,
  write: 7,
  readLoop: 8,
  waitUpcall: 9,
  hlt: 10,
  yield: 11,
  log: 12,
  setUpcall: 13,
  irq: 14,
  cpuid: 15,
} as const;
export const OP_MAX = 15;
export const CMD_FLAG = { CPL3: 1 } as const;
export const READLOOP_MODE = { copy: 0, runstate64: 1, runstate32: 2 } as const;
export const RESULT_CODE = { ok: 1, fault: 2 } as const;
export const GUEST_STATE = { running: 1, done: 2, fatal: 3 } as const;

export const SEL = {
  kcode64: 0x08,
  kdata: 0x10,
  kcode32: 0x18,
  ucode32: 0x20,
  udata: 0x28,
  ucode64: 0x30,
  tss: 0x38,
} as const;

export function blockAddress(vcpuIndex: number): number {
  if (!Number.isInteger(vcpuIndex) || vcpuIndex < 0 || vcpuIndex >= GUEST_LAYOUT.maxVcpus) {
    throw new RangeError(`vCPU index ${vcpuIndex} is outside 0..${GUEST_LAYOUT.maxVcpus - 1}`);
  }
  return GUEST_LAYOUT.blockBase + vcpuIndex * GUEST_LAYOUT.blockSize;
}

/** The harness's per-vCPU scratch area (for hypercall argument structs). */
export function scratchAddress(vcpuIndex: number): { gpa: number; size: number } {
  return {
    gpa: blockAddress(vcpuIndex) + GUEST_LAYOUT.harnessScratch,
    size: GUEST_LAYOUT.harnessScratchEnd - GUEST_LAYOUT.harnessScratch,
  };
}

// ------------------------------------------------------------- commands --

/** A 64-bit register value: unsigned, or negative for two's complement. */
export type U64 = bigint | number;
export type CallArgs = readonly U64[]; // up to six

export type GuestCommand =
  /** Call the hypercall page stub `nr * 32` with up to six arguments. */
  | { op: 'hypercall'; nr: number; args?: CallArgs; cpl3?: boolean }
  /** Raw vmcall / vmmcall with the given rax and argument registers. */
  | { op: 'vmcall' | 'vmmcall'; rax: U64; args?: CallArgs; cpl3?: boolean }
  | { op: 'wrmsr'; msr: number; value: U64 }
  | { op: 'rdmsr'; msr: number }
  | { op: 'read'; addr: number; size: 1 | 2 | 4 | 8 }
  | { op: 'write'; addr: number; size: 1 | 2 | 4 | 8; value: U64 }
  /** Copy `len` bytes `iterations` times; count snapshots that changed. */
  | { op: 'read-loop'; src: number; len: number; iterations: number; dst?: number }
  /**
   * Torn-read check of a vcpu_runstate_info. A snapshot that is stable and has
   * XEN_RUNSTATE_UPDATE clear must satisfy entry == sum(time[]) + offset
   * (offset 0 on KVM). The first torn snapshot goes to `dst` (64 bytes).
   */
  | {
      op: 'runstate-check';
      src: number;
      layout: 'native' | 'compat';
      iterations: number;
      dst?: number;
      offset?: U64;
    }
  /** Wait until the upcall count reaches `count` (HLT between checks, or give up after `spins` checks). */
  | { op: 'wait-upcall'; count: number; spins?: number }
  | { op: 'hlt' }
  /** Exit to the host with a tag; the guest continues when resumed. */
  | { op: 'yield'; tag: number }
  /** A port write the native run loop records without returning to JS. */
  | { op: 'log'; value: number }
  /** Watch this vcpu_info (0: none) in the upcall handler, with UPCALL_FLAG bits. */
  | { op: 'set-upcall'; watch: number; flags: number }
  | { op: 'irq'; enable: boolean }
  | { op: 'cpuid'; leaf: number; subleaf?: number }
  | { op: 'end' };

export type GuestOpName = GuestCommand['op'];

const U32_MAX = 0xffffffff;

function fail(where: string, msg: string): never {
  throw new RangeError(`${where}: ${msg}`);
}

/** Check a register-sized value and return its unsigned bit pattern. */
export function toRegister(v: U64, mode: GuestMode, where: string): bigint {
  let b: bigint;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) fail(where, `${v} is not a safe integer (use a bigint)`);
    b = BigInt(v);
  } else if (typeof v === 'bigint') {
    b = v;
  } else {
    throw new TypeError(`${where}: expected a number or bigint`);
  }
  const bits = mode === 64 ? 64n : 32n;
  const min = -(1n << (bits - 1n));
  const max = (1n << bits) - 1n;
  if (b < min || b > max) fail(where, `${v} does not fit in a ${bits}-bit register`);
  return BigInt.asUintN(Number(bits), b);
}

function u32(v: number, where: string, max = U32_MAX): number {
  if (!Number.isInteger(v) || v < 0 || v > max) fail(where, `${v} is not an integer in 0..${max}`);
  return v;
}

/** A guest address: the guest reaches 0..4 GiB in both modes. */
function addr(v: number, where: string, len = 1, allowZero = false): number {
  if (!Number.isInteger(v) || v < 0) fail(where, `${v} is not a guest address`);
  if (v === 0 && !allowZero) fail(where, 'address 0 is not allowed');
  if (v + len > 0x1_0000_0000) fail(where, `0x${v.toString(16)}+${len} is beyond 4 GiB`);
  return v;
}

function args6(a: CallArgs | undefined, mode: GuestMode, where: string): bigint[] {
  const list = a ?? [];
  if (!Array.isArray(list) || list.length > 6) fail(where, 'args must be an array of at most six values');
  const out: bigint[] = [];
  for (let i = 0; i < 6; i++) out.push(i < list.length ? toRegister(list[i], mode, `${where}.args[${i}]`) : 0n);
  return out;
}

const SIZES = new Set([1, 2, 4, 8]);

/** Encode one command into its 64-byte record. */
export function encodeCommand(cmd: GuestCommand, mode: GuestMode, index = 0): Buffer {
  const where = `command[${index}] (${(cmd as { op?: unknown })?.op})`;
  const b = Buffer.alloc(GUEST_LAYOUT.cmdSize);
  const a = (i: number, v: bigint) => b.writeBigUInt64LE(v, 8 + 8 * i);
  let op: number;
  let flags = 0;
  switch (cmd?.op) {
    case 'hypercall': {
      op = OP.hypercall;
      a(0, BigInt(u32(cmd.nr, `${where}.nr`, 127)));
      args6(cmd.args, mode, where).forEach((v, i) => a(i + 1, v));
      if (cmd.cpl3) flags |= CMD_FLAG.CPL3;
      break;
    }
    case 'vmcall':
    case 'vmmcall': {
      op = cmd.op === 'vmcall' ? OP.vmcall : OP.vmmcall;
      a(0, toRegister(cmd.rax, mode, `${where}.rax`));
      args6(cmd.args, mode, where).forEach((v, i) => a(i + 1, v));
      if (cmd.cpl3) flags |= CMD_FLAG.CPL3;
      break;
    }
    case 'wrmsr':
      op = OP.wrmsr;
      a(0, BigInt(u32(cmd.msr, `${where}.msr`)));
      a(1, toRegister(cmd.value, 64, `${where}.value`));
      break;
    case 'rdmsr':
      op = OP.rdmsr;
      a(0, BigInt(u32(cmd.msr, `${where}.msr`)));
      break;
    case 'read':
      op = OP.read;
      if (!SIZES.has(cmd.size)) fail(where, 'size must be 1, 2, 4 or 8');
      a(0, BigInt(addr(cmd.addr, `${where}.addr`, cmd.size)));
      a(1, BigInt(cmd.size));
      break;
    case 'write': {
      op = OP.write;
      if (!SIZES.has(cmd.size)) fail(where, 'size must be 1, 2, 4 or 8');
      a(0, BigInt(addr(cmd.addr, `${where}.addr`, cmd.size)));
      a(1, BigInt(cmd.size));
      const v = toRegister(cmd.value, 64, `${where}.value`);
      if (cmd.size < 8) {
        const bits = BigInt(cmd.size * 8);
        const signed = BigInt.asIntN(64, v);
        if (signed < -(1n << (bits - 1n)) || (signed >= 0n && v >= 1n << bits)) {
          fail(where, `value does not fit in ${cmd.size} bytes`);
        }
      }
      a(2, v);
      break;
    }
    case 'read-loop':
      op = OP.readLoop;
      u32(cmd.len, `${where}.len`, 256);
      if (cmd.len < 1) fail(where, 'len must be 1..256');
      a(0, BigInt(addr(cmd.src, `${where}.src`, cmd.len)));
      a(1, BigInt(cmd.len));
      a(2, BigInt(u32(cmd.iterations, `${where}.iterations`)));
      if (cmd.dst !== undefined && cmd.dst !== 0) {
        a(3, BigInt(addr(cmd.dst, `${where}.dst`, cmd.len * cmd.iterations)));
      }
      a(4, BigInt(READLOOP_MODE.copy));
      break;
    case 'runstate-check': {
      op = OP.readLoop;
      if (cmd.layout !== 'native' && cmd.layout !== 'compat') fail(where, "layout must be 'native' or 'compat'");
      a(0, BigInt(addr(cmd.src, `${where}.src`, cmd.layout === 'native' ? 48 : 44)));
      a(1, BigInt(cmd.layout === 'native' ? 48 : 44));
      a(2, BigInt(u32(cmd.iterations, `${where}.iterations`)));
      if (cmd.dst !== undefined && cmd.dst !== 0) a(3, BigInt(addr(cmd.dst, `${where}.dst`, 64)));
      a(4, BigInt(cmd.layout === 'native' ? READLOOP_MODE.runstate64 : READLOOP_MODE.runstate32));
      a(5, toRegister(cmd.offset ?? 0n, 64, `${where}.offset`));
      break;
    }
    case 'wait-upcall':
      op = OP.waitUpcall;
      a(0, BigInt(u32(cmd.count, `${where}.count`)));
      a(1, BigInt(u32(cmd.spins ?? 0, `${where}.spins`)));
      break;
    case 'hlt':
      op = OP.hlt;
      break;
    case 'yield':
      op = OP.yield;
      a(0, BigInt(u32(cmd.tag, `${where}.tag`)));
      break;
    case 'log':
      op = OP.log;
      a(0, BigInt(u32(cmd.value, `${where}.value`)));
      break;
    case 'set-upcall':
      op = OP.setUpcall;
      a(0, BigInt(cmd.watch === 0 ? 0 : addr(cmd.watch, `${where}.watch`, 16)));
      a(1, BigInt(u32(cmd.flags, `${where}.flags`, 7)));
      break;
    case 'irq':
      op = OP.irq;
      if (typeof cmd.enable !== 'boolean') throw new TypeError(`${where}.enable must be a boolean`);
      a(0, cmd.enable ? 1n : 0n);
      break;
    case 'cpuid':
      op = OP.cpuid;
      a(0, BigInt(u32(cmd.leaf, `${where}.leaf`)));
      a(1, BigInt(u32(cmd.subleaf ?? 0, `${where}.subleaf`)));
      break;
    case 'end':
      op = OP.end;
      break;
    default:
      throw new TypeError(`${where}: unknown command op`);
  }
  b.writeUInt32LE(op, 0);
  b.writeUInt32LE(flags, 4);
  return b;
}

/** Encode a queue (at most GUEST_LAYOUT.maxCmds commands) into consecutive records. */
export function encodeCommands(cmds: readonly GuestCommand[], mode: GuestMode): Buffer {
  if (!Array.isArray(cmds)) throw new TypeError('commands must be an array');
  if (cmds.length > GUEST_LAYOUT.maxCmds) {
    throw new RangeError(`a batch holds at most ${GUEST_LAYOUT.maxCmds} commands, got ${cmds.length}`);
  }
  checkMode(mode);
  return Buffer.concat(cmds.map((c, i) => encodeCommand(c, mode, i)));
}

/** Decode command records (the inverse of encodeCommands, for tests and dumps). */
export function decodeCommandRecord(rec: Buffer): { op: number; flags: number; a: bigint[] } {
  const a: bigint[] = [];
  for (let i = 0; i < 7; i++) a.push(rec.readBigUInt64LE(8 + 8 * i));
  return { op: rec.readUInt32LE(0), flags: rec.readUInt32LE(4), a };
}

export function checkMode(mode: unknown): asserts mode is GuestMode {
  if (mode !== 64 && mode !== 32) throw new RangeError(`mode must be 64 or 32, got ${String(mode)}`);
}

// -------------------------------------------------------------- results --

export interface FaultInfo {
  vector: number;
  errorCode: bigint;
  rip: bigint;
  cr2: bigint;
  cs: number;
}

export interface RunstateCounts {
  ok: bigint;
  busy: bigint;
  raced: bigint;
  torn: bigint;
  changes: bigint;
  iterations: bigint;
}

export interface CommandResult {
  index: number;
  op: GuestOpName;
  status: 'ok' | 'fault' | 'not-run';
  /** rax (eax zero-extended in 32-bit mode). */
  ret: bigint;
  /** ret sign-extended from the mode's register width: -38n for -ENOSYS. */
  retSigned: bigint;
  aux: bigint[];
  /** For calls: argument registers after the call (rdi rsi rdx r10 r8 r9 / ebx ecx edx esi edi ebp). */
  argsAfter?: bigint[];
  fault?: FaultInfo;
  cpuid?: { eax: number; ebx: number; ecx: number; edx: number };
  runstate?: RunstateCounts;
  readLoop?: { changes: bigint; iterations: bigint };
  waitUpcall?: { count: number; reached: boolean };
  /** For calls: whether KVM answered in the kernel or the VMM layer did (KVM_EXIT_XEN). */
  servedBy?: 'kernel' | 'vmm';
}

/** Decode the result records of a batch of `cmds` run with `generation`. */
export function decodeResults(
  buf: Buffer,
  cmds: readonly GuestCommand[],
  mode: GuestMode,
  generation: number,
): CommandResult[] {
  checkMode(mode);
  if (buf.length < cmds.length * GUEST_LAYOUT.resultSize) {
    throw new RangeError(`result buffer holds ${buf.length} bytes, need ${cmds.length * GUEST_LAYOUT.resultSize}`);
  }
  const width = mode === 64 ? 64 : 32;
  return cmds.map((cmd, index) => {
    const off = index * GUEST_LAYOUT.resultSize;
    const st = buf.readUInt32LE(off);
    const code = st & 0xff;
    const gen = st >>> 8;
    const ret = buf.readBigUInt64LE(off + 8);
    const aux: bigint[] = [];
    for (let i = 0; i < 6; i++) aux.push(buf.readBigUInt64LE(off + 16 + 8 * i));
    const done = gen === (generation & 0xffffff) && (code === RESULT_CODE.ok || code === RESULT_CODE.fault);
    const r: CommandResult = {
      index,
      op: cmd.op,
      status: !done ? 'not-run' : code === RESULT_CODE.ok ? 'ok' : 'fault',
      ret,
      retSigned: BigInt.asIntN(width, ret),
      aux,
    };
    if (r.status === 'fault') {
      r.fault = {
        vector: buf.readUInt32LE(off + 4),
        errorCode: aux[0],
        rip: aux[1],
        cr2: aux[2],
        cs: Number(aux[3] & 0xffffn),
      };
    } else if (r.status === 'ok') {
      switch (cmd.op) {
        case 'hypercall':
        case 'vmcall':
        case 'vmmcall':
          r.argsAfter = aux.slice();
          break;
        case 'cpuid':
          r.cpuid = { eax: Number(ret & 0xffffffffn), ebx: Number(aux[0]), ecx: Number(aux[1]), edx: Number(aux[2]) };
          break;
        case 'runstate-check':
          r.runstate = { ok: aux[0], busy: aux[1], raced: aux[2], torn: aux[3], changes: aux[4], iterations: aux[5] };
          break;
        case 'read-loop':
          r.readLoop = { changes: ret, iterations: aux[0] };
          break;
        case 'wait-upcall':
          r.waitUpcall = { count: Number(ret), reached: aux[0] === 1n };
          break;
        default:
          break;
      }
    }
    return r;
  });
}

/** A torn runstate snapshot as stored by 'runstate-check' at dst. */
export function decodeRunstateSnapshot(b: Buffer): {
  state: number;
  entry: bigint;
  time: bigint[];
  t1: bigint;
  t2: bigint;
} {
  return {
    state: b.readUInt32LE(0),
    entry: b.readBigUInt64LE(8),
    time: [16, 24, 32, 40].map((o) => b.readBigUInt64LE(o)),
    t1: b.readBigUInt64LE(48),
    t2: b.readBigUInt64LE(56),
  };
}

// --------------------------------------------------------------- header --

export interface BlockHeaderInit {
  vcpu: number;
  mode: GuestMode;
  hypercallPage?: number;
  lapic: boolean;
  /** No VMM sees the guest's port writes (Xen): the guest waits in memory for the next batch. */
  waitGen?: boolean;
  upcallFlags?: number;
  upcallWatch?: number;
}

/** The initial 256-byte header of a vCPU block. */
export function encodeBlockHeader(h: BlockHeaderInit): Buffer {
  checkMode(h.mode);
  const b = Buffer.alloc(HDR.size);
  b.writeUInt32LE(BLOCK_MAGIC, HDR.magic);
  b.writeUInt32LE(u32(h.vcpu, 'vcpu', GUEST_LAYOUT.maxVcpus - 1), HDR.vcpu);
  b.writeUInt32LE(h.mode, HDR.mode);
  b.writeBigUInt64LE(BigInt(addr(h.hypercallPage ?? GUEST_LAYOUT.hypercallPage, 'hypercallPage', 4096)), HDR.hcallPage);
  b.writeUInt32LE((h.lapic ? HOST_FLAG.LAPIC : 0) | (h.waitGen ? HOST_FLAG.WAIT_GEN : 0), HDR.flags);
  b.writeUInt32LE(u32(h.upcallFlags ?? DEFAULT_UPCALL_FLAGS, 'upcallFlags', 7), HDR.upcallFlags);
  b.writeBigUInt64LE(BigInt(h.upcallWatch ? addr(h.upcallWatch, 'upcallWatch', 16) : 0), HDR.upcallWatch);
  return b;
}

export interface BlockHeader {
  magic: number;
  vcpu: number;
  mode: number;
  count: number;
  gen: number;
  state: number;
  cur: number;
  doneGen: number;
  hypercallPage: bigint;
  flags: number;
  upcallFlags: number;
  upcallWatch: bigint;
  upcallCount: number;
  upcallLast: number;
  faults: number;
  lastFault: FaultInfo;
}

export function decodeBlockHeader(b: Buffer): BlockHeader {
  return {
    magic: b.readUInt32LE(HDR.magic),
    vcpu: b.readUInt32LE(HDR.vcpu),
    mode: b.readUInt32LE(HDR.mode),
    count: b.readUInt32LE(HDR.count),
    gen: b.readUInt32LE(HDR.gen),
    state: b.readUInt32LE(HDR.state),
    cur: b.readUInt32LE(HDR.cur),
    doneGen: b.readUInt32LE(HDR.doneGen),
    hypercallPage: b.readBigUInt64LE(HDR.hcallPage),
    flags: b.readUInt32LE(HDR.flags),
    upcallFlags: b.readUInt32LE(HDR.upcallFlags),
    upcallWatch: b.readBigUInt64LE(HDR.upcallWatch),
    upcallCount: b.readUInt32LE(HDR.upcallCount),
    upcallLast: b.readUInt32LE(HDR.upcallLast),
    faults: b.readUInt32LE(HDR.faults),
    lastFault: {
      vector: b.readUInt32LE(HDR.faultVec),
      errorCode: b.readBigUInt64LE(HDR.faultErr),
      rip: b.readBigUInt64LE(HDR.faultRip),
      cr2: b.readBigUInt64LE(HDR.faultCr2),
      cs: b.readUInt32LE(HDR.faultCs),
    },
  };
}

export interface UpcallRecord {
  vector: number;
  seq: number;
  tsc: bigint;
  /** First 16 bytes of the watched vcpu_info when the upcall arrived. */
  vcpuInfo: Buffer;
}

/** The upcall records still in the ring, oldest first, given the block's upcall count. */
export function decodeUpcallRing(ring: Buffer, upcallCount: number): UpcallRecord[] {
  const n = Math.min(upcallCount, GUEST_LAYOUT.upcallRingEntries);
  const out: UpcallRecord[] = [];
  for (let seq = upcallCount - n + 1; seq <= upcallCount; seq++) {
    const off = ((seq - 1) % GUEST_LAYOUT.upcallRingEntries) * GUEST_LAYOUT.upcallRecordSize;
    out.push({
      vector: ring.readUInt32LE(off),
      seq: ring.readUInt32LE(off + 4),
      tsc: ring.readBigUInt64LE(off + 8),
      vcpuInfo: Buffer.from(ring.subarray(off + 16, off + 32)),
    });
  }
  return out;
}

// ---------------------------------------------------------------- image --

export interface GuestImage {
  mode: GuestMode;
  bytes: Buffer;
  entry: number;
  stubs: number;
  /** Address of the ud2 that takes a ring-3 call back to ring 0. */
  userReturn: number;
}

const IMAGE_HEADER_FIELDS: ReadonlyArray<[string, number, number]> = [
  ['magic', 0, GUEST_MAGIC],
  ['layout version', 4, LAYOUT_VERSION],
  ['stub size', 20, GUEST_LAYOUT.stubSize],
  ['block size', 28, GUEST_LAYOUT.blockSize],
  ['command offset', 32, GUEST_LAYOUT.cmds],
  ['result offset', 36, GUEST_LAYOUT.results],
  ['max commands', 40, GUEST_LAYOUT.maxCmds],
  ['command size', 44, GUEST_LAYOUT.cmdSize],
  ['result size', 48, GUEST_LAYOUT.resultSize],
  ['upcall ring offset', 52, GUEST_LAYOUT.upcallRing],
  ['upcall ring entries', 56, GUEST_LAYOUT.upcallRingEntries],
  ['port base', 60, GUEST_LAYOUT.portBase],
  ['max opcode', 64, OP_MAX],
  ['reserved', 68, 0],
  ['GDT offset', 72, GUEST_LAYOUT.gdt],
  ['TSS offset', 76, GUEST_LAYOUT.tss],
];

/** Check a built guest image against this file's layout. */
export function parseGuestImage(bytes: Buffer, mode: GuestMode): GuestImage {
  checkMode(mode);
  if (bytes.length < 96 || bytes.length > GUEST_LAYOUT.imageMaxSize) {
    throw new RangeError(`guest image is ${bytes.length} bytes; expected 96..${GUEST_LAYOUT.imageMaxSize}`);
  }
  for (const [name, off, want] of IMAGE_HEADER_FIELDS) {
    const got = bytes.readUInt32LE(off);
    if (got !== want) {
      throw new RangeError(
        `guest image ${name} is 0x${got.toString(16)}, guest.ts expects 0x${want.toString(16)}: rebuild the guest (npm rebuild) or update guest.ts and layout.inc together`,
      );
    }
  }
  const imgMode = bytes.readUInt32LE(8);
  if (imgMode !== mode) throw new RangeError(`guest image is for ${imgMode}-bit mode, not ${mode}-bit`);
  const size = bytes.readUInt32LE(80);
  if (size !== bytes.length) throw new RangeError(`guest image header says ${size} bytes, file has ${bytes.length}`);
  const inImage = (what: string, a: number) => {
    if (a < GUEST_LAYOUT.imageBase || a >= GUEST_LAYOUT.imageBase + bytes.length) {
      throw new RangeError(`guest image ${what} 0x${a.toString(16)} is outside the image`);
    }
    return a;
  };
  return {
    mode,
    bytes,
    entry: inImage('entry', bytes.readUInt32LE(12)),
    stubs: inImage('stub table', bytes.readUInt32LE(16)),
    userReturn: inImage('user return point', bytes.readUInt32LE(24)),
  };
}

export function guestImagePath(mode: GuestMode): string {
  return packagePath('native', 'build', 'guest', `guest${mode}.bin`);
}

/** Read and check the built guest image, or say why it is unavailable. */
export function loadGuestImage(
  mode: GuestMode,
  path = guestImagePath(mode),
): { ok: true; image: GuestImage } | { ok: false; reason: string } {
  if (!existsSync(path)) {
    return { ok: false, reason: `guest image ${path} is missing: the install step did not build it (see native/build/status.json)` };
  }
  try {
    return { ok: true, image: parseGuestImage(readFileSync(path), mode) };
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  }
}

// ------------------------------------------------------------ CPU state --

/**
 * A guest-virtual range no page table maps, in both modes: a hypercall argument there is
 * unreadable to every target (copy_from_guest, KVM_TRANSLATE), while guest RAM stays
 * identity mapped. Past every case's RAM, so the model (guest-virtual = guest-physical)
 * finds no memory there either.
 */
export const UNMAPPED_VA = { base: 0x4000_0000, size: 0x40_0000 } as const;

/** Identity map of 0..4 GiB with 2 MiB pages, user accessible, but UNMAPPED_VA; covers 0x2000..0x8000. */
export function buildPageTables(): Buffer {
  const L = GUEST_LAYOUT;
  const b = Buffer.alloc(L.pageTablesEnd - L.pml4);
  const at = (gpa: number) => gpa - L.pml4;
  const PRESENT_RW_USER = 0x7n;
  b.writeBigUInt64LE(BigInt(L.pdpt) | PRESENT_RW_USER, at(L.pml4));
  for (let i = 0; i < 4; i++) {
    const pd = L.pageDirectories + i * 0x1000;
    b.writeBigUInt64LE(BigInt(pd) | PRESENT_RW_USER, at(L.pdpt) + 8 * i);
    for (let j = 0; j < 512; j++) {
      const phys = BigInt(i) * 0x4000_0000n + BigInt(j) * 0x20_0000n;
      if (phys >= UNMAPPED_VA.base && phys < UNMAPPED_VA.base + UNMAPPED_VA.size) continue;
      b.writeBigUInt64LE(phys | PRESENT_RW_USER | 0x80n /* PS */, at(pd) + 8 * j);
    }
  }
  return b;
}

/** The 32-bit guest's page directory at 0x2000: 4 MiB pages (CR4.PSE), the same map. */
export function buildPageTables32(): Buffer {
  const b = Buffer.alloc(0x1000);
  for (let i = 0; i < 1024; i++) {
    const phys = i * 0x40_0000;
    if (phys >= UNMAPPED_VA.base && phys < UNMAPPED_VA.base + UNMAPPED_VA.size) continue;
    b.writeUInt32LE((phys | 0x87 /* PS, user, writable, present */) >>> 0, 4 * i);
  }
  return b;
}

/** The page tables of a mode, written at GUEST_LAYOUT.pml4 (the 32-bit directory takes its place). */
export const pageTablesFor = (mode: GuestMode): Buffer => (mode === 64 ? buildPageTables() : buildPageTables32());

function descriptor(base: number, limit: number, access: number, flags: number): bigint {
  const lo =
    BigInt(limit & 0xffff) |
    (BigInt(base & 0xffffff) << 16n) |
    (BigInt(access & 0xff) << 40n) |
    (BigInt((limit >>> 16) & 0xf) << 48n) |
    (BigInt(flags & 0xf) << 52n) |
    (BigInt((base >>> 24) & 0xff) << 56n);
  return lo;
}

const TSS_LIMIT = 0x67;

/** GDT of one vCPU (same selectors in both modes; 64-bit TSS descriptor is 16 bytes). */
export function buildGdt(blockBase: number): Buffer {
  const b = Buffer.alloc(0x48);
  const put = (sel: number, d: bigint) => b.writeBigUInt64LE(d, sel);
  put(SEL.kcode64, descriptor(0, 0xfffff, 0x9a, 0xa)); // L=1, G=1
  put(SEL.kdata, descriptor(0, 0xfffff, 0x92, 0xc));
  put(SEL.kcode32, descriptor(0, 0xfffff, 0x9a, 0xc)); // D=1, G=1
  put(SEL.ucode32, descriptor(0, 0xfffff, 0xfa, 0xc));
  put(SEL.udata, descriptor(0, 0xfffff, 0xf2, 0xc));
  put(SEL.ucode64, descriptor(0, 0xfffff, 0xfa, 0xa));
  const tss = blockBase + GUEST_LAYOUT.tss;
  put(SEL.tss, descriptor(tss, TSS_LIMIT, 0x8b, 0)); // busy TSS
  b.writeBigUInt64LE(0n, SEL.tss + 8); // upper half of the 64-bit TSS base: 0
  return b;
}

/** TSS of one vCPU: ring-0 stack for entries from ring 3, no I/O bitmap. */
export function buildTss(blockBase: number, mode: GuestMode): Buffer {
  const b = Buffer.alloc(TSS_LIMIT + 1);
  const sp0 = blockBase + GUEST_LAYOUT.trapStackTop;
  if (mode === 64) {
    b.writeBigUInt64LE(BigInt(sp0), 4); // rsp0
    b.writeUInt16LE(TSS_LIMIT + 1, 0x66); // I/O map base beyond the limit
  } else {
    b.writeUInt32LE(sp0, 4); // esp0
    b.writeUInt32LE(SEL.kdata, 8); // ss0
    b.writeUInt16LE(TSS_LIMIT + 1, 0x66);
  }
  return b;
}

/** The IDT: every vector goes to its stub through a DPL-0 interrupt gate. */
export function buildIdt(image: GuestImage): Buffer {
  const mode = image.mode;
  const size = mode === 64 ? 16 : 8;
  const b = Buffer.alloc(256 * size);
  const cs = mode === 64 ? SEL.kcode64 : SEL.kcode32;
  for (let v = 0; v < 256; v++) {
    const target = image.stubs + v * GUEST_LAYOUT.stubSize;
    const typeAttr = 0x8e; // present, 32/64-bit interrupt gate, DPL 0
    const off = v * size;
    b.writeUInt16LE(target & 0xffff, off);
    b.writeUInt16LE(cs, off + 2);
    b.writeUInt8(0, off + 4);
    b.writeUInt8(typeAttr, off + 5);
    b.writeUInt16LE((target >>> 16) & 0xffff, off + 6);
    if (mode === 64) b.writeUInt32LE(0, off + 8);
  }
  return b;
}

function seg(selector: number, opts: Partial<Segment>): Segment {
  return {
    base: 0n,
    limit: 0xffffffff,
    selector,
    type: 3,
    present: 1,
    dpl: 0,
    db: 1,
    s: 1,
    l: 0,
    g: 1,
    avl: 0,
    unusable: 0,
    ...opts,
  };
}

export const CR0 = { PE: 1n, MP: 2n, ET: 0x10n, NE: 0x20n, WP: 0x10000n, PG: 0x80000000n } as const;
export const CR4_PAE = 0x20n;
export const CR4_PSE = 0x10n;
export const EFER = { LME: 0x100n, LMA: 0x400n } as const;

/** The special registers for starting vCPU `index` at the guest's entry. */
export function guestSregs(base: Sregs, mode: GuestMode, index: number): Sregs {
  checkMode(mode);
  const block = blockAddress(index);
  const data = seg(SEL.kdata, { type: 3 });
  const code = mode === 64 ? seg(SEL.kcode64, { type: 0xb, l: 1, db: 0 }) : seg(SEL.kcode32, { type: 0xb });
  const tr = seg(SEL.tss, {
    base: BigInt(block + GUEST_LAYOUT.tss),
    limit: TSS_LIMIT,
    type: 0xb,
    s: 0,
    db: 0,
    g: 0,
  });
  const ldt = seg(0, { limit: 0xffff, type: 2, s: 0, present: 0, db: 0, g: 0, unusable: 1 });
  return {
    ...base,
    cs: code,
    ds: data,
    es: data,
    fs: data,
    gs: data,
    ss: data,
    tr,
    ldt,
    gdt: { base: BigInt(block + GUEST_LAYOUT.gdt), limit: 0x47 },
    idt: { base: BigInt(GUEST_LAYOUT.idt), limit: (mode === 64 ? 16 : 8) * 256 - 1 },
    cr0: CR0.PE | CR0.MP | CR0.ET | CR0.NE | CR0.WP | CR0.PG,
    cr3: BigInt(GUEST_LAYOUT.pml4),
    cr4: mode === 64 ? CR4_PAE : CR4_PSE,
    efer: mode === 64 ? EFER.LME | EFER.LMA : 0n,
  };
}

/** The general registers for starting vCPU `index` at the guest's entry. */
export function guestRegs(image: GuestImage, index: number): Regs {
  const block = BigInt(blockAddress(index));
  const z = 0n;
  return {
    rax: z, rbx: z, rcx: z, rdx: z, rsi: z,
    rdi: block,
    rsp: block + BigInt(GUEST_LAYOUT.kstackTop),
    rbp: z, r8: z, r9: z, r10: z, r11: z, r12: z, r13: z, r14: z, r15: z,
    rip: BigInt(image.entry),
    rflags: 2n,
  };
}
