// Known divergences: real implementations that differ from Xen, on purpose or
// by bug, listed in expectations files so that a run on them is honest. A case
// an entry names that fails (or errors) as the entry says is reported as a
// known divergence ('xfail'), not a failure; an entry whose case now passes, or
// that matches no case at all, fails the run so the list never goes stale.
//
//   # expectations/kvm-6.1.yaml
//   target: kvm            # the target the file is about
//   version: "6.1"         # optional: applies when the target's version is this series
//   divergences:
//     - id: "sched/poll-*[mode=32]"
//       status: fail       # fail | error
//       reason: a 32-bit SCHEDOP_poll is answered as SCHEDOP_yield
//       where: arch/x86/kvm/xen.c kvm_xen_schedop_poll
//       until: "6.2"       # optional: the version that fixes it
//
// `id` is a glob over case names (`id[variant]`) or ids: `*` matches any run of
// characters including '/', `?` one character; everything else, brackets too,
// is literal.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LineCounter, parseDocument, isMap, isSeq, type Node } from 'yaml';
import { UsageError } from '../errors.js';
import type { CaseResult, Divergence } from '../runner/results.js';

export interface ExpectationEntry {
  pattern: string;
  match: (name: string, id: string) => boolean;
  expected: 'fail' | 'error';
  reason: string;
  where: string;
  until?: string;
  /** file:line of the entry. */
  source: string;
}

export interface ExpectationFile {
  file: string;
  target: string;
  version?: string;
  entries: ExpectationEntry[];
}

