// `xconf run`: load, plan, run on a target (optionally compared with a
// reference), apply known divergences, and write the reports. Reports are
// cleared and locked before anything runs, rewritten atomically as cases end
// (marked as in progress), and written whole at the end; a signal, the death of
// the parent process or --bail ends the run between cases with every report
// marked as partial.
import { sep } from 'node:path';
import { EXIT, UsageError, type ExitCode } from '../errors.js';
import { createDriver, TARGETS } from '../drivers/index.js';
import { loadPaths } from '../suite/loader.js';
import { SuiteError } from '../errors.js';
import { plan, planOrThrow, parseShard, type PlannedCase } from '../runner/plan.js';
import { runPlan } from '../runner/run.js';
import { skipReason } from '../runner/run-case.js';
import { runParallel } from '../runner/parallel.js';
import { counts, type CaseResult, type RunSummary } from '../runner/results.js';
import { compareRuns, diffCounts, runDifferential } from '../runner/differential.js';
import { openReference, referenceFor, saveResults } from '../runner/saved-results.js';
import type { ExpectationFile } from '../expect/expectations.js';
import { differentialJunitXml, junitXml } from '../report/junit.js';
import { ktap } from '../report/ktap.js';
import { consoleSummary, styleFor } from '../report/console.js';
import { Progress } from '../report/progress.js';
import { runJson } from '../report/json.js';
import { writeAtomic } from '../report/atomic-write.js';
import { checkReportPaths, clearReports, lockReports, type ReportPath } from './report-files.js';
import { intOption, parse, type Values } from './args.js';
import { HELP } from './help.js';
import { kcidbOptions } from './kcidb-options.js';
import { packagePath } from '../paths.js';

/** Minimum time between progress rewrites of the reports during a run. */
const PROGRESS_INTERVAL_MS = 2000;
const EXPECTATIONS_DIR = packagePath('expectations') + sep;
const MODEL_TARGETS = new Set(['model', 'model-kvm']);

