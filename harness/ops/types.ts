// The op vocabulary's building blocks. An op (`subsystem.verb`) validates its
// args with a zod schema, then encodes them into a target-neutral Action: a
// hypercall with its argument structs marshalled into guest memory exactly as
// a guest would pass them, a wrmsr, a host-side action, or only a check.

import { z } from 'zod';
import { constants } from './constants.js';
import { exprConsts, parseExpr, ExprError, type Expr } from '../suite/expr.js';
import { didYouMean } from '../suite/suggest.js';
import type { Width } from '../model/memory-layout.js';
import type { XenModel, Domain, Vcpu } from '../model/domain.js';
import { getI16, getI32, getU16, getU32, getU64, getU8, setU16, setU32, setU64, setU64Parts, setU8 } from '../model/le-bytes.js';

// Case files are checked once per process, each schema a few hundred times:
// zod's JIT (compiling every object schema with new Function on first use)
// costs more than it saves there, so it is off.
z.config({ jitless: true });

/** An integer-valued argument: a parsed expression, evaluated when the step runs. */
export class IntArg {
  constructor(readonly expr: Expr, readonly src: string) {}
}

export interface IntProblem {
  code: string;
  message: string;
  /** For UNKNOWN_CONSTANT: the unknown name. */
  name?: string;
}

/** The problem as it is reported: an unknown constant names the nearest known one. */
export function explain(p: IntProblem): IntProblem {
  if (p.code !== 'UNKNOWN_CONSTANT' || p.name === undefined) return p;
  return { ...p, message: `${p.message}${didYouMean(p.name, constants.keys())} (see \`xconf list --constants\`)` };
}

/** Parse an expression source into an IntArg, or explain what is wrong with it. */
export function compileInt(v: unknown): IntArg | IntProblem {
  if (typeof v === 'bigint') return new IntArg({ k: 'num', v }, v.toString());
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) return { code: 'TYPE', message: `${v} is not an integer` };
    return new IntArg({ k: 'num', v: BigInt(v) }, String(v));
  }
  if (typeof v !== 'string') {
    return { code: 'TYPE', message: `expected an integer or expression, got ${v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v}` };
  }
  try {
    const e = parseExpr(v);
    const unknown = exprConsts(e).filter((c) => !constants.has(c));
    if (unknown.length) return { code: 'UNKNOWN_CONSTANT', message: `unknown constant ${unknown[0]}`, name: unknown[0] };
    return new IntArg(e, v);
  } catch (err) {
    if (!(err instanceof ExprError)) throw err;
    return { code: 'BAD_EXPR', message: `bad expression '${v}': ${err.message}` };
  }
}

/** Every schema made by int(), so listings can show an argument as an integer. */
export const INT_SCHEMAS = new WeakSet<object>();

/** Schema for an integer argument: a YAML integer or an expression string. */
export function int() {
  const schema = z.any().transform((v, ctx): IntArg => {
    if (v === undefined) {
      ctx.addIssue({ code: 'custom', message: 'required', params: { code: 'MISSING' } });
      return z.NEVER;
    }
    const r = compileInt(v);
    if (r instanceof IntArg) return r;
    const e = explain(r);
    ctx.addIssue({ code: 'custom', message: e.message, params: { code: e.code } });
    return z.NEVER;
  });
  INT_SCHEMAS.add(schema);
  return schema;
}

/** Replace every IntArg in validated args by its value. */
export type Resolved<T> = T extends IntArg
  ? bigint
  : T extends Array<infer U>
    ? Array<Resolved<U>>
    : T extends object
      ? { [K in keyof T]: Resolved<T[K]> }
      : T;

export type OutValue = bigint | string | bigint[];

/** Where an op's OUT data lands and how to read it back. */
export interface OutSpec {
  gpa: number;
  size: number;
  decode(bytes: Uint8Array): Record<string, OutValue>;
}

export interface MemWrite {
  gpa: number;
  bytes: Uint8Array;
}

export type Via = 'page' | 'vmcall' | 'vmmcall' | 'auto';

export const REG_NAMES = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'r8', 'r9', 'r10'] as const;
export type RegName = (typeof REG_NAMES)[number];

export type Action =
  | {
      kind: 'hypercall';
      /** The hypercall number as it is put in rax (full width: upper bits matter in 64-bit mode). */
      nr: number | bigint;
      /** Positional arguments, placed in registers by the vCPU's calling convention. */
      args: bigint[];
      /** Explicit register values, applied after the positional ones. */
      regs?: Partial<Record<RegName, bigint>>;
      writes: MemWrite[];
      out?: OutSpec;
    }
  | { kind: 'wrmsr'; msr: number; value: bigint }
  | { kind: 'write'; writes: MemWrite[] }
  | { kind: 'check' }
  | { kind: 'host'; op: string; args: Record<string, unknown> };

/** Where and how the step runs; filled by the runner. */
export interface StepPlacement {
  dom: number;
  vcpu: number;
  cpl: number;
  via: Via;
}

/** What an op's encoder may know about the target vCPU. */
export interface OpContext {
  /** Execution mode of the calling vCPU (selects compat struct layouts). */
  width: Width;
  /** Guest-physical scratch page for this vCPU's argument structs. */
  scratch: number;
  dom: number;
  vcpu: number;
}

