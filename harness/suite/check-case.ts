// Checks a parsed case document: the case structure (zod), then every step on
// its own (structure, the op's argument schema, ranges of integers, OUT
// fields, memory paths, the flow of variables), so one pass reports every
// problem of the file.

import { UNMAPPED_VA } from '../drivers/kvm/guest.js';
import { ops } from '../ops/index.js';
import { compileInt, explain, IntArg, type IntProblem, type OpDef } from '../ops/types.js';
import { argType, CPL, DOMID, sizedValue, U64, ADDRESS, U32, VCPU_ID, rangeProblem, type IntType } from '../ops/arg-types.js';
import { constants } from '../ops/constants.js';
import type { SuiteProblem } from '../errors.js';
import { caseSchema, stepSchema } from './schema.js';
import { constantFault, evalExpr, exprVars, type Expr, type VarValue } from './expr.js';
import { parseHexPattern, parsePath, pathIsBytes, type MemoryPath } from './memory-path.js';
import { type Positions, zodProblems } from './locate.js';
import { didYouMean } from './suggest.js';
import type { Expected, LoadedCase, LoadedStep } from './loader.js';
import { BAD_ID_CHAR, describeChar } from './case-id.js';

type Path = PropertyKey[];
type Found = Array<{ arg: IntArg; path: Path }>;

/** Collect IntArgs in a validated value, with their paths (one shared stack; a path is copied only for an IntArg). */
function intArgs(v: unknown, path: Path, acc: Found = []): Found {
  if (v instanceof IntArg) acc.push({ arg: v, path: [...path] });
  else if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) { path.push(i); intArgs(v[i], path, acc); path.pop(); }
  } else if (v && typeof v === 'object') {
    for (const k in v) {
      if (!Object.hasOwn(v, k)) continue;
      path.push(k);
      intArgs((v as Record<string, unknown>)[k], path, acc);
      path.pop();
    }
  }
  return acc;
}

/** The nearest string key of a path (a list element takes its list's name). */
const lastKey = (path: Path): string => String([...path].reverse().find((k) => typeof k === 'string') ?? '');

const NO_VARS = new Map<string, VarValue>();

/** Division by zero anywhere constant, and (for a typed field with a constant value) the range. */
/** The largest guest RAM a case may ask for: it must end below the test guests' unmapped range. */
const MAX_GUEST_MEMORY = UNMAPPED_VA.base;

export function intProblem(arg: IntArg, type?: IntType): IntProblem | undefined {
  const fault = constantFault(arg.expr, constants);
  if (fault) return { code: 'BAD_EXPR', message: `'${arg.src}' cannot be evaluated: ${fault}` };
  if (!type || exprVars(arg.expr).length) return undefined;
  const why = rangeProblem(evalExpr(arg.expr, constants, NO_VARS), type);
  return why ? { code: 'RANGE', message: arg.src.trim() === String(evalExpr(arg.expr, constants, NO_VARS)) ? why : `'${arg.src}' = ${why}` } : undefined;
}

function compileExpected(raw: unknown, bytes: boolean): Expected | { error: IntProblem } {
  if (Array.isArray(raw)) {
    const list: IntArg[] = [];
    for (const x of raw) {
      const r = compileInt(x);
      if (!(r instanceof IntArg)) return { error: explain(r) };
      list.push(r);
    }
    return { list, src: `[${raw.map(String).join(', ')}]` };
  }
  const src = String(raw);
  if (bytes) {
    try {
      return { src, bytes: parseHexPattern(src) };
    } catch (e) {
      return { error: { code: 'BAD_VALUE', message: (e as Error).message } };
    }
  }
  if (typeof raw === 'string') {
    // A string is an expression when it parses as one; otherwise it is compared as text.
    const r = compileInt(raw);
    if (r instanceof IntArg) return { src, int: r };
    if (r.code === 'UNKNOWN_CONSTANT' && /^-?[A-Z][A-Z0-9_]*$/.test(raw.trim())) return { error: explain(r) };
    return { src };
  }
  const r = compileInt(raw);
  if (!(r instanceof IntArg)) return { error: explain(r) };
  return { src, int: r };
}

/** Variables every step may use: the Xen version the case runs with (setup.xen_version or the target's own). */
export const SETUP_VARS = ['xen_major', 'xen_minor'] as const;

/** Types of the integer fields of `setup`, by key. */
const SETUP_TYPES: Record<string, IntType> = {
  scratch: ADDRESS, id: DOMID, vcpus: U32, memory: U64, shared_info: ADDRESS, hypercall_page: ADDRESS,
};
const STEP_TYPES: Record<string, IntType> = { dom: DOMID, vcpu: VCPU_ID, cpl: CPL };

class CaseChecker {
  readonly problems: SuiteProblem[] = [];
  readonly defined = new Set<string>();
  constructor(private readonly loc: Positions) {}

  add(path: Path, p: IntProblem, key?: string): void {
    this.problems.push(this.loc.problem(path, p.code, p.message, key));
  }

