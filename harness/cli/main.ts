// xconf command line. The one error boundary of the program and the only place
// that calls process.exit. Exit codes: 0 no failures, 1 a case failed,
// 2 usage or suite error (nothing ran), 3 driver/environment error, 4 all skipped.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DriverError, EXIT, SuiteError, UsageError, formatProblem, type ExitCode } from '../errors.js';
import { createDriver, TARGETS } from '../drivers/index.js';
import { loadPaths } from '../suite/loader.js';
import { planOrThrow, parseShard } from '../runner/plan.js';
import { requirements, resolveSetup } from '../runner/run-case.js';
import { runPlan } from '../runner/run.js';
import { counts, type DiffSummary, type RunSummary } from '../runner/results.js';
import { diffCounts, runDifferential } from '../runner/differential.js';
import { junitXml } from '../report/junit.js';
import { ktap } from '../report/ktap.js';
import { consoleSummary } from '../report/console.js';
import { writeAtomic } from '../report/atomic-write.js';
import { listConstants, listOps } from '../suite/listing.js';
import { CAPABILITIES } from '../suite/vocabulary.js';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Minimum time between progress rewrites of the reports during a run. */
const PROGRESS_INTERVAL_MS = 250;

const HELP: Record<string, string> = {
  main: `xconf ${VERSION}: conformance and fuzz harness for Xen-on-KVM

Usage: xconf <command> [options]

Commands:
  run [PATHS...]       run cases (default: suites/) against a target
  validate PATHS...    load and check case files without running them
  list [PATHS...]      list cases, their requirements, and whether the target can run them

Options: --help, --version. 'xconf <command> --help' for a command's options.
Exit codes: 0 no failures (skips allowed), 1 a case failed (or disagreed with the
--diff-against reference), 2 usage or suite error, 3 driver/environment error,
4 everything skipped.`,
  run: `Usage: xconf run [PATHS...] [options]

  --target=NAME     ${TARGETS.join(' | ')} (default: model, the reference model)
  --filter=PATTERN  run only matching cases: plain text selects ids/variant names
                    containing it ('xen-version'); with a wildcard it must match the
                    whole id or variant name: * any text (across /), ? one character,
                    {a,b} alternatives, \ makes the next character plain
                    (e.g. '*xen-version*', 'hypercall/xen-version-version[mode=32]').
                    Matching nothing exits 2
  --shard=K/N       run the K-th of N deterministic shards
  --junit=PATH      JUnit XML output (default: reports/junit.xml)
  --ktap=PATH       also write KTAP version 1 output
  --timeout=SECONDS per-case time limit (default 30; a case's own timeout wins)
  --seed=SEED       recorded in reports (the model is deterministic)
  --isolate         run every case in its own child process (default for --target=kvm)
  --in-process      run kvm cases in this process (faster; a crash ends the run)
  --diff-against=NAME
                    also run every case that ran on the target on reference target NAME
                    (${TARGETS.join(' | ')}; same variant and seed) and compare status, ret,
                    fault and expected OUT values; disagreements are listed, reported in
                    the 'xconf.differential' JUnit suite, and exit 1
  --verbose         print every case, not only failures`,
  validate: `Usage: xconf validate PATHS...

Checks every case file and prints one line per problem as file:line:col: CODE path: message.
Exit 0 when all files are valid, 2 otherwise.`,
  list: `Usage: xconf list [PATHS...] [--target=NAME] [--ops] [--capabilities] [--constants [PREFIX]]

Lists case ids with their requirements and whether the target can run them.
--ops lists the op vocabulary with each op's arguments and their types;
--capabilities the capability vocabulary; --constants every named constant
(or those starting with PREFIX, e.g. RUNSTATE_) with its value.`,
};

type OptionSpec = Record<string, { type: 'string' | 'boolean'; default?: string | boolean }>;

