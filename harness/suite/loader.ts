// Loads case files: YAML with positions (LineCounter), no custom tags, bounded
// alias expansion; structure checked with zod; then every op's own argument
// schema, the closed vocabularies, memory paths, and the flow of variables.
// Every problem in a file is reported at once as file:line:col.

import { readdirSync, readFileSync, statSync, realpathSync } from 'node:fs';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import { isMap, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { ops } from '../ops/index.js';
import { compileInt, IntArg, type OpDef, type Via } from '../ops/types.js';
import type { SuiteProblem } from '../errors.js';
import { caseSchema, type CaseFile, type SetupFile } from './schema.js';
import { evalExpr, exprVars, type Expr, type VarValue } from './expr.js';
import { constants } from '../ops/constants.js';
import { parseHexPattern, parsePath, pathIsBytes, type MemoryPath } from './memory-path.js';

/** Largest case file accepted (bytes). */
export const MAX_FILE_BYTES = 1 << 20;
/** Largest number of alias expansions in one document (billion-laughs guard). */
export const MAX_ALIAS_COUNT = 100;

export type Expected = { src: string; int?: IntArg; bytes?: Uint8Array } | { list: IntArg[]; src: string };

export interface LoadedStep {
  index: number;
  line: number;
  op: OpDef;
  label: string;
  args: unknown;
  dom?: IntArg;
  vcpu?: IntArg;
  cpl?: IntArg;
  via?: Via;
  expect: {
    ret?: IntArg;
    fault?: string | null;
    out: Array<[string, Expected]>;
    memory: Array<{ path: MemoryPath; expected: Expected }>;
    servedBy?: 'kernel' | 'vmm' | 'model';
    values: Array<[IntArg, IntArg]>;
  };
  save: Array<[string, string]>;
}

export interface LoadedCase {
  id: string;
  file: string;
  description: string;
  spec: string[];
  requires: string[];
  flags: string[];
  timeout?: number;
  matrix: Array<[string, VarValue[]]>;
  vars: Array<[string, IntArg]>;
  setup: SetupFile;
  steps: LoadedStep[];
}

export interface LoadResult {
  cases: LoadedCase[];
  problems: SuiteProblem[];
}

/** Every .yaml/.yml file under the given paths, sorted; ids relative to the nearest `suites/` folder. */
export function discover(paths: string[]): { files: Array<{ file: string; id: string }>; problems: SuiteProblem[] } {
  const files: Array<{ file: string; id: string }> = [];
  const problems: SuiteProblem[] = [];
  for (const p of paths) {
    let st;
    try {
      st = statSync(p);
    } catch {
      problems.push({ file: p, line: 1, col: 1, code: 'NOT_FOUND', path: '', message: 'no such file or directory' });
      continue;
    }
    const root = resolve(st.isDirectory() ? p : dirname(p));
    const realRoot = realpathSync(root);
    const walk = (f: string): void => {
      const s = statSync(f);
      if (s.isDirectory()) {
        for (const e of readdirSync(f).sort()) walk(join(f, e));
      } else if (['.yaml', '.yml'].includes(extname(f))) {
        // A case file must stay inside the suite root it was found under (no symlink escapes).
        const real = realpathSync(f);
        if (real !== realRoot && !real.startsWith(realRoot + sep)) {
          problems.push({ file: f, line: 1, col: 1, code: 'OUTSIDE_ROOT', path: '', message: `resolves outside ${p}; case files must live under the suite root` });
          return;
        }
        files.push({ file: f, id: caseId(f, root) });
      }
    };
    if (st.isDirectory()) walk(p);
    else if (!['.yaml', '.yml'].includes(extname(p))) {
      problems.push({ file: p, line: 1, col: 1, code: 'NOT_YAML', path: '', message: 'case files end in .yaml or .yml' });
    } else files.push({ file: p, id: caseId(p, root) });
  }
  return { files, problems };
}

function caseId(file: string, root: string): string {
  const abs = resolve(file);
  const parts = abs.split(sep);
  const at = parts.lastIndexOf('suites');
  const base = at >= 0 && at < parts.length - 1 ? parts.slice(0, at + 1).join(sep) : root;
  const rel = relative(base, abs).split(sep).join('/');
  return rel.replace(/\.ya?ml$/, '') || basename(abs);
}

/** Characters a case id or a variant name may not contain: KTAP ends a test name at `#` or whitespace. */
export const BAD_ID_CHAR = /[#\s]/;

function describeChar(c: string): string {
  return c === '#' ? "'#'" : c === ' ' ? 'a space' : `whitespace (U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')})`;
}

export function loadPaths(paths: string[]): LoadResult {
  const { files, problems } = discover(paths);
  const cases: LoadedCase[] = [];
  const seen = new Map<string, string>();
  for (const { file, id } of files) {
    const bad = BAD_ID_CHAR.exec(id);
    if (bad) {
      problems.push({ file, line: 1, col: 1, code: 'BAD_ID', path: '', message: `case id '${id}' contains ${describeChar(bad[0])}; KTAP and the filter cannot carry it: rename the file` });
      continue;
    }
    const r = loadFile(file, id);
    problems.push(...r.problems);
    if (r.case) {
      const prev = seen.get(id);
      if (prev) {
        problems.push({ file, line: 1, col: 1, code: 'DUPLICATE_ID', path: '', message: `case id '${id}' is also used by ${prev}` });
        continue;
      }
      seen.set(id, file);
      cases.push(r.case);
    }
  }
  return { cases, problems };
}

class Locator {
  constructor(private readonly doc: Document, private readonly lc: LineCounter, private readonly file: string) {}

  /** Position of the node at `path` (or of the deepest existing parent); `key` points at a map key. */
  pos(path: ReadonlyArray<PropertyKey>, key?: string): { line: number; col: number } {
    let node: unknown = this.doc.contents;
    let offset = (node as YamlNode | null)?.range?.[0] ?? 0;
    for (const k of path) {
      if (isMap(node)) {
        const pair = node.items.find((it) => (it.key as { value?: unknown } | null)?.value === k);
        if (!pair) break;
        node = pair.value;
        const r = (pair.value as YamlNode | null)?.range ?? (pair.key as YamlNode | null)?.range;
        if (r) offset = r[0];
      } else if (isSeq(node) && typeof k === 'number' && node.items[k]) {
        node = node.items[k];
        const r = (node as YamlNode).range;
        if (r) offset = r[0];
      } else break;
    }
    if (key !== undefined && isMap(node)) {
      const pair = node.items.find((it) => (it.key as { value?: unknown } | null)?.value === key);
      const r = (pair?.key as YamlNode | null)?.range;
      if (r) offset = r[0];
    }
    return this.lc.linePos(offset);
  }

  problem(path: ReadonlyArray<PropertyKey>, code: string, message: string, key?: string): SuiteProblem {
    const { line, col } = this.pos(path, key);
    const dotted = [...path, ...(key !== undefined ? [key] : [])].map(String).join('.');
    return { file: this.file, line, col, code, path: dotted, message };
  }
}

function zodProblems(loc: Locator, issues: z.core.$ZodIssue[], prefix: PropertyKey[] = []): SuiteProblem[] {
  const out: SuiteProblem[] = [];
  for (const is of issues) {
    const path = [...prefix, ...is.path];
    switch (is.code) {
      case 'unrecognized_keys':
        for (const k of is.keys) out.push(loc.problem(path, 'UNKNOWN_KEY', 'unknown key', k));
        break;
      case 'invalid_type':
        out.push(loc.problem(path, is.input === undefined ? 'MISSING' : 'TYPE', is.input === undefined ? `required (${is.expected})` : `expected ${is.expected === 'bigint' ? 'integer' : is.expected}`));
        break;
      case 'invalid_union': {
        // Report the most specific branch error when every branch failed on the same spot.
        const flat = is.errors.flat();
        const values = flat.flatMap((e) => (e.code === 'invalid_value' ? e.values.map(String) : []));
        if (values.length && values.length === flat.reduce((n, e) => n + (e.code === 'invalid_value' ? e.values.length : 1), 0)) {
          out.push(loc.problem(path, 'BAD_VALUE', `expected one of ${values.join(', ')}`));
        } else {
          const types = [...new Set(flat.map((e) => (e.code === 'invalid_type' ? (e.expected === 'bigint' ? 'integer' : e.expected) : e.message)))];
          out.push(loc.problem(path, 'TYPE', `expected ${types.join(' or ')}`));
        }
        break;
      }
      case 'invalid_value':
        out.push(loc.problem(path, 'BAD_VALUE', `expected one of ${is.values.map(String).join(', ')}`));
        break;
      case 'too_small':
      case 'too_big':
        out.push(loc.problem(path, 'RANGE', is.message));
        break;
      case 'invalid_format':
        out.push(loc.problem(path, 'BAD_FORMAT', is.message));
        break;
      case 'custom':
        out.push(loc.problem(path, String((is.params as { code?: string } | undefined)?.code ?? 'INVALID'), is.message));
        break;
      default:
        out.push(loc.problem(path, 'INVALID', is.message));
    }
  }
  return out;
}

/** Collect IntArgs in a validated value, with their paths. */
function intArgs(v: unknown, path: PropertyKey[], acc: Array<{ arg: IntArg; path: PropertyKey[] }> = []) {
  if (v instanceof IntArg) acc.push({ arg: v, path });
  else if (Array.isArray(v)) v.forEach((x, i) => intArgs(x, [...path, i], acc));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) intArgs(x, [...path, k], acc);
  return acc;
}

function compileExpected(raw: unknown, bytes: boolean): Expected | { error: { code: string; message: string } } {
  if (Array.isArray(raw)) {
    const list: IntArg[] = [];
    for (const x of raw) {
      const r = compileInt(x);
      if (!(r instanceof IntArg)) return { error: r };
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
    if (r.code === 'UNKNOWN_CONSTANT' && /^-?[A-Z][A-Z0-9_]*$/.test(raw.trim())) return { error: r };
    return { src };
  }
  const r = compileInt(raw);
  if (!(r instanceof IntArg)) return { error: r };
  return { src, int: r };
}

export function loadFile(file: string, id: string): { case?: LoadedCase; problems: SuiteProblem[] } {
  const problems: SuiteProblem[] = [];
  const at = (code: string, message: string, line = 1, col = 1): SuiteProblem => ({ file, line, col, code, path: '', message });
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (e) {
    return { problems: [at('READ', `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)] };
  }
  if (buf.length > MAX_FILE_BYTES) return { problems: [at('TOO_LARGE', `file is ${buf.length} bytes; the limit is ${MAX_FILE_BYTES}`)] };
  let src: string;
  try {
    src = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    return { problems: [at('ENCODING', 'not valid UTF-8 text')] };
  }
  if (src.includes('\u0000')) {
    const idx = src.indexOf('\u0000');
    const line = src.slice(0, idx).split('\n').length;
    return { problems: [at('ENCODING', 'contains a NUL byte: not a text file', line, idx - src.lastIndexOf('\n', idx - 1))] };
  }
  const lc = new LineCounter();
  const doc = parseDocument(src, {
    lineCounter: lc,
    schema: 'core',
    customTags: [],
    intAsBigInt: true,
    uniqueKeys: true,
    prettyErrors: false,
    strict: true,
  });
  for (const e of [...doc.errors, ...doc.warnings]) {
    const { line, col } = lc.linePos(e.pos[0]);
    const code = e.code === 'DUPLICATE_KEY' ? 'DUPLICATE_KEY' : e.code === 'TAG_RESOLVE_FAILED' ? 'YAML_TAG' : 'YAML_SYNTAX';
    const msg = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
    problems.push(at(code, code === 'YAML_TAG' ? `${msg}: YAML tags are not allowed in case files` : msg, line, col));
  }
  if (problems.length) return { problems };
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (e) {
    return { problems: [at('YAML_ALIAS', `${(e as Error).message.split('\n')[0]} (at most ${MAX_ALIAS_COUNT} alias expansions)`)] };
  }
  const loc = new Locator(doc, lc, file);
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    return { problems: [loc.problem([], 'TYPE', 'a case file is a mapping with description and steps')] };
  }
  const parsed = caseSchema.safeParse(data);
  if (!parsed.success) return { problems: zodProblems(loc, parsed.error.issues) };
  const c: CaseFile = parsed.data;

  // Variables: matrix parameters and `vars` first, then each step's `save`.
  const defined = new Set<string>();
  const matrix: Array<[string, VarValue[]]> = [];
  for (const [k, vals] of Object.entries(c.matrix ?? {})) {
    defined.add(k);
    vals.forEach((v, i) => {
      const bad = typeof v === 'string' ? BAD_ID_CHAR.exec(v) : null;
      if (bad) problems.push(loc.problem(['matrix', k, i], 'BAD_ID', `matrix value '${v}' contains ${describeChar(bad[0])}; it becomes part of the variant name, which KTAP cannot carry`));
    });
    // A string that names constants or is an expression (HYPERVISOR_iret, 1 << 4) is a number;
    // any other string (intel, fifo) stays text.
    matrix.push([k, vals.map((v) => {
      if (typeof v !== 'string') return BigInt(v);
      const r = compileInt(v);
      return r instanceof IntArg && exprVars(r.expr).length === 0 ? evalExpr(r.expr, constants, new Map()) : v;
    })]);
  }
  const useVars = (args: Array<{ arg: IntArg; path: PropertyKey[] }>) => {
    for (const { arg, path } of args) {
      for (const v of exprVars(arg.expr)) {
        if (!defined.has(v)) problems.push(loc.problem(path, 'UNDEFINED_VAR', `$${v} is not defined before this point (define it in matrix, vars, or an earlier step's save)`));
      }
    }
  };
  const vars: Array<[string, IntArg]> = [];
  for (const [k, arg] of Object.entries(c.vars ?? {})) {
    useVars([{ arg, path: ['vars', k] }]);
    defined.add(k);
    vars.push([k, arg]);
  }
  useVars(intArgs(c.setup ?? {}, ['setup']));

  const steps: LoadedStep[] = [];
  c.steps.forEach((s, i) => {
    const base: PropertyKey[] = ['steps', i];
    const line = loc.pos(base).line;
    const op = ops.get(s.op);
    if (!op) {
      const near = [...ops.keys()].filter((n) => n.split('.')[0] === s.op.split('.')[0]);
      const hint = near.length ? ` (${s.op.split('.')[0]} ops: ${near.join(', ')})` : ` (see \`xconf list --ops\`)`;
      problems.push(loc.problem([...base, 'op'], 'UNKNOWN_OP', `unknown op '${s.op}'${hint}`));
      return;
    }
    const a = op.args.safeParse(s.args ?? {});
    if (!a.success) {
      problems.push(...zodProblems(loc, a.error.issues, [...base, 'args']));
      return;
    }
    useVars(intArgs(a.data, [...base, 'args']));
    useVars(intArgs({ dom: s.dom, vcpu: s.vcpu, cpl: s.cpl }, base));
    const exp = s.expect ?? {};
    if (exp.ret) useVars([{ arg: exp.ret, path: [...base, 'expect', 'ret'] }]);
    const out: Array<[string, Expected]> = [];
    for (const [k, raw] of Object.entries(exp.out ?? {})) {
      const p = [...base, 'expect', 'out', k];
      if (!op.out?.includes(k)) {
        problems.push(loc.problem([...base, 'expect', 'out'], 'UNKNOWN_OUT', `op ${op.name} has no OUT field '${k}'${op.out?.length ? ` (fields: ${op.out.join(', ')})` : ''}`, k));
        continue;
      }
      const e = compileExpected(raw, false);
      if ('error' in e) { problems.push(loc.problem(p, e.error.code, e.error.message)); continue; }
      useVars('list' in e ? e.list.map((arg) => ({ arg, path: p })) : e.int ? [{ arg: e.int, path: p }] : []);
      out.push([k, e]);
    }
    const memory: LoadedStep['expect']['memory'] = [];
    for (const [text, raw] of Object.entries(exp.memory ?? {})) {
      let path: MemoryPath;
      try {
        path = parsePath(text);
      } catch (e) {
        problems.push(loc.problem([...base, 'expect', 'memory'], 'BAD_PATH', (e as Error).message, text));
        continue;
      }
      const ex: Expr[] = path.kind === 'field' ? [path.areaIndex, path.fieldIndex].filter((x): x is Expr => !!x) : [path.addr];
      useVars(ex.map((expr) => ({ arg: new IntArg(expr, text), path: [...base, 'expect', 'memory', text] })));
      const e = compileExpected(raw, pathIsBytes(path));
      if ('error' in e) { problems.push(loc.problem([...base, 'expect', 'memory', text], e.error.code, e.error.message)); continue; }
      if (!('list' in e) && !e.int && !e.bytes) {
        problems.push(loc.problem([...base, 'expect', 'memory', text], 'BAD_VALUE', `'${e.src}' is neither a number nor an expression`));
        continue;
      }
      if ('int' in e && e.int) useVars([{ arg: e.int, path: [...base, 'expect', 'memory', text] }]);
      memory.push({ path, expected: e });
    }
    const save: Array<[string, string]> = [];
    for (const [name, from] of Object.entries(s.save ?? {})) {
      if (from !== 'ret' && !op.out?.includes(from)) {
        problems.push(loc.problem([...base, 'save', name], 'UNKNOWN_OUT', `cannot save '${from}': op ${op.name} gives ret${op.out?.length ? `, ${op.out.join(', ')}` : ''}`));
        continue;
      }
      save.push([name, from]);
    }
    for (const [name] of save) defined.add(name);
    const values: Array<[IntArg, IntArg]> = [];
    for (const [src, raw] of Object.entries(exp.values ?? {})) {
      const p = [...base, 'expect', 'values'];
      const k = compileInt(src);
      const w = compileInt(raw);
      if (!(k instanceof IntArg)) { problems.push(loc.problem(p, k.code, k.message, src)); continue; }
      if (!(w instanceof IntArg)) { problems.push(loc.problem([...p, src], w.code, w.message)); continue; }
      useVars([{ arg: k, path: p }, { arg: w, path: [...p, src] }]);
      values.push([k, w]);
    }
    steps.push({
      index: i, line, op, label: s.name ?? op.name, args: a.data,
      dom: s.dom, vcpu: s.vcpu, cpl: s.cpl, via: s.via,
      expect: { ret: exp.ret, fault: exp.fault, out, memory, servedBy: exp.served_by, values },
      save,
    });
  });
  if (problems.length) return { problems };
  return {
    problems,
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