  /** Variables used before they are defined, constant faults, and ranges. */
  ints(found: Found, typeOf: (path: Path) => IntType | undefined = () => undefined): void {
    for (const { arg, path } of found) {
      for (const v of exprVars(arg.expr)) {
        if (!this.defined.has(v)) {
          this.add(path, { code: 'UNDEFINED_VAR', message: `$${v} is not defined before this point (define it in matrix, vars, or an earlier step's save)${didYouMean(v, this.defined)}` });
        }
      }
      const p = intProblem(arg, typeOf(path));
      if (p) this.add(path, p);
    }
  }

  step(raw: unknown, i: number): LoadedStep | undefined {
    const base: Path = ['steps', i];
    const line = this.loc.pos(base).line;
    const parsed = stepSchema.safeParse(raw);
    if (!parsed.success) {
      this.problems.push(...zodProblems(this.loc, parsed.error.issues, base));
      return undefined;
    }
    const s = parsed.data;
    const op = ops.get(s.op);
    if (!op) {
      const near = [...ops.keys()].filter((n) => n.split('.')[0] === s.op.split('.')[0]);
      const hint = didYouMean(s.op, ops.keys()) || (near.length ? ` (${s.op.split('.')[0]} ops: ${near.join(', ')})` : '');
      this.add([...base, 'op'], { code: 'UNKNOWN_OP', message: `unknown op '${s.op}'${hint} (see \`xconf list --ops\`)` });
      return undefined;
    }
    const a = op.args.safeParse(s.args ?? {});
    if (!a.success) {
      this.problems.push(...zodProblems(this.loc, a.error.issues, [...base, 'args']));
      return undefined;
    }
    this.ints(intArgs(a.data, [...base, 'args']), (path) => argTypeAt(op, a.data, lastKey(path)));
    this.ints(intArgs({ dom: s.dom, vcpu: s.vcpu, cpl: s.cpl }, base), (path) => STEP_TYPES[lastKey(path)]);
    const exp = s.expect ?? {};
    if (exp.ret) this.ints([{ arg: exp.ret, path: [...base, 'expect', 'ret'] }]);
    const out: Array<[string, Expected]> = [];
    for (const [k, rawOut] of Object.entries(exp.out ?? {})) {
      const p = [...base, 'expect', 'out', k];
      if (!op.out?.includes(k)) {
        const fields = op.out?.length ? ` (fields: ${op.out.join(', ')})` : '';
        this.add([...base, 'expect', 'out'], { code: 'UNKNOWN_OUT', message: `op ${op.name} has no OUT field '${k}'${fields}` }, k);
        continue;
      }
      const e = compileExpected(rawOut, false);
      if ('error' in e) { this.add(p, e.error); continue; }
      this.ints('list' in e ? e.list.map((arg) => ({ arg, path: p })) : e.int ? [{ arg: e.int, path: p }] : []);
      out.push([k, e]);
    }
    const memory = this.memory(exp.memory ?? {}, [...base, 'expect', 'memory']);
    const save: Array<[string, string]> = [];
    for (const [name, from] of Object.entries(s.save ?? {})) {
      if (from !== 'ret' && !op.out?.includes(from)) {
        this.add([...base, 'save', name], { code: 'UNKNOWN_OUT', message: `cannot save '${from}': op ${op.name} gives ret${op.out?.length ? `, ${op.out.join(', ')}` : ''}` });
        continue;
      }
      save.push([name, from]);
    }
    for (const [name] of save) this.defined.add(name);
    const values: Array<[IntArg, IntArg]> = [];
    for (const [src, rawValue] of Object.entries(exp.values ?? {})) {
      const p = [...base, 'expect', 'values'];
      const k = compileInt(src);
      const w = compileInt(rawValue);
      if (!(k instanceof IntArg)) { this.add(p, explain(k), src); continue; }
      if (!(w instanceof IntArg)) { this.add([...p, src], explain(w)); continue; }
      this.ints([{ arg: k, path: p }, { arg: w, path: [...p, src] }]);
      values.push([k, w]);
    }
    return {
      index: i, line, op, label: s.name ?? op.name, args: a.data,
      dom: s.dom, vcpu: s.vcpu, cpl: s.cpl, via: s.via,
      expect: { ret: exp.ret, fault: exp.fault, out, memory, servedBy: exp.served_by, values },
      save,
    };
  }

  memory(entries: Record<string, unknown>, at: Path): LoadedStep['expect']['memory'] {
    const memory: LoadedStep['expect']['memory'] = [];
    for (const [text, raw] of Object.entries(entries)) {
      let path: MemoryPath;
      try {
        path = parsePath(text);
      } catch (e) {
        this.add(at, { code: 'BAD_PATH', message: (e as Error).message }, text);
        continue;
      }
      const ex: Expr[] = path.kind === 'field' ? [path.areaIndex, path.fieldIndex].filter((x): x is Expr => !!x) : [path.addr];
      const before = this.problems.length;
      this.ints(ex.map((expr) => ({ arg: new IntArg(expr, text), path: [...at, text] })), () => (path.kind === 'field' ? U32 : ADDRESS));
      if (this.problems.length > before) continue;
      const e = compileExpected(raw, pathIsBytes(path));
      if ('error' in e) { this.add([...at, text], e.error); continue; }
      if (!('list' in e) && !e.int && !e.bytes) {
        this.add([...at, text], { code: 'BAD_VALUE', message: `'${e.src}' is neither a number nor an expression` });
        continue;
      }
      if ('int' in e && e.int) this.ints([{ arg: e.int, path: [...at, text] }]);
      memory.push({ path, expected: e });
    }
    return memory;
  }
}