function parse(argv: string[], options: OptionSpec): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options: { help: { type: 'boolean' }, ...options }, allowPositionals: true, strict: true });
    return { values: r.values as Record<string, string | boolean | undefined>, positionals: r.positionals };
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split('\n')[0]} (see --help)`);
  }
}

function loadOrThrow(paths: string[]) {
  const r = loadPaths(paths);
  if (r.problems.length) throw new SuiteError(r.problems);
  return r.cases;
}

async function cmdRun(argv: string[]): Promise<ExitCode> {
  const { values: v, positionals } = parse(argv, {
    target: { type: 'string', default: 'model' }, filter: { type: 'string' }, shard: { type: 'string' },
    junit: { type: 'string', default: 'reports/junit.xml' }, ktap: { type: 'string' },
    timeout: { type: 'string' }, seed: { type: 'string', default: '0' }, verbose: { type: 'boolean' },
    isolate: { type: 'boolean' }, 'in-process': { type: 'boolean' }, 'diff-against': { type: 'string' },
  });
  if (v.help) return help('run');
  const against = v['diff-against'] as string | undefined;
  if (against !== undefined && !(TARGETS as readonly string[]).includes(against)) {
    throw new UsageError(`--diff-against: unknown target '${against}' (targets: ${TARGETS.join(', ')})`);
  }
  const timeout = v.timeout === undefined ? undefined : Number(v.timeout);
  if (timeout !== undefined && !(timeout > 0)) throw new UsageError(`--timeout takes a positive number of seconds (got '${v.timeout}')`);
  const shard = v.shard ? parseShard(String(v.shard)) : undefined;
  const paths = positionals.length ? positionals : ['suites'];
  const planned = planOrThrow(loadOrThrow(paths), { paths, filter: v.filter as string | undefined, shard });
  const driver = await createDriver(String(v.target));
  // The reference is created and probed before anything runs, so a reference
  // that cannot work (no /dev/kvm) stops the run up front.
  const reference = against === undefined ? undefined : await createDriver(against);
  await reference?.probe();
  const persist = (run: RunSummary) => {
    writeAtomic(String(v.junit), junitXml(run));
    if (v.ktap) writeAtomic(String(v.ktap), ktap(run));
  };
  // Reports are rewritten (atomically) after every case, so a run killed half
  // way still leaves well-formed files holding every finished case.
  const caps = await driver.probe();
  const started = new Date().toISOString();
  const partial = (done: RunSummary['results']): RunSummary => ({
    target: driver.name, seed: String(v.seed), capabilities: [...caps.has].sort(), properties: { ...caps.properties },
    results: done, startedAt: started, durationMs: 0,
  });
  persist(partial([]));
  // Model cases finish in microseconds: rewrite at most every 250 ms, so a
  // kill loses at most the last 250 ms of cases and the run stays quick. Slow
  // (kvm) cases take longer than that, so each one is persisted as it ends.
  let last = performance.now();
  const run = await runPlan(planned, driver, {
    timeoutSeconds: timeout, seed: String(v.seed),
    // kvm cases run in a child process each, so a crash costs one case.
    isolate: !v['in-process'] && (!!v.isolate || driver.name === 'kvm'),
    onResult: (_r, done) => {
      if (performance.now() - last < PROGRESS_INTERVAL_MS) return;
      persist(partial(done));
      last = performance.now();
    },
  });
  persist(run);
  let diff: DiffSummary | undefined;
  if (reference) {
    last = performance.now();
    diff = await runDifferential(planned, run.results, driver.name, reference, {
      timeoutSeconds: timeout, seed: String(v.seed),
      // Model references run in this process (fast); a kvm reference is isolated like a kvm target.
      isolate: !v['in-process'] && (!!v.isolate || reference.name === 'kvm'),
      onProgress: (soFar) => {
        if (performance.now() - last < PROGRESS_INTERVAL_MS) return;
        persist({ ...run, differential: soFar() });
        last = performance.now();
      },
    });
    run.differential = diff;
    persist(run);
  }
  process.stdout.write(consoleSummary(run, { verbose: !!v.verbose }));
  const c = counts(run.results);
  if (c.fail + c.error > 0) return EXIT.failed;
  // A disagreement with the reference is a failure even if every case passed on the target.
  if (diff && diffCounts(diff).disagree > 0) return EXIT.failed;
  if (c.total > 0 && c.skip === c.total) return EXIT.allSkipped;
  return EXIT.ok;
}

function cmdValidate(argv: string[]): ExitCode {
  const { values: v, positionals } = parse(argv, {});
  if (v.help) return help('validate');
  if (!positionals.length) throw new UsageError('validate needs at least one path (see --help)');
  const r = loadPaths(positionals);
  if (r.problems.length) throw new SuiteError(r.problems);
  planOrThrow(r.cases, { paths: positionals });
  process.stdout.write(`${r.cases.length} cases valid\n`);
  return EXIT.ok;
}

async function cmdList(argv: string[]): Promise<ExitCode> {
  const { values: v, positionals } = parse(argv, {
    target: { type: 'string', default: 'model' }, ops: { type: 'boolean' }, capabilities: { type: 'boolean' }, constants: { type: 'boolean' },
  });
  if (v.help) return help('list');
  if (v.ops) return write(listOps());
  if (v.constants) return write(listConstants(positionals[0]));
  if (v.capabilities) {
    for (const [k, d] of Object.entries(CAPABILITIES).sort()) process.stdout.write(`${k.padEnd(22)} ${d}\n`);
    return EXIT.ok;
  }
  const paths = positionals.length ? positionals : ['suites'];
  const cases = loadOrThrow(paths);
  const caps = await (await createDriver(String(v.target))).probe();
  for (const pc of planOrThrow(cases, { paths })) {
    let line: string;
    try {
      const vars = new Map(pc.variant.bindings);
      const req = requirements(pc.case, resolveSetup(pc.case, vars));
      const missing = req.filter((r) => !caps.has.has(r));
      line = `${pc.name}  requires: ${req.join(' ')}  ${missing.length ? `skip (missing ${missing.join(' ')})` : 'runnable'}`;
    } catch (e) {
      line = `${pc.name}  (setup depends on run-time values: ${(e as Error).message})`;
    }
    process.stdout.write(line + '\n');
  }
  return EXIT.ok;
}

function write(text: string): ExitCode {
  process.stdout.write(text);
  return EXIT.ok;
}

function help(cmd: string): ExitCode {
  process.stdout.write(HELP[cmd] + '\n');
  return EXIT.ok;
}

export async function main(argv: string[]): Promise<ExitCode> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      return help('main');
    case '--version':
    case '-V':
      process.stdout.write(`${VERSION}\n`);
      return EXIT.ok;
    case 'run':
      return cmdRun(rest);
    case 'validate':
      return cmdValidate(rest);
    case 'list':
      return cmdList(rest);
  }
  throw new UsageError(`unknown command '${cmd}' (commands: run, validate, list; see --help)`);
}

/** Map any error to one clear line on stderr and an exit code; never a stack trace. */
export function report(e: unknown): ExitCode {
  if (e instanceof SuiteError) {
    process.stderr.write(e.problems.map(formatProblem).join('\n') + '\n');
    return EXIT.usage;
  }
  if (e instanceof UsageError) {
    process.stderr.write(`xconf: ${e.message}\n`);
    return EXIT.usage;
  }
  if (e instanceof DriverError) {
    const extra = [e.code, e.syscall, e.errno !== undefined ? `errno ${e.errno}` : undefined].filter(Boolean).join(', ');
    process.stderr.write(`xconf: ${e.message}${extra ? ` (${extra})` : ''}\n`);
    return EXIT.environment;
  }
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err.code === 'string' && typeof err.syscall === 'string') {
    process.stderr.write(`xconf: ${err.syscall} ${err.path ?? ''}: ${err.code}\n`);
    return EXIT.environment;
  }
  process.stderr.write(`xconf: internal error: ${(e as Error)?.message ?? String(e)} (please report this with the command line)\n`);
  return EXIT.environment;
}

const isMain = process.argv[1] && import.meta.url.endsWith('/cli/main.js');
if (isMain) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e) => { process.exitCode = report(e); },
  );
}
