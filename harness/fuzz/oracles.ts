// Oracles: what makes a step a finding. With a reference target, the reference
// runs the same step and ret, fault, OUT values and the bytes of every area the
// model defines are compared. On one target alone, invariants that hold for
// every sequence are checked. Each finding carries the YAML expectation that
// makes the replayed case fail on the target where it was found.

import type { Outcome, OutValue } from '../ops/types.js';
import { describeRet } from '../model/errno.js';
import { elementSize, fieldOffset, SHARED_INFO, VCPU_INFO, XEN_LEGACY_MAX_VCPUS, VCPU_INFO_SIZE, type StructLayout, type Width } from '../model/memory-layout.js';
import { areaDefs } from '../model/areas.js';
import type { AreaSpan } from './exec.js';
import type { FuzzStep } from './steps.js';

/** A YAML `expect` (and `save`) fragment for the failing step. */
export interface StepExpect {
  ret?: string;
  fault?: string | null;
  out?: Record<string, string | string[]>;
  memory?: Record<string, string>;
  values?: Record<string, number>;
  save?: Record<string, string>;
}

export interface Disagreement {
  kind: 'differential' | 'invariant' | 'exception';
  /** `ret`, `fault`, `out.KEY`, `memory.AREA`, or the invariant's name. */
  field: string;
  expected: string;
  actual: string;
  /** Coarse classes of both sides, for the dedup signature. */
  classes: [string, string];
  expect: StepExpect;
}

export function outText(v: OutValue | undefined): string {
  if (v === undefined) return '(none)';
  if (Array.isArray(v)) return `[${v.join(', ')}]`;
  return typeof v === 'bigint' ? describeRet(v) : JSON.stringify(v);
}

/** A value's class: errno name, zero, positive, a fault name, absent. */
export function valueClass(v: OutValue | undefined | string): string {
  if (v === undefined) return 'none';
  if (typeof v === 'string') return 'text';
  if (Array.isArray(v)) return `list${v.length}`;
  if (v < 0n) return describeRet(v);
  return v === 0n ? 'zero' : 'nonzero';
}

function yamlOut(v: OutValue): string | string[] {
  return Array.isArray(v) ? v.map(String) : String(v);
}

/** OUT values that are readings of the clock: a target with its own clock cannot match the model's. */
const CLOCK_OUTS = new Set(['state_entry_time', 'time_running', 'time_runnable', 'time_blocked', 'time_offline', 'time_sum']);

/** Ops whose `state` a live scheduler decides (running or runnable, blocked or woken). */
const SCHEDULER_STATE_OPS = new Set(['runstate.get', 'vcpu.get_runstate_info']);

/**
 * Compare a target's outcome with the reference's. `liveClock`: leave out clock readings
 * and, for the runstate ops of `op`, the state a live scheduler decides.
 */
