// Turning a generated step into an Action exactly as the case runner does
// (the op's own schema, the same scratch page and placement), and running it on
// a target: synchronously on the in-process model (the hot loop), or through
// any Driver's Session (kvm, and later xen and qemu).

import { ops } from '../ops/index.js';
import { IntArg, type Action, type Outcome, type StepPlacement } from '../ops/types.js';
import { evalExpr } from '../suite/expr.js';
import { constants } from '../ops/index.js';
import { areaDefs, type AreaView } from '../model/areas.js';
import { SHARED_INFO, VCPU_INFO, VCPU_INFO_SIZE, XEN_LEGACY_MAX_VCPUS, type Width } from '../model/memory-layout.js';
import type { Session, SessionSetup } from '../drivers/driver.js';
import { ModelSession } from '../drivers/model/model-driver.js';
import { kvmEnterGuest } from '../model/kvm-evtchn.js';
import { kvmVcpuAttrs } from '../model/kvm-vcpu.js';
import type { FuzzStep } from './steps.js';

export interface Compiled {
  action: Action;
  place: StepPlacement;
}

const NO_VARS: ReadonlyMap<string, bigint> = new Map();

function resolve(v: unknown): unknown {
  if (v instanceof IntArg) return v.expr.k === 'num' ? v.expr.v : evalExpr(v.expr, constants, NO_VARS);
  if (Array.isArray(v)) return v.map(resolve);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v)) out[k] = resolve((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

/** A step's op arguments failed its schema: a bug in the fuzzer's vocabulary, not in a target. */
export class VocabularyError extends Error {
  override name = 'VocabularyError';
}

/** The encoding cached on the step object (a WeakMap of millions of steps costs the GC more). */
const CACHE = Symbol('compiled');
type Cached = FuzzStep & { [CACHE]?: { mode: number; scratch: number; c: Compiled } };

/** The keys of an object whose values are all bigints, in order; undefined otherwise. */
function bigintRecordKeys(v: unknown): string[] | undefined {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const keys: string[] = [];
  for (const k in v) {
    if (typeof (v as Record<string, unknown>)[k] !== 'bigint') return undefined;
    keys.push(k);
  }
  return keys;
}

/** Whether v is an object whose values are all bigints, with exactly these keys in this order. */
function isBigintRecord(v: unknown, keys: readonly string[]): boolean {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return false;
  let i = 0;
  for (const k in v) {
    if (k !== keys[i++] || typeof (v as Record<string, unknown>)[k] !== 'bigint') return false;
  }
  return i === keys.length;
}

/**
 * A value's kind in a shape: a bigint ('n'), a boolean (by value), a list of bigints ('l'),
 * or a list of n objects of bigints with the same keys (gnttab.map_batch).
 */
type Kind = 'n' | boolean | 'l' | { n: number; keys: readonly string[] };

function kindOf(v: unknown): Kind | undefined {
  if (typeof v === 'bigint') return 'n';
  if (typeof v === 'boolean') return v;
  if (!Array.isArray(v)) return undefined;
  if (v.every((x) => typeof x === 'bigint')) return 'l';
  const keys = bigintRecordKeys(v[0]);
  if (keys === undefined) return undefined;
  for (let i = 1; i < v.length; i++) if (!isBigintRecord(v[i], keys)) return undefined;
  return { n: v.length, keys };
}

function fits(v: unknown, kind: Kind): boolean {
  if (kind === 'n') return typeof v === 'bigint';
  if (typeof kind === 'boolean') return v === kind;
  if (!Array.isArray(v)) return false;
  if (kind === 'l') {
    for (const x of v) if (typeof x !== 'bigint') return false;
    return true;
  }
  // n >= 1 objects: never a list of bigints.
  if (v.length !== kind.n) return false;
  for (const x of v) if (!isBigintRecord(x, kind.keys)) return false;
  return true;
}

/**
 * The shape of a step's arguments when every value is a number the schema takes as it is
 * (a bigint), a boolean, a list of bigints or a list of objects of bigints: keys in order
 * and each value's kind. Undefined when some value is anything else.
 */
interface Shape {
  keys: readonly string[];
  kinds: readonly Kind[];
}

function shapeOf(args: Record<string, unknown>): Shape | undefined {
  const keys: string[] = [];
  const kinds: Kind[] = [];
  for (const k in args) {
    const kind = kindOf(args[k]);
    if (kind === undefined) return undefined;
    keys.push(k);
    kinds.push(kind);
  }
  return { keys, kinds };
}

/** Whether args have this shape (compared in place: no key string is built per step). */
function hasShape(args: Record<string, unknown>, s: Shape): boolean {
  let i = 0;
  for (const k in args) {
    if (k !== s.keys[i] || !fits(args[k], s.kinds[i])) return false;
    i++;
  }
  return i === s.keys.length;
}

/**
 * Shapes, per op, whose schema gave back exactly the arguments it was given (every op's
 * numbers are int(): a bigint parses to itself), perhaps in its own key order (the
 * schema's), which `order` keeps (null: the step's own order). Steps of such a shape skip
 * the schema: the first step of each shape still goes through it, and a shape it changes
 * or refuses is never added.
 */
const IDENTITY_SHAPES = new Map<string, Array<Shape & { order: readonly string[] | null }>>();

/** Equal values, lists and objects compared element by element (the schema copies them). */
function sameValue(x: unknown, y: unknown): boolean {
  if (x === y) return true;
  if (Array.isArray(x) && Array.isArray(y)) return x.length === y.length && x.every((e, i) => sameValue(e, y[i]));
  if (x && y && typeof x === 'object' && typeof y === 'object' && !Array.isArray(x) && !Array.isArray(y)) {
    return sameArgs(x as Record<string, unknown>, y as Record<string, unknown>);
  }
  return false;
}

function sameArgs(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const ka = Object.keys(a), kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k, i) => k === kb[i] && sameValue(a[k], b[k]));
}