/** Compiles an expectations glob: '*' any run (crossing '/'), '?' one character, the rest literal. */
export function compileGlob(pattern: string): RegExp {
  let re = '';
  for (const ch of pattern) {
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else re += ch.replace(/[.+^${}()|[\]\\/-]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's');
}

const FIELDS = ['id', 'status', 'reason', 'where', 'until'];

/** Reads and checks one expectations file; every problem as `file:line:col: message`, all at once. */
export function loadExpectations(file: string): ExpectationFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`--expect: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const lc = new LineCounter();
  // prettyErrors off: one-line messages, placed by the line counter like every other problem.
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
  const problems: string[] = [];
  const at = (n: Node | null | undefined, msg: string) => {
    const pos = lc.linePos(n?.range?.[0] ?? 0);
    problems.push(`${file}:${pos.line}:${pos.col}: ${msg}`);
  };
  for (const e of doc.errors) {
    const pos = lc.linePos(e.pos[0]);
    problems.push(`${file}:${pos.line}:${pos.col}: ${e.message}`);
  }
  if (problems.length) throw new UsageError(problems.join('\n'));
  const root = doc.contents;
  if (!isMap(root)) throw new UsageError(`${file}:1:1: an expectations file is a mapping with target, version (optional) and divergences`);
  const str = (n: unknown) => (n && typeof (n as { value?: unknown }).value === 'string' ? (n as { value: string }).value : undefined);
  const out: ExpectationFile = { file, target: '', entries: [] };
  for (const pair of root.items) {
    const key = str(pair.key);
    const val = pair.value as Node | null;
    if (key === 'target' || key === 'version') {
      const v = str(val);
      if (!v) at(val ?? (pair.key as Node), `${key} must be a string: quote versions ("6.10"; unquoted, 6.10 is the number 6.1)`);
      else if (key === 'target') out.target = v;
      else out.version = v;
    } else if (key === 'divergences') {
      if (!isSeq(val)) { at(val ?? (pair.key as Node), 'divergences must be a list of entries'); continue; }
      for (const item of val.items as Node[]) {
        if (!isMap(item)) { at(item, 'each divergence is a mapping {id, status, reason, where, until}'); continue; }
        const f: Record<string, string> = {};
        const seen = new Set<string>();
        for (const p of item.items) {
          const k = str(p.key) ?? '';
          seen.add(k);
          const v = str(p.value);
          if (!FIELDS.includes(k)) at(p.key as Node, `unknown field '${k}' (fields: ${FIELDS.join(', ')})`);
          else if (v === undefined || v === '') at((p.value as Node) ?? (p.key as Node), `${k} must be a non-empty string${k === 'until' ? ' (quote versions: "6.2")' : ''}`);
          else f[k] = v;
        }
        for (const k of ['id', 'status', 'reason', 'where']) if (!seen.has(k)) at(item, `missing '${k}'`);
        if (f.status && f.status !== 'fail' && f.status !== 'error') at(item, `status must be fail or error (got '${f.status}')`);
        if (f.id && /[\s#]/.test(f.id)) at(item, `id '${f.id}' holds whitespace or '#', which no case id can`);
        if (f.id && f.status && f.reason && f.where) {
          const re = compileGlob(f.id);
          const pos = lc.linePos(item.range?.[0] ?? 0);
          out.entries.push({
            pattern: f.id, match: (name, id) => re.test(name) || re.test(id), expected: f.status as 'fail' | 'error',
            reason: f.reason, where: f.where, until: f.until, source: `${file}:${pos.line}`,
          });
        }
      }
    } else at(pair.key as Node, `unknown key '${key}' (keys: target, version, divergences)`);
  }
  if (!out.target && !problems.length) at(root, "missing 'target' (the target the divergences are about, e.g. kvm)");
  if (problems.length) throw new UsageError(problems.join('\n'));
  return out;
}

/** Numeric comparison of dotted versions ("6.12.117" vs "6.2"): negative, 0, positive. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/).map((x) => parseInt(x, 10));
  const pb = b.split(/[.-]/).map((x) => parseInt(x, 10));
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = Number.isNaN(pa[i]) ? 0 : pa[i];
    const y = Number.isNaN(pb[i]) ? 0 : pb[i];
    if (x !== y) return x - y;
  }
  return 0;
}

/** The version a target reports (a kernel release for kvm), or undefined. */
export function targetVersion(properties: Readonly<Record<string, string>>): string | undefined {
  return properties.kernel ?? properties.xen_version ?? properties.version;
}

/**
 * One implementation a run puts under test, with its version. A target can
 * stack several: the qemu target is QEMU's Xen emulation on a KVM kernel, so
 * the kernel's known divergences (expectations/kvm*.yaml) apply to its runs
 * too. An inherited layer's entries mark matching failures as known but are
 * not checked for staleness there: a kernel bug QEMU never reaches (or hides)
 * passes on qemu, and its own target's runs keep its entries honest.
 */
export interface Layer {
  target: string;
  version?: string;
  inherited?: boolean;
}

/** The layers a target's run tests, from the properties its probe reported. */
export function targetLayers(target: string, properties: Readonly<Record<string, string>>): Layer[] {
  if (target === 'qemu') {
    return [{ target, version: properties.qemu_version }, { target: 'kvm', version: properties.kernel, inherited: true }];
  }
  return [{ target, version: targetVersion(properties) }];
}

/** Whether a file speaks about this target at this version (same series: 6.1 covers 6.1.192, not 6.12). */
export function fileApplies(f: ExpectationFile, target: string, version: string | undefined): boolean {
  if (f.target !== target) return false;
  if (f.version === undefined) return true;
  if (version === undefined) return false;
  return version === f.version || version.startsWith(`${f.version}.`) || version.startsWith(`${f.version}-`);
}

/**
 * The expectations files `--expect=auto` picks for each layer:
 * expectations/<target>.yaml and expectations/<target>-<major.minor>.yaml under
 * `dir`, when they exist.
 */
export function autoExpectationFiles(dir: string, layers: Layer[]): string[] {
  return layers.flatMap(({ target, version }) => {
    const names = [`${target}.yaml`];
    const series = version && /^(\d+\.\d+)/.exec(version)?.[1];
    if (series) names.push(`${target}-${series}.yaml`);
    return names.map((n) => join(dir, n)).filter((p) => existsSync(p));
  });
}

export interface Applied {
  results: CaseResult[];
  /** One line per stale entry (now passes / matches nothing): each fails the run. */
  problems: string[];
}

/**
 * Applies the files that concern these layers to a run's results; the first
 * layer's entries are tried first. `known` is every case name and id the
 * suites hold (before filtering), so an entry for a case outside this run's
 * filter is not called stale; without it (a run of part of the tree) entries
 * that match nothing are not checked. Inherited layers are never stale here.
 */
export function applyExpectations(
  files: ExpectationFile[], layers: Layer[],
  results: CaseResult[], known?: { names: Iterable<string>; ids: Iterable<string> },
): Applied {
  const entries = layers.flatMap((l) => files.filter((f) => fileApplies(f, l.target, l.version)).flatMap((f) => f.entries)
    .filter((e) => !(e.until && l.version && compareVersions(l.version, e.until) >= 0))
    .map((e) => ({ e, layer: l })));
  const problems: string[] = [];
  const out = results.map((r) => {
    const hit = entries.find((x) => x.e.match(r.name, r.id));
    if (!hit) return r;
    const { e, layer } = hit;
    if (r.status === e.expected) {
      const divergence: Divergence = { expected: e.expected, reason: e.reason, where: e.where, until: e.until, source: e.source };
      return { ...r, status: 'xfail' as const, divergence };
    }
    if (r.status === 'pass' && !layer.inherited) {
      problems.push(`${e.source}: known divergence '${e.pattern}' now passes as ${r.name} on ${layer.target}${layer.version ? ` ${layer.version}` : ''}: remove the entry (fixed upstream?)`);
    }
    return r;
  });
  if (!known) return { results: out, problems };
  const names = [...known.names];
  const ids = [...known.ids];
  for (const { e, layer } of entries) {
    if (layer.inherited) continue;
    if (!names.some((n) => e.match(n, '')) && !ids.some((i) => e.match('', i))) {
      problems.push(`${e.source}: known divergence '${e.pattern}' matches no case: remove the entry or fix its id`);
    }
  }
  return { results: out, problems };
}