/** An argument's type; a `value` stored in `size` bytes takes its width from that size. */
function argTypeAt(op: OpDef, args: unknown, key: string): IntType {
  if (key === 'value' && args && typeof args === 'object' && 'size' in args) {
    const size = (args as { size?: unknown }).size;
    if (typeof size === 'bigint') return sizedValue(size);
    if (size === undefined && op.name === 'memory.write') return sizedValue(8n);
  }
  return argType(op.name, key);
}

/** Check a case document; a case only when the file has no problem at all. */
export function checkCase(data: object, loc: Positions, id: string, file: string): { case?: LoadedCase; problems: SuiteProblem[] } {
  const ck = new CaseChecker(loc);
  const parsed = caseSchema.safeParse(data);
  if (!parsed.success) ck.problems.push(...zodProblems(loc, parsed.error.issues));
  const c = parsed.success ? parsed.data : undefined;
  const rawOf = (k: string): unknown => (data as Record<string, unknown>)[k];
  const namesOf = (v: unknown): string[] => (v && typeof v === 'object' && !Array.isArray(v) ? Object.keys(v) : []);
  // Variables: matrix parameters and `vars` first, then each step's `save`.
  const matrix: Array<[string, VarValue[]]> = [];
  for (const [k, vals] of Object.entries(c?.matrix ?? {})) {
    ck.defined.add(k);
    // A string that names constants or is an expression (HYPERVISOR_iret, 1 << 4) is a number;
    // any other string (intel, fifo) stays text.
    matrix.push([k, vals.map((v, i) => {
      if (typeof v !== 'string') return BigInt(v);
      const bad = BAD_ID_CHAR.exec(v);
      if (bad) ck.add(['matrix', k, i], { code: 'BAD_ID', message: `matrix value '${v}' contains ${describeChar(bad[0])}; it becomes part of the variant name, which KTAP cannot carry` });
      const r = compileInt(v);
      if (!(r instanceof IntArg) || exprVars(r.expr).length) return v;
      const fault = constantFault(r.expr, constants);
      if (fault) { ck.add(['matrix', k, i], { code: 'BAD_EXPR', message: `'${v}' cannot be evaluated: ${fault}` }); return v; }
      return evalExpr(r.expr, constants, NO_VARS);
    })]);
  }
  // A broken top level still defines the names it tried to, so steps are checked without false alarms.
  if (!c) for (const k of [...namesOf(rawOf('matrix')), ...namesOf(rawOf('vars'))]) ck.defined.add(k);
  const vars: Array<[string, IntArg]> = [];
  for (const [k, arg] of Object.entries(c?.vars ?? {})) {
    ck.ints([{ arg, path: ['vars', k] }]);
    ck.defined.add(k);
    vars.push([k, arg]);
  }
  ck.ints(intArgs(c?.setup ?? {}, ['setup']), (path) => SETUP_TYPES[lastKey(path)]);
  // Bound from the resolved setup for every step (run-case.ts setupVars).
  for (const b of SETUP_VARS) ck.defined.add(b);
  if (c?.setup?.mode) {
    const m = c.setup.mode;
    if (!exprVars(m.expr).length && !intProblem(m)) {
      const v = evalExpr(m.expr, constants, NO_VARS);
      if (v !== 32n && v !== 64n) ck.add(['setup', 'mode'], { code: 'RANGE', message: `mode is 32 or 64, not ${v}` });
    }
  }
  (c?.setup?.domains ?? []).forEach((d, i) => {
    const m = d.memory;
    if (!m || exprVars(m.expr).length || intProblem(m)) return;
    const v = evalExpr(m.expr, constants, NO_VARS);
    if (v > BigInt(MAX_GUEST_MEMORY)) {
      ck.add(['setup', 'domains', i, 'memory'], { code: 'RANGE', message: `guest RAM ends at 0x${MAX_GUEST_MEMORY.toString(16)} at most (the test guests leave the range above it unmapped), not 0x${v.toString(16)}` });
    }
  });
  const rawSteps = rawOf('steps');
  const steps: LoadedStep[] = [];
  if (Array.isArray(rawSteps)) {
    rawSteps.forEach((s, i) => {
      const st = ck.step(s, i);
      if (st) steps.push(st);
    });
  }
  if (ck.problems.length || !c) return { problems: ck.problems };
  return {
    problems: [],
    case: {
      id, file,
      description: c.description,
      spec: c.spec === undefined ? [] : Array.isArray(c.spec) ? c.spec : [c.spec],
      requires: c.requires ?? [],
      flags: c.flags ?? [],
      timeout: c.timeout,
      matrix, vars, setup: c.setup ?? {}, steps,
    },
  };
}
