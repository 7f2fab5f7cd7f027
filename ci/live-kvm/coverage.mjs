#!/usr/bin/env node
// Turns the xen.gcda a coverage-variant guest brought back into a coverage report of
// arch/x86/kvm/xen.c: runs gcov (the same gcc version that compiled xen.o) in a scratch
// directory laid out like the kernel tree, and writes
//   <out>/xen-c-coverage.json  {"file","kernel","lines","functions","branches","uncovered_functions"}
//   <out>/xen.c.gcov           gcov's annotated source
// and prints one summary line. Also the coverage gate of .ci/run:
//   node coverage.mjs report --notes <dir with xen.gcno, xen.c, gcc-version> --gcda <file> --kernel <release> --out <dir>
//   node coverage.mjs gate --min-lines <percent> <xen-c-coverage.json>
// Exit codes: 0 ok, 1 below the gate, 2 usage or input error.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export class CoverageError extends Error {}

const pct = (c) => (c.total === 0 ? 0 : (100 * c.covered) / c.total);

/** Summarise gcov's JSON (gcov --json-format --stdout) for the source file `file`. */
export function summarise(gcovJson, file, kernel) {
  const entry = gcovJson.files?.find((f) => f.file === file);
  if (!entry) throw new CoverageError(`gcov has no record of ${file} (files: ${(gcovJson.files ?? []).map((f) => f.file).join(', ') || 'none'})`);
  // A line can be listed once per function instantiated on it: a line counts once, covered if any count.
  const lines = new Map();
  let branchesTotal = 0;
  let branchesCovered = 0;
  for (const l of entry.lines ?? []) {
    lines.set(l.line_number, (lines.get(l.line_number) ?? 0) + l.count);
    for (const b of l.branches ?? []) {
      branchesTotal += 1;
      if (b.count > 0) branchesCovered += 1;
    }
  }
  const functions = entry.functions ?? [];
  const uncovered = functions.filter((f) => f.execution_count === 0).map((f) => f.demangled_name ?? f.name);
  return {
    file,
    kernel,
    lines: { covered: [...lines.values()].filter((c) => c > 0).length, total: lines.size },
    functions: { covered: functions.length - uncovered.length, total: functions.length },
    branches: { covered: branchesCovered, total: branchesTotal },
    uncovered_functions: uncovered.sort(),
  };
}

export function summaryLine(label, r) {
  const f = (c) => `${c.covered}/${c.total} (${pct(c).toFixed(1)}%)`;
  return `${label} ${r.file} coverage: lines ${f(r.lines)}, functions ${f(r.functions)}, branches ${f(r.branches)}`;
}

/** The gcov binary of the gcc that wrote the notes: gcov-<major> if present, and its version must match. */
function findGcov(gccVersion) {
  const major = gccVersion.split('.')[0];
  for (const bin of [`gcov-${major}`, 'gcov']) {
    let out;
    try {
      out = execFileSync(bin, ['--version'], { encoding: 'utf8' });
    } catch {
      continue;
    }
    const v = out.split('\n')[0].match(/(\d+\.\d+\.\d+)\s*$/)?.[1];
    if (v === gccVersion) return bin;
  }
  throw new CoverageError(`no gcov of gcc ${gccVersion} (the compiler that built xen.o) on PATH; install gcc-${major}`);
}

/**
 * Run gcov on `source` (a path relative to the tree root, e.g. arch/x86/kvm/xen.c) with the
 * notes and the source from `notesDir` and the counters in `gcda`; write the JSON and the
 * annotated source into `outDir`. Returns the summary.
 */
export function report({ notesDir, gcda, kernel, outDir, source = 'arch/x86/kvm/xen.c' }) {
  const name = basename(source);
  const stem = name.replace(/\.c$/, '');
  for (const f of [`${stem}.gcno`, name, 'gcc-version']) {
    if (!existsSync(join(notesDir, f))) throw new CoverageError(`${join(notesDir, f)} is missing (rebuild the coverage kernel: delete its cache directory)`);
  }
  if (!existsSync(gcda)) throw new CoverageError(`${gcda} is missing (the guest brought no counters back)`);
  const gcov = findGcov(readFileSync(join(notesDir, 'gcc-version'), 'utf8').trim());
  const scratch = mkdtempSync(join(tmpdir(), 'xconf-gcov-'));
  try {
    const objDir = join(scratch, source.slice(0, -name.length));
    mkdirSync(objDir, { recursive: true });
    copyFileSync(join(notesDir, name), join(scratch, source));
    copyFileSync(join(notesDir, `${stem}.gcno`), join(objDir, `${stem}.gcno`));
    copyFileSync(gcda, join(objDir, `${stem}.gcda`));
    const run = (args) => execFileSync(gcov, args, { cwd: scratch, encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
    const json = JSON.parse(run(['--json-format', '--stdout', '-b', '-c', '-o', objDir, source]));
    const summary = summarise(json, source, kernel);
    run(['-b', '-c', '-o', objDir, source]);
    mkdirSync(outDir, { recursive: true });
    copyFileSync(join(scratch, `${name}.gcov`), join(outDir, `${name}.gcov`));
    const out = join(outDir, `${stem}-c-coverage.json`);
    writeFileSync(`${out}.tmp`, `${JSON.stringify(summary, null, 2)}\n`);
    copyFileSync(`${out}.tmp`, out);
    rmSync(`${out}.tmp`);
    return summary;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** The .ci/run gate: null when the line coverage reaches `minLines` percent, else the reason. */
export function gate(summary, minLines) {
  const p = pct(summary.lines);
  return p >= minLines ? null : `${summary.file} line coverage ${p.toFixed(1)}% is below the gate of ${minLines}%`;
}

function main(argv) {
  const [cmd, ...rest] = argv;
  const opts = {};
  const pos = [];
  for (let i = 0; i < rest.length; i++) {
    if (rest[i].startsWith('--')) opts[rest[i].slice(2)] = rest[++i];
    else pos.push(rest[i]);
  }
  if (cmd === 'report') {
    for (const k of ['notes', 'gcda', 'kernel', 'out']) if (!opts[k]) throw new CoverageError(`report: --${k} is required`);
    const s = report({ notesDir: opts.notes, gcda: opts.gcda, kernel: opts.kernel, outDir: opts.out });
    console.log(summaryLine(opts.label ?? `linux-${opts.kernel}`, s));
    return 0;
  }
  if (cmd === 'gate') {
    const min = Number(opts['min-lines']);
    if (!Number.isFinite(min) || pos.length !== 1) throw new CoverageError('usage: coverage.mjs gate --min-lines <percent> <xen-c-coverage.json>');
    if (!existsSync(pos[0])) throw new CoverageError(`${pos[0]} is missing: run the live environment with XCONF_LIVE_COVERAGE first`);
    const s = JSON.parse(readFileSync(pos[0], 'utf8'));
    const why = gate(s, min);
    console.log(summaryLine(`coverage gate (${s.kernel}, min ${min}% lines):`, s));
    if (why) {
      console.error(`live-kvm: coverage gate failed: ${why}`);
      return 1;
    }
    return 0;
  }
  throw new CoverageError('usage: coverage.mjs report|gate ... (see the head of ci/live-kvm/coverage.mjs)');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof CoverageError)) throw e;
    console.error(`live-kvm: coverage: ${e.message}`);
    process.exitCode = 2;
  }
}