/** What one step did, as plain data. */
export interface Outcome {
  ret?: bigint;
  fault?: string;
  out?: Record<string, OutValue>;
  /** Who answered: the model, the kernel (KVM) or the driver's VMM layer. */
  servedBy?: 'model' | 'kernel' | 'vmm';
  /** Events the VMM layer had the kernel deliver while it served this step (KVM_XEN_HVM_EVTCHN_SEND). */
  kernelDeliveries?: number;
}

/** A host/guest op's implementation on the reference model. */
export type ModelImpl<A> = (m: XenModel, args: A, at: { dom: Domain; vcpu: Vcpu }) => Outcome;

export interface OpDef<S extends z.ZodType = z.ZodType> {
  name: string;
  summary: string;
  args: S;
  /** Capabilities the target needs for this op. */
  requires: readonly string[];
  /** OUT field names the op can produce (for `expect.out` and `save`). */
  out?: readonly string[];
  /**
   * Whether the step does nothing with these arguments (its result is ret 0), and so
   * needs nothing of the target and is not sent to it (`evtchn.use_fifo` with
   * `enable: 0`, the 2-level variant of a matrix).
   */
  inert?(args: Record<string, unknown>): boolean;
  encode(args: Resolved<z.output<S>>, ctx: OpContext): Action;
  /** For `host` actions: what the op does on the model. */
  model?: ModelImpl<Resolved<z.output<S>>>;
}

/** A host- or guest-side action is a capability of its own: a target runs only those it implements. */
export function hostOpCapability(op: string): string {
  return `host-op:${op}`;
}

/** A host op's OUT value that a case reads: a target may implement an op but not observe every value. */
export function hostOpOutCapability(op: string, key: string): string {
  return `host-op:${op}.${key}`;
}

export function defineOp<S extends z.ZodType>(def: OpDef<S>): OpDef<S> {
  return def;
}

/** Little-endian struct builder for argument structs. */
export class StructWriter {
  readonly bytes: Uint8Array;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
  }
  // Numbers that are integers take a path without BigInt: ToUint8/16/32 of an
  // integer is the same modular reduction BigInt.asUintN does. Anything else
  // (a bigint, or a non-integer number, which BigInt() rejects) goes through
  // BigInt as before.
  u8(o: number, v: bigint | number): this { setU8(this.bytes, o, Number.isInteger(v) ? (v as number) & 0xff : Number(BigInt.asUintN(8, BigInt(v)))); return this; }
  u16(o: number, v: bigint | number): this { setU16(this.bytes, o, Number.isInteger(v) ? (v as number) & 0xffff : Number(BigInt.asUintN(16, BigInt(v)))); return this; }
  u32(o: number, v: bigint | number): this { setU32(this.bytes, o, Number.isInteger(v) ? (v as number) >>> 0 : Number(BigInt.asUintN(32, BigInt(v)))); return this; }
  u64(o: number, v: bigint | number): this {
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) setU64Parts(this.bytes, o, v >>> 0, Math.floor(v / 0x1_0000_0000));
    else if (typeof v === 'bigint' && v >= 0n && v <= 0xffff_ffffn) setU64Parts(this.bytes, o, Number(v), 0);
    else setU64(this.bytes, o, BigInt(v));
    return this;
  }
}

const UTF8 = new TextDecoder();

/** Little-endian reads for OUT decoders (methods on a prototype: no closures per call). */
class Reader {
  constructor(private readonly bytes: Uint8Array) {}
  u8(o: number): bigint { return BigInt(getU8(this.bytes, o)); }
  u16(o: number): bigint { return BigInt(getU16(this.bytes, o)); }
  i16(o: number): bigint { return BigInt(getI16(this.bytes, o)); }
  u32(o: number): bigint { return BigInt(getU32(this.bytes, o)); }
  i32(o: number): bigint { return BigInt(getI32(this.bytes, o)); }
  u64(o: number): bigint { return getU64(this.bytes, o); }
  cstr(o: number, n: number): string {
    const s = this.bytes.subarray(o, o + n);
    const end = s.indexOf(0);
    return UTF8.decode(end < 0 ? s : s.subarray(0, end));
  }
  hex(o: number, n: number): string {
    return Array.from(this.bytes.subarray(o, o + n), (b) => b.toString(16).padStart(2, '0')).join(' ');
  }
}

export function reader(bytes: Uint8Array): Reader {
  return new Reader(bytes);
}

/** A hypercall action whose single pointer argument is a struct in the scratch page. */
export function structCall(
  ctx: OpContext,
  nr: number,
  leading: bigint[],
  struct: StructWriter,
  decode?: (bytes: Uint8Array) => Record<string, OutValue>,
  trailing: bigint[] = [],
): Action {
  const gpa = ctx.scratch;
  return {
    kind: 'hypercall',
    nr,
    args: [...leading, BigInt(gpa), ...trailing],
    writes: [{ gpa, bytes: struct.bytes }],
    out: decode ? { gpa, size: struct.bytes.length, decode } : undefined,
  };
}