/** Fisher-Yates with a small seeded generator (mulberry32): the same seed, the same order. */
function shuffled<T>(xs: T[], seed: number): T[] {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Ends the run between cases on SIGINT/SIGTERM/SIGHUP, or when the parent process goes away. */
function stopper(): { signal: AbortSignal; why: () => string | undefined; dispose: () => void } {
  const ac = new AbortController();
  let why: string | undefined;
  const stop = (w: string) => {
    if (why) process.exit(w === 'SIGINT' ? 130 : 143); // a second signal: leave now, reports already hold what finished
    why = w;
    process.stderr.write(`\nxconf: ${w}: stopping after the case in flight; writing partial reports\n`);
    ac.abort();
  };
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((s) => [s, () => stop(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);
  // npx (or a CI runner) killed without passing the signal on: we are re-parented.
  // The parent is the one bin/xconf.js saw as the process started.
  const parent = Number(process.env.XCONF_PARENT_PID) || process.ppid;
  const watch = setInterval(() => { if (process.ppid !== parent) stop('parent exited'); }, 1000);
  watch.unref();
  return {
    signal: ac.signal, why: () => why,
    dispose: () => { clearInterval(watch); for (const [s, h] of handlers) process.off(s, h); },
  };
}

function reportPaths(v: Values): ReportPath[] {
  const out: ReportPath[] = [{ option: '--junit', path: String(v.junit) }];
  if (v.ktap) out.push({ option: '--ktap', path: String(v.ktap) });
  if (v.json) out.push({ option: '--json', path: String(v.json) });
  if (v.kcidb) out.push({ option: '--kcidb', path: String(v.kcidb) });
  if (v['diff-against'] !== undefined) out.push({ option: '--diff-report', path: String(v['diff-report'] ?? String(v.junit).replace(/(\.xml)?$/, '.differential.xml')) });
  return out;
}

export async function cmdRun(argv: string[]): Promise<ExitCode> {
  const { values: v, positionals } = parse(argv, {
    target: { type: 'string', default: 'model' }, filter: { type: 'string' }, shard: { type: 'string' },
    junit: { type: 'string', default: 'reports/junit.xml' }, ktap: { type: 'string' }, json: { type: 'string' },
    timeout: { type: 'string' }, seed: { type: 'string' }, verbose: { type: 'boolean', short: 'v' },
    isolate: { type: 'boolean' }, 'in-process': { type: 'boolean' }, 'diff-against': { type: 'string' },
    'diff-report': { type: 'string' }, expect: { type: 'string', multiple: true }, 'rerun-failed': { type: 'boolean' },
    jobs: { type: 'string', short: 'j' }, bail: { type: 'boolean' },
    kcidb: { type: 'string' }, origin: { type: 'string' }, 'build-id': { type: 'string' },
    'save-results': { type: 'string' }, 'reference-results': { type: 'string' },
  });
  if (v.help) { process.stdout.write(HELP.run + '\n'); return EXIT.ok; }
  const target = String(v.target);
  if (!(TARGETS as readonly string[]).includes(target)) throw new UsageError(`--target: unknown target '${target}' (targets: ${TARGETS.join(', ')})`);
  const against = v['diff-against'] as string | undefined;
  if (against !== undefined && !(TARGETS as readonly string[]).includes(against)) {
    throw new UsageError(`--diff-against: unknown target '${against}' (targets: ${TARGETS.join(', ')})`);
  }
  if (v['diff-report'] !== undefined && against === undefined) throw new UsageError('--diff-report needs --diff-against=TARGET');
  const referenceFile = v['reference-results'] as string | undefined;
  if (referenceFile !== undefined && against === undefined) throw new UsageError('--reference-results needs --diff-against=TARGET (the target the results were saved from)');
  if (referenceFile !== undefined && !MODEL_TARGETS.has(against!)) throw new UsageError(`--reference-results stands for a model reference; --diff-against=${against} runs for real`);
  if (v['save-results'] !== undefined && !MODEL_TARGETS.has(target)) throw new UsageError(`--save-results saves a model target's run for --reference-results; --target=${target} is not one`);
  const timeout = v.timeout === undefined ? undefined : Number(v.timeout);
  if (timeout !== undefined && !(timeout > 0)) throw new UsageError(`--timeout takes a positive number of seconds (got '${v.timeout}')`);
  const seed = intOption('seed', v.seed as string | undefined, 0, 2 ** 32 - 1);
  const jobs = intOption('jobs', v.jobs as string | undefined, 1, 64) ?? 1;
  if (jobs > 1 && !MODEL_TARGETS.has(target)) throw new UsageError(`-j/--jobs runs model targets in worker processes; --target=${target} runs one case at a time`);
  if (jobs > 1 && (v.bail || against !== undefined)) throw new UsageError('-j/--jobs cannot be combined with --bail or --diff-against');
  const shard = v.shard ? parseShard(String(v.shard)) : undefined;
  const paths = positionals.length ? positionals : ['suites'];
  const kcidb = kcidbOptions(v);
  const kcidbWriter = kcidb ? await import('../report/kcidb.js') : undefined;
  const reports = reportPaths(v);
  checkReportPaths(reports);
  // Modules an option alone needs (the YAML and XML parsers) load only with that option.
  const rerun = v['rerun-failed'] ? (await import('./rerun.js')).failedInReport(String(v.junit)) : undefined;
  if (rerun && rerun.size === 0) {
    process.stdout.write(`xconf: ${v.junit} records no failed cases: nothing to rerun\n`);
    return EXIT.ok;
  }
  const expectArgs = (v.expect as string[] | undefined) ?? [];
  const expectations = expectArgs.length ? await import('../expect/expectations.js') : undefined;
  const expectFiles: ExpectationFile[] = expectations ? expectArgs.filter((f) => f !== 'auto').map(expectations.loadExpectations) : [];
  // From here on the previous reports are gone: whatever stops this run, none can pass for its result.
  lockReports(reports);
  clearReports(reports);
  const stop = stopper();

  const loaded = loadPaths(paths);
  if (loaded.problems.length) throw new SuiteError(loaded.problems);
  let planned = planOrThrow(loaded.cases, { paths, filter: v.filter as string | undefined, shard });
  // planOrThrow refuses an empty selection (an empty shard of a fan-out is fine); so does a rerun.
  if (rerun) {
    planned = planned.filter((pc) => rerun.has(pc.name));
    if (!planned.length) throw new UsageError(`no cases matched: none of the ${rerun.size} failed cases in ${v.junit} is among the selected cases`);
  }
  const driver = await createDriver(target);
  // The reference is created and probed before anything runs, so a reference
  // that cannot work (no /dev/kvm) stops the run up front.
  const reference = against === undefined ? undefined : await createDriver(against);
  await reference?.probe();
  const caps = await driver.probe();
  const layers = expectations?.targetLayers(target, caps.properties) ?? [];
  if (expectations && expectArgs.includes('auto')) {
    expectFiles.push(...expectations.autoExpectationFiles(EXPECTATIONS_DIR, layers).map(expectations.loadExpectations));
  }

  // Saved reference results are checked before anything runs (the cases they cover, after).
  const savedFor = reference && { target: reference.name, seed: String(seed ?? 0), xenVersion: caps.fixedXenVersion };
  const saved = referenceFile !== undefined && savedFor ? openReference(referenceFile, savedFor) : undefined;

  const order = new Map(planned.map((pc, i) => [pc.name, i]));
  const inPlanOrder = (rs: CaseResult[]) => [...rs].sort((a, b) => order.get(a.name)! - order.get(b.name)!);
  const started = new Date().toISOString();
  const base = (results: CaseResult[]): RunSummary => ({
    target: driver.name, seed: String(seed ?? 0), capabilities: [...caps.has].sort(), missing: Object.fromEntries(caps.missing),
    properties: { ...caps.properties }, results: inPlanOrder(results), startedAt: started, durationMs: 0, planned: planned.length,
  });
  const groups = new Set(planned.map((pc) => pc.case.id)).size;
  let persistMs = 0;
  const persist = (run: RunSummary) => {
    const t = performance.now();
    writeAtomic(String(v.junit), junitXml(run));
    if (v.ktap) writeAtomic(String(v.ktap), ktap(run, { plannedGroups: groups }));
    if (v.json) writeAtomic(String(v.json), runJson(run));
    if (kcidb && kcidbWriter && !run.interrupted) writeAtomic(kcidb.path, kcidbWriter.kcidbJson(kcidbWriter.kcidbFromRun(run, kcidb, String(v.junit))));
    if (run.differential) writeAtomic(reports.find((r) => r.option === '--diff-report')!.path, differentialJunitXml(run));
    persistMs = performance.now() - t;
  };
  const IN_PROGRESS = 'in progress: the run had not finished when this report was written';
  // Progress rewrites, marked in progress, cost at most a fiftieth of the run: never
  // sooner than 2 s after the last, nor than fifty times the last write's cost (a live
  // run under TCG spent 2.4 s of 29 s on them at 250 ms and a tenth, and still 5% of its
  // profile at a twentieth).
  let last = performance.now();
  const persistIfDue = (partial: () => RunSummary) => {
    if (performance.now() - last < Math.max(PROGRESS_INTERVAL_MS, 50 * persistMs)) return;
    persist({ ...partial(), interrupted: IN_PROGRESS });
    last = performance.now();
  };
  persist({ ...base([]), interrupted: IN_PROGRESS });

  const style = styleFor(process.stdout);
  const isolate = !v['in-process'] && (!!v.isolate || driver.name === 'kvm');
  const progress = new Progress({
    total: planned.length, tty: !!process.stderr.isTTY, perCase: isolate || !MODEL_TARGETS.has(target), verbose: !!v.verbose, style,
    out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s),
  });
  const ac = new AbortController();
  stop.signal.addEventListener('abort', () => ac.abort(), { once: true });
  let bailed = false;
  const onResult = (r: CaseResult, done: CaseResult[]) => {
    progress.caseDone(r);
    if (v.bail && (r.status === 'fail' || r.status === 'error') && !bailed) { bailed = true; ac.abort(); }
    persistIfDue(() => base(done));
  };
  const t0 = performance.now();
  const runOrder = seed === undefined ? planned : shuffled(planned, seed);
  // A model reference of a live or isolated run runs beside the target, in a worker
  // process of its own, on every case the target does not skip for a missing capability
  // (the comparison then ignores those the target skipped as it ran). Such a target mostly
  // waits on its hypervisor or its case processes, so with a second CPU the comparison
  // costs no wall time; and the model's state is never touched by what the target's
  // session left in this process. A model target compares after its run, in-process.
  const beside = reference && referenceFile === undefined && MODEL_TARGETS.has(reference.name) && (!MODEL_TARGETS.has(target) || isolate)
    ? runParallel(runOrder.filter((pc) => skipReason(pc, caps) === undefined), paths, reference.name, 1, {
      timeoutSeconds: timeout, seed: String(seed ?? 0), xenVersion: caps.fixedXenVersion, signal: ac.signal, background: true,
    })
    : undefined;
  beside?.catch(() => undefined); // awaited below unless the run stops first
  let results: CaseResult[];
  if (jobs > 1) {
    const done: CaseResult[] = [];
    results = await runParallel(runOrder, paths, target, jobs, {
      timeoutSeconds: timeout, signal: ac.signal, onResult: (r) => { done.push(r); onResult(r, done); },
    });
  } else {
    results = (await runPlan(runOrder, driver, { timeoutSeconds: timeout, seed: String(seed ?? 0), isolate, signal: ac.signal, onResult })).results;
  }
  const run: RunSummary = { ...base(results), durationMs: performance.now() - t0 };
  if (expectations) {
    // An entry that matches no case is stale only when the whole suite tree was loaded.
    const known = positionals.length ? undefined : { names: plan(loaded.cases, {}).map((pc: PlannedCase) => pc.name), ids: loaded.cases.map((c) => c.id) };
    const applied = expectations.applyExpectations(expectFiles, layers, run.results, known);
    run.results = applied.results;
    if (applied.problems.length) run.expectationProblems = applied.problems;
  }
  if (stop.why() || bailed) run.interrupted = stop.why() ?? '--bail: stopped at the first failure';
  // Stopped before the comparison: the differential report exists, empty and marked interrupted.
  if (reference && run.interrupted) run.differential = { target: driver.name, reference: reference.name, entries: [] };
  persist(run);
  if (reference && !run.interrupted) {
    const ranHere = new Set(run.results.map((r) => r.name));
    if (saved !== undefined) {
      run.differential = compareRuns(driver.name, reference.name, run.results, referenceFor(saved, referenceFile!, savedFor!, run.results));
    } else if (beside) run.differential = compareRuns(driver.name, reference.name, run.results, await beside);
    else run.differential = await runDifferential(planned.filter((pc) => ranHere.has(pc.name)), run.results, driver.name, reference, {
      timeoutSeconds: timeout, seed: String(seed ?? 0), xenVersion: caps.fixedXenVersion,
      // Model references run in this process (fast); a kvm reference is isolated like a kvm target.
      isolate: !v['in-process'] && (!!v.isolate || reference.name === 'kvm'),
      onProgress: (soFar) => persistIfDue(() => ({ ...run, differential: soFar() })),
    });
    if (stop.why()) run.interrupted = stop.why();
    persist(run);
  }
  if (v['save-results'] !== undefined && !run.interrupted) saveResults(String(v['save-results']), run, caps.fixedXenVersion);
  stop.dispose();
  progress.clearStatus();
  process.stdout.write(consoleSummary(run, { verbose: !!v.verbose, style }));
  const why = stop.why();
  if (why) return why === 'SIGINT' ? EXIT.sigint : EXIT.sigterm;
  const c = counts(run.results);
  if (c.fail + c.error > 0 || run.expectationProblems || bailed) return EXIT.failed;
  // A disagreement with the reference is a failure even if every case passed on the target.
  if (run.differential && diffCounts(run.differential).disagree > 0) return EXIT.failed;
  if (c.total > 0 && c.skip === c.total) return EXIT.allSkipped;
  return EXIT.ok;
}