/**
 * How the schema's output `a` is the input `b`: null when equal in the same key order,
 * the output's key order when only the order of b's own keys differs, undefined otherwise.
 */
function sameArgsOrder(a: Record<string, unknown>, b: Record<string, unknown>): readonly string[] | null | undefined {
  if (sameArgs(a, b)) return null;
  const ka = Object.keys(a), kb = Object.keys(b);
  if (ka.length !== kb.length) return undefined;
  return ka.every((k) => Object.hasOwn(b, k) && sameValue(a[k], b[k])) ? ka : undefined;
}

/** The op's arguments as its encoder takes them: through its schema, unless the shape is known to pass unchanged. */
function checkedArgs(step: FuzzStep, op: NonNullable<ReturnType<typeof ops.get>>): Record<string, unknown> {
  const raw = step.args as Record<string, unknown>;
  const known = IDENTITY_SHAPES.get(step.op);
  if (known !== undefined) {
    for (const s of known) {
      if (!hasShape(raw, s)) continue;
      if (s.order === null) return raw;
      // The same values in the schema's key order, as it would give them.
      const out: Record<string, unknown> = {};
      for (const k of s.order) out[k] = raw[k];
      return out;
    }
  }
  const parsed = op.args.safeParse(step.args);
  if (!parsed.success) throw new VocabularyError(`${step.op}: ${parsed.error.issues[0]?.message ?? 'bad arguments'}`);
  const args = resolve(parsed.data) as Record<string, unknown> | undefined;
  const shape = shapeOf(raw);
  if (shape !== undefined && args !== undefined) {
    const order = sameArgsOrder(args, raw);
    if (order !== undefined) {
      let list = IDENTITY_SHAPES.get(step.op);
      if (!list) IDENTITY_SHAPES.set(step.op, (list = []));
      list.push({ ...shape, order });
    }
  }
  return args as Record<string, unknown>;
}

/** Encode a step for a setup (cached per step: shrinking re-runs the same steps). */
export function compile(step: FuzzStep, setup: SessionSetup): Compiled {
  const hit = (step as Cached)[CACHE];
  if (hit && hit.mode === setup.mode && hit.scratch === setup.scratch) return hit.c;
  const op = ops.get(step.op);
  if (!op) throw new VocabularyError(`unknown op ${step.op}`);
  const place: StepPlacement = { dom: step.dom, vcpu: step.vcpu, cpl: step.cpl, via: 'auto' };
  const action = op.encode(checkedArgs(step, op) as never, {
    width: setup.mode, scratch: setup.scratch + step.vcpu * 4096, dom: step.dom, vcpu: step.vcpu,
  });
  const c = { action, place };
  // A plain symbol-keyed property: left out of JSON and Object.keys, and far cheaper than
  // defineProperty. An object spread does copy it: a step made from another by spreading
  // would run as the old one, so new steps are built field by field (live-steps.ts withArg).
  (step as Cached)[CACHE] = { mode: setup.mode, scratch: setup.scratch, c };
  return c;
}

/** What the fuzzer needs of a target session; the model's is synchronous. */
export interface FuzzSession {
  apply(c: Compiled): Outcome | Promise<Outcome>;
  read(dom: number, gpa: number, len: number): Uint8Array | Promise<Uint8Array>;
  areas(dom: number): AreaView;
  close(): void | PromiseLike<void>;
  /**
   * A model-kvm reference only: deliver the selector bits KVM holds for the vCPU as an
   * exit KVM handles in-kernel would (a host interrupt's, which no model can foresee).
   * Whether there were bits and they went into the vcpu_info.
   */
  deliverHeld?(dom: number, vcpu: number): boolean;
}

