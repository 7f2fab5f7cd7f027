// Loads case files: YAML with positions (LineCounter), no custom tags, bounded
// alias expansion; then check-case.ts checks structure, every op's arguments,
// ranges, the closed vocabularies, memory paths, and the flow of variables.
// Every problem in a file is reported at once as file:line:col.

import { readdirSync, readFileSync, statSync, realpathSync } from 'node:fs';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import { yaml } from './yaml-lazy.js';
import type { Node as YamlNode } from 'yaml';
import type { OpDef, IntArg, Via } from '../ops/types.js';
import type { SuiteProblem } from '../errors.js';
import type { SetupFile } from './schema.js';
import type { VarValue } from './expr.js';
import type { MemoryPath } from './memory-path.js';
import { Locator, type Positions } from './locate.js';
import { contentKey, defaultCache, type ParseCache } from './parse-cache.js';
import { checkCase } from './check-case.js';
import { BAD_ID_CHAR, describeChar } from './case-id.js';

/** Largest case file accepted (bytes). */
export const MAX_FILE_BYTES = 1 << 20;
/** Largest number of alias expansions in one document (billion-laughs guard). */
export const MAX_ALIAS_COUNT = 100;

const UTF8 = new TextDecoder('utf-8', { fatal: true });

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
    const realRoot = realpathSync.native(root);
    const file = (f: string): void => {
      if (!['.yaml', '.yml'].includes(extname(f))) return;
      // A case file must stay inside the suite root it was found under (no symlink escapes).
      const real = realpathSync.native(f);
      if (real !== realRoot && !real.startsWith(realRoot + sep)) {
        problems.push({ file: f, line: 1, col: 1, code: 'OUTSIDE_ROOT', path: '', message: `resolves outside ${p}; case files must live under the suite root` });
        return;
      }
      files.push({ file: f, id: caseId(f, root) });
    };
    // Entry types from readdir; only a symbolic link needs a stat (to follow it).
    const walk = (dir: string): void => {
      const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const e of entries) {
        const f = join(dir, e.name);
        if (e.isSymbolicLink() ? statSync(f).isDirectory() : e.isDirectory()) walk(f);
        else file(f);
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

/** Load every case under `paths`; parsed YAML is cached by content (parse-cache.ts) unless `cache` is null. */
export function loadPaths(paths: string[], opts: { cache?: ParseCache | null } = {}): LoadResult {
  const cache = opts.cache === undefined ? defaultCache() : opts.cache ?? undefined;
  const { files, problems } = discover(paths);
  const cases: LoadedCase[] = [];
  const seen = new Map<string, string>();
  for (const { file, id } of files) {
    const bad = BAD_ID_CHAR.exec(id);
    if (bad) {
      problems.push({ file, line: 1, col: 1, code: 'BAD_ID', path: '', message: `case id '${id}' contains ${describeChar(bad[0])}; KTAP and the filter cannot carry it: rename the file` });
      continue;
    }
    const r = loadFile(file, id, cache);
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

/** Positions for a cached parse: step lines only; any problem sends the file back to the parser. */
function cachedPositions(file: string, stepLines: number[]): Positions {
  const pos = (path: ReadonlyArray<PropertyKey>) => ({ line: path[0] === 'steps' && typeof path[1] === 'number' ? stepLines[path[1]] ?? 1 : 1, col: 1 });
  return { pos, problem: (path, code, message) => ({ file, ...pos(path), code, path: path.map(String).join('.'), message }) };
}

export function loadFile(file: string, id: string, cache?: ParseCache): { case?: LoadedCase; problems: SuiteProblem[] } {
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
    src = UTF8.decode(buf);
  } catch {
    return { problems: [at('ENCODING', 'not valid UTF-8 text')] };
  }
  if (src.includes('\u0000')) {
    const idx = src.indexOf('\u0000');
    const line = src.slice(0, idx).split('\n').length;
    return { problems: [at('ENCODING', 'contains a NUL byte: not a text file', line, idx - src.lastIndexOf('\n', idx - 1))] };
  }
  const key = cache ? contentKey(buf) : '';
  const hit = cache?.get(key);
  if (hit) {
    const r = checkCase(hit.data, cachedPositions(file, hit.stepLines), id, file);
    if (!r.problems.length) return r;
  }
  const { LineCounter, parseDocument } = yaml();
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
    const msg = e.message.split('\n')[0]; // one line: prettyErrors is off
    problems.push(at(code, code === 'YAML_TAG' ? `${msg}: YAML tags are not allowed in case files` : msg, line, col));
  }
  if (problems.length) return { problems };
  // A list or mapping used as a key ({ { cmd: 1 }: 2 }) would be stringified by toJS,
  // with a warning on stderr; no case field is keyed that way.
  const { visit, isCollection, isAlias } = yaml();
  visit(doc, {
    Pair(_k, pair) {
      const k: unknown = pair.key;
      const key = isAlias(k) ? k.resolve(doc) : k;
      if (!isCollection(key)) return undefined;
      // The alias or the collection itself: both are nodes with a range.
      const { line, col } = lc.linePos((k as YamlNode).range?.[0] ?? 0);
      problems.push(at('YAML_KEY', 'a key is a list or mapping; keys are plain names', line, col));
      return visit.SKIP;
    },
  });
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
  const r = checkCase(data, loc, id, file);
  if (cache && r.case) cache.set(key, { data, stepLines: r.case.steps.map((st) => st.line) });
  return r;
}