export function compareOutcomes(target: Outcome, ref: Outcome, liveClock = false, op = ''): Disagreement | undefined {
  if ((target.fault ?? null) !== (ref.fault ?? null)) {
    return {
      kind: 'differential', field: 'fault', expected: ref.fault ?? 'none', actual: target.fault ?? 'none',
      classes: [ref.fault ?? 'none', target.fault ?? 'none'], expect: { fault: ref.fault ?? null },
    };
  }
  if (target.ret !== ref.ret) {
    return {
      kind: 'differential', field: 'ret', expected: outText(ref.ret), actual: outText(target.ret),
      classes: [valueClass(ref.ret), valueClass(target.ret)], expect: ref.ret === undefined ? {} : { ret: String(ref.ret) },
    };
  }
  const keys = new Set([...Object.keys(ref.out ?? {}), ...Object.keys(target.out ?? {})]);
  for (const k of keys) {
    if (liveClock && (CLOCK_OUTS.has(k) || (k === 'state' && SCHEDULER_STATE_OPS.has(op)))) continue;
    const a = target.out?.[k];
    const e = ref.out?.[k];
    if (outText(a) === outText(e)) continue;
    return {
      kind: 'differential', field: `out.${k}`, expected: outText(e), actual: outText(a),
      classes: [valueClass(e), valueClass(a)], expect: e === undefined ? {} : { out: { [k]: yamlOut(e) } },
    };
  }
  return undefined;
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');

/** The field of `layout` holding byte `offset` (the first declared, where two overlap). */
function fieldIn(layout: StructLayout, offset: number): string | undefined {
  for (const [name, f] of Object.entries(layout.fields)) {
    const end = fieldOffset(f, (f.count ?? 1) - 1).offset + elementSize(f);
    if (offset >= f.offset && offset < end) return name;
  }
  return undefined;
}

/**
 * The signature class of a difference at `offset` in area `name`: the area and the field
 * that holds the byte, without indexes (`shared_info.evtchn_pending`,
 * `vcpu_info.evtchn_pending_sel`), so one bug on many ports or vCPUs is one finding.
 * Bytes no field covers keep their offset.
 */
export function differenceClass(name: string, width: Width, offset: number): string {
  const base = name.replace(/\[\d+\]/, '');
  const def = areaDefs.get(base);
  const layout = def?.layout(width);
  if (layout) {
    const field = fieldIn(layout, offset);
    if (field) return `${base}.${field}`;
    if (base === 'shared_info' && offset < XEN_LEGACY_MAX_VCPUS * VCPU_INFO_SIZE) {
      const inner = fieldIn(VCPU_INFO[width], offset % VCPU_INFO_SIZE);
      if (inner) return `shared_info.vcpu_info.${inner}`;
    }
  }
  return `${base}+${offset}`;
}

/** Compare the areas both targets placed, byte for byte (fields named in `width`'s layout). */
export function compareAreas(
  target: AreaSpan[], ref: AreaSpan[], bytes: (side: 'target' | 'ref', s: AreaSpan) => Uint8Array, width: Width,
): Disagreement | undefined {
  const where = (s: AreaSpan[]) => new Map(s.map((x) => [`${x.dom}/${x.name}`, x]));
  const t = where(target);
  for (const r of ref) {
    const key = `${r.dom}/${r.name}`;
    const a = t.get(key);
    if (!a || a.gpa !== r.gpa) {
      return {
        kind: 'differential', field: `area.${r.name}`, expected: `at 0x${r.gpa.toString(16)}`,
        actual: a ? `at 0x${a.gpa.toString(16)}` : 'not placed', classes: ['placed', a ? 'moved' : 'absent'], expect: {},
      };
    }
    const eb = bytes('ref', r);
    const ab = bytes('target', a);
    if (eb.length !== ab.length) {
      return {
        kind: 'differential', field: `memory.${r.name}`, expected: `${eb.length} readable bytes`, actual: `${ab.length} readable bytes`,
        classes: ['readable', 'unreadable'], expect: {},
      };
    }
    let first = -1;
    for (let i = 0; i < eb.length; i++) if (eb[i] !== ab[i]) { first = i; break; }
    if (first < 0) continue;
    // The 8-byte window around the first difference becomes the expectation.
    const start = first - (first % 8);
    const len = Math.min(8, eb.length - start);
    const path = `${r.dom === -1 ? '' : `dom${r.dom}.`}bytes@0x${(r.gpa + start).toString(16)}:${len}`;
    return {
      kind: 'differential', field: `memory.${r.name}`, expected: hex(eb.subarray(start, start + len)),
      actual: hex(ab.subarray(start, start + len)), classes: [differenceClass(r.name, width, first), 'differs'],
      expect: { memory: { [path]: hex(eb.subarray(start, start + len)) } },
    };
  }
  return undefined;
}

/** The state an invariant may look at beyond the outcome. */
export interface InvariantView {
  width: Width;
  /** The domain's shared_info, when placed and in the 2-level ABI. */
  sharedInfo2l(dom: number): number | undefined;
  readU8(dom: number, gpa: number): number;
}

const inv = (field: string, expected: string, actual: string, expect: StepExpect): Disagreement => ({
  kind: 'invariant', field, expected, actual, classes: [expected, actual], expect,
});

/** Invariants that hold after every step on any correct target. */
export function checkInvariants(step: FuzzStep, o: Outcome, view: InvariantView): Disagreement | undefined {
  const out = o.out ?? {};
  if (out.sum_ok !== undefined && out.sum_ok !== 1n) {
    return inv('runstate.sum_rule', '1', String(out.sum_ok), { out: { sum_ok: '1' } });
  }
  // (torn_accepted is not an invariant: without VMASST_TYPE_runstate_update_flag Xen
  // writes the area with no protocol at all; the differential compares it instead.)
  if (step.op === 'time.update' && typeof out.version === 'bigint' && (out.version & 1n) !== 0n) {
    return inv('time.version_parity', 'even', String(out.version), { save: { fz_version: 'version' }, values: { '$fz_version & 1': 0 } });
  }
  if (step.op === 'gnttab.maptrack' && typeof out.used === 'bigint' && typeof out.limit === 'bigint' && out.used > out.limit) {
    return inv('gnttab.maptrack_bound', `<= ${out.limit}`, String(out.used), {
      save: { fz_used: 'used', fz_limit: 'limit' }, values: { '($fz_limit - $fz_used) >> 63': 0 },
    });
  }
  if (step.op === 'evtchn.run_upcall' && Array.isArray(out.handled) && new Set(out.handled).size !== out.handled.length) {
    // One upcall run handles a pending port once: a port twice is a duplicated event.
    const once = [...new Set(out.handled)];
    return inv('evtchn.duplicated_event', `[${once.join(', ')}]`, `[${out.handled.join(', ')}]`, { out: { handled: once.map(String) } });
  }
  if (step.op === 'evtchn.close' && o.ret === 0n) {
    // A closed port has no pending event left (free_evtchn clears it).
    const si = view.sharedInfo2l(step.dom);
    const port = Number(step.args.port as bigint);
    if (si !== undefined && port < 4096) {
      const f = SHARED_INFO[view.width].fields.evtchn_pending;
      const loc = fieldOffset(f, port);
      const byte = si + loc.offset + (loc.bit! >> 3);
      if ((view.readU8(step.dom, byte) >> (loc.bit! & 7)) & 1) {
        return inv('evtchn.close_clears_pending', '0', '1', { memory: { [`shared_info.evtchn_pending[${port}]`]: '0' } });
      }
    }
  }
  return undefined;
}