export function modelSession(s: ModelSession): FuzzSession {
  return {
    apply: (c) => s.applyNow(c.action, c.place),
    read: (dom, gpa, len) => s.model.domain(dom)!.memory.read(gpa, len),
    areas: (dom) => s.areas(dom),
    close: () => {},
    deliverHeld: (dom, vcpu) => deliverHeld(s, dom, vcpu),
  };
}

export function driverSession(s: Session): FuzzSession {
  return {
    apply: (c) => s.apply(c.action, c.place),
    read: (dom, gpa, len) => s.read(dom, gpa, len),
    areas: (dom) => s.areas(dom),
    close: () => s[Symbol.asyncDispose](),
    ...(s instanceof ModelSession ? { deliverHeld: (dom: number, vcpu: number) => deliverHeld(s, dom, vcpu) } : {}),
  };
}

function deliverHeld(s: ModelSession, dom: number, vcpu: number): boolean {
  const v = s.model.flavor === 'kvm' ? s.model.domain(dom)?.vcpu(vcpu) : undefined;
  if (!v || kvmVcpuAttrs(v).heldSel === 0n) return false;
  kvmEnterGuest(v, true);
  return kvmVcpuAttrs(v).heldSel === 0n;
}

/** A guest-visible area the model defines: where it is and how big. */
export interface AreaSpan {
  dom: number;
  /** Memory-path name of the area (`vcpu_info[1]`, `shared_info`). */
  name: string;
  gpa: number;
  size: number;
}

const PER_ENTRY = new Set(['evtchn_word', 'grant_v1', 'grant_v2', 'grant_status']);

/** Every area placed in a domain now (both targets must agree on where). */
export function areaSpans(view: AreaView, dom: number, vcpus: number): AreaSpan[] {
  const spans: AreaSpan[] = [];
  for (const def of areaDefs.values()) {
    if (def.name === 'hypercall_page') continue;
    // Per-port and per-ref areas: the entries the fuzzer's low ports and refs use.
    const n = !def.indexed ? 1 : PER_ENTRY.has(def.name) ? 16 : vcpus;
    for (let i = 0; i < n; i++) {
      const gpa = def.locate(view, i);
      if (gpa === undefined) continue;
      spans.push({ dom, name: def.indexed ? `${def.name}[${i}]` : def.name, gpa, size: def.layout(view.width).size });
    }
  }
  return spans;
}

export interface ClockRange {
  dom: number;
  /** Guest-physical [from, to). */
  from: number;
  to: number;
}

/**
 * Guest-physical ranges a live clock writes, from the areas placed: every vcpu_time_info
 * (a live hypervisor refreshes it whenever the vCPU runs; it ends its vcpu_info), shared_info's
 * wallclock, and runstate areas. A target without a controlled clock cannot agree with the
 * model's clock on these bytes, wherever another area overlaps them.
 */
export function clockRanges(spans: readonly AreaSpan[], widths: readonly Width[]): ClockRange[] {
  const out: ClockRange[] = [];
  const add = (dom: number, from: number, to: number) => out.push({ dom, from, to });
  // Each width's layout: a VMM that sets KVM's long_mode makes KVM write the wallclock in
  // the layout of the width it was told (kvm_xen_shared_info_init).
  for (const w of widths) for (const s of spans) {
    const time = VCPU_INFO[w].fields['time.version'].offset;
    const name = s.name.replace(/\[\d+\]$/, '');
    if (name === 'vcpu_info') add(s.dom, s.gpa + time, s.gpa + VCPU_INFO_SIZE);
    // A runstate area's times, and its state too: a live scheduler decides when the vCPU
    // reads as running or runnable (seen on Xen 4.17.7).
    else if (name === 'runstate') add(s.dom, s.gpa, s.gpa + s.size);
    else if (name === 'shared_info') {
      for (let i = 0; i < XEN_LEGACY_MAX_VCPUS; i++) {
        const at = s.gpa + i * VCPU_INFO_SIZE;
        add(s.dom, at + time, at + VCPU_INFO_SIZE);
      }
      const f = SHARED_INFO[w].fields;
      add(s.dom, s.gpa + f.wc_version.offset, s.gpa + f.wc_nsec.offset + 4);
      add(s.dom, s.gpa + f.wc_sec_hi.offset, s.gpa + f.wc_sec_hi.offset + 4);
    }
  }
  return out;
}

/** A span's bytes with whatever its domain's clock ranges cover zeroed (a copy). */
export function withoutClock(bytes: Uint8Array, span: AreaSpan, ranges: readonly ClockRange[]): Uint8Array {
  const out = bytes.slice();
  for (const r of ranges) {
    if (r.dom !== span.dom) continue;
    const from = Math.max(r.from - span.gpa, 0);
    const to = Math.min(r.to - span.gpa, out.length);
    if (from < to) out.fill(0, from, to);
  }
  return out;
}
