// `xconf fuzz` and `xconf selfcheck`. Both return an exit code; errors are
// thrown as UsageError/DriverError for main.ts to report in one line.

import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { randomInt } from 'node:crypto';
import { EXIT, UsageError, type ExitCode } from '../errors.js';
import { parseShard } from '../runner/plan.js';
import { writeAtomic } from '../report/atomic-write.js';
import { checkReportPaths, clearReports, lockReports } from './report-files.js';
import { makeDirs } from '../make-dirs.js';
import type { FuzzReport } from '../fuzz/run.js';

export const FUZZ_HELP = `Usage: xconf fuzz [options]

Generates sequences of case steps (fast-check model-based testing), runs them on
the target and checks every step: against a reference target (ret, fault, OUT
values and the bytes of every area the model defines), or, on its own, against
invariants. A finding is saved at once, shrunk, and written as a YAML case that
'xconf run FILE --target=T' replays; one file per finding signature.

  --target=NAME     model | model-kvm | kvm | xen | qemu (default model)
  --against=NAME    reference target (default: model-kvm for kvm and qemu, model for
                    xen, none for the models: invariants only)
  --time=DURATION   how long to run: 30s, 10m, 8h (default 60s)
  --seed=N          run seed (default: random, printed at start)
  --shard=K/N       the K-th of N disjoint seed streams (one per machine)
  --out=DIR         findings directory (default fixtures/found)
  --junit=PATH      JUnit XML of the session (one test per finding, one summary)
  --kcov            coverage-guided (--target=kvm on a kernel with CONFIG_KCOV):
                    sequences that reach new kernel edges join a corpus that later
                    sequences mutate; edges over time are printed
  --kcov-observe    count KCOV edges without guiding (to compare with --kcov)
  --corpus-from=PATH  with --kcov: start the corpus from the cases under PATH (e.g.
                    suites): each case's steps in the fuzz vocabulary, its values
                    resolved on model-kvm, run first; those reaching new edges are kept
  --no-vmm-ops      leave out what only a VMM does to KVM (kvm.* attributes, send
                    ports, irqfds, hypercall config and its MSR write; runstate.host_*):
                    guest steps only

Exit codes: 0 no new finding, 1 a new finding, 2 usage error, 3 driver/environment
error (also: --kcov without /sys/kernel/debug/kcov), 4 the target can run none of the fuzz ops (skipped). Ctrl-C or SIGTERM stops
at the end of the current batch with everything saved.
Inside the live VM (ci/live-kvm), XCONF_LIVE_CMD chooses the inner command, e.g.
XCONF_LIVE_CMD='xconf fuzz --target=kvm --time=5m --out=reports/found'.`;

export const SELFCHECK_HELP = `Usage: xconf selfcheck [options]

Runs the suites and a short fuzz against deliberately broken variants of the model
(one per bug class the model can express) and prints which each catches. A variant
is caught when the fuzzer finds it; its YAML finding must then fail on the variant
and pass on the real model. The variants are never reachable from other commands.

  --time=DURATION   fuzz time limit per variant (default 60s)
  --seed=N          fuzz seed (default 1)
  --variant=NAME    only this variant
  --no-suites       skip the suite runs

Exit codes: 0 every variant caught and replayed, 1 otherwise, 2 usage error.`;

/** 30s, 10m, 2h, 500ms or plain seconds. */
export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) throw new UsageError(`--time: '${s}' is not a duration (e.g. 30s, 10m, 8h)`);
  const n = Number(m[1]);
  const ms = n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  if (!(ms > 0)) throw new UsageError(`--time must be positive (got '${s}')`);
  return ms;
}

function parseSeed(s: string | undefined): number {
  if (s === undefined) return randomInt(0, 0x7fffffff);
  if (!/^\d+$/.test(s) || Number(s) > 0xffffffff) throw new UsageError(`--seed takes an integer 0..4294967295 (got '${s}')`);
  return Number(s);
}

function options(argv: string[], spec: Record<string, { type: 'string' | 'boolean'; default?: string | boolean }>) {
  try {
    return parseArgs({ args: argv, options: { help: { type: 'boolean' }, ...spec }, allowPositionals: false, strict: true }).values as Record<string, string | boolean | undefined>;
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split('\n')[0]} (see --help)`);
  }
}

/** SIGINT/SIGTERM set `stop.requested`; the run finishes its batch and saves. */
function onSignals(stop: { requested: boolean }, out: NodeJS.WritableStream): () => void {
  const h = (sig: string) => {
    if (!stop.requested) out.write(`\nxconf: ${sig}: stopping after this batch, saving findings\n`);
    stop.requested = true;
  };
  const int = () => h('SIGINT');
  const term = () => h('SIGTERM');
  process.on('SIGINT', int);
  process.on('SIGTERM', term);
  return () => { process.off('SIGINT', int); process.off('SIGTERM', term); };
}

const clockOf = (ms: number) => `${Math.floor(ms / 60_000)}:${String(Math.floor(ms / 1000) % 60).padStart(2, '0')}`;

export function coverageLines(r: FuzzReport): string[] {
  const c = r.coverage;
  if (!c) return [];
  const t = c.totals;
  return [
    `  coverage (${c.guided ? 'guided' : 'observed only'}): ${t.edges.toLocaleString('en-US')} edges, ${t.pcs.toLocaleString('en-US')} PCs; ${c.source}`,
    `  edges over time: ${c.timeline.map((p) => `${clockOf(p.ms)} ${p.edges}`).join(', ') || 'none recorded'}`,
    `  corpus ${c.corpus} (${c.corpusAdded} sequences reached new edges), ${c.mutated} mutated sequences, ${t.threads} traced threads` +
      `${t.failedThreads ? `, ${t.failedThreads} thread(s) untraced` : ''}${t.overflows ? `, ${t.overflows} buffer overflow(s)` : ''}`,
  ];
}

function summary(r: FuzzReport): string {
  const fresh = r.findings.filter((f) => f.fresh);
  const lines = [
    `fuzz ${r.target}${r.reference ? ` against ${r.reference}` : ''}: ${r.steps} steps in ${r.sequences} sequences, ${(r.elapsedMs / 1000).toFixed(1)}s` +
      ` (${r.stoppedBy === 'signal' ? 'stopped by signal' : 'time up'})`,
    `  ${r.stepsPerSecond.toLocaleString('en-US')} steps/s (${r.stepsPerCpuSecond.toLocaleString('en-US')} per CPU-second), op coverage ${r.opsCovered}/${r.opsTotal}`,
    `  ${fresh.length} new finding(s), ${r.findings.length - fresh.length} known finding(s) seen again`,
    ...(r.adopted ? [`  ${r.adopted} step(s) where KVM had delivered held events at an exit of its own; the reference delivered them too`] : []),
    ...coverageLines(r),
  ];
  for (const f of r.findings) lines.push(`  ${f.fresh ? 'NEW  ' : 'known'} ${f.signature}: npx xconf run ${f.file} --target=${r.target}`);
  return lines.join('\n') + '\n';
}

export async function runFuzz(argv: string[]): Promise<ExitCode> {
  const v = options(argv, {
    target: { type: 'string', default: 'model' }, against: { type: 'string' }, time: { type: 'string', default: '60s' },
    seed: { type: 'string' }, shard: { type: 'string' }, out: { type: 'string', default: 'fixtures/found' }, junit: { type: 'string' },
    kcov: { type: 'boolean' }, 'kcov-observe': { type: 'boolean' }, 'no-vmm-ops': { type: 'boolean' },
    'corpus-from': { type: 'string' },
  });
  if (v.help) { process.stdout.write(FUZZ_HELP + '\n'); return EXIT.ok; }
  // Loaded on use: `xconf run` starts without fast-check and the fuzzer.
  const { buildTargets, DEFAULT_REFERENCE, FuzzSkip } = await import('../fuzz/targets.js');
  const { runFuzzSession } = await import('../fuzz/run.js');
  const { fuzzJunit } = await import('../fuzz/junit.js');
  const target = String(v.target);
  const reference = v.against === undefined ? DEFAULT_REFERENCE[target] : String(v.against);
  const timeMs = parseDuration(String(v.time));
  const seed = parseSeed(v.seed as string | undefined);
  const shard = v.shard ? parseShard(String(v.shard)) : { k: 1, n: 1 };
  const kcov = v.kcov ? 'guide' : v['kcov-observe'] ? 'observe' : undefined;
  if (v.kcov && v['kcov-observe']) throw new UsageError('--kcov and --kcov-observe exclude each other (--kcov guides, --kcov-observe only counts)');
  if (kcov && target !== 'kvm') throw new UsageError(`--kcov${kcov === 'observe' ? '-observe' : ''} traces the kernel's KVM: it needs --target=kvm (got ${target})`);
  if (v['corpus-from'] !== undefined && kcov !== 'guide') throw new UsageError('--corpus-from starts the corpus of a coverage-guided run: it needs --kcov');
  if (v['corpus-from'] !== undefined && !existsSync(String(v['corpus-from']))) throw new UsageError(`--corpus-from: no such file or directory '${v['corpus-from']}'`);
  // The findings directory and the JUnit path are checked before anything runs: an
  // overnight session must not end unable to save what it found.
  const reports = v.junit === undefined ? [] : [{ option: '--junit', path: String(v.junit) }];
  checkReportPaths(reports);
  lockReports(reports);
  clearReports(reports);
  try {
    makeDirs(String(v.out));
  } catch (e) {
    throw new UsageError(`--out=${v.out}: cannot create the findings directory (${(e as NodeJS.ErrnoException).code ?? 'EIO'})`);
  }
  let targets;
  try {
    targets = await buildTargets(target, reference);
  } catch (e) {
    if (!(e instanceof FuzzSkip)) throw e;
    process.stderr.write(`xconf fuzz: skipped: ${e.message}\n`);
    return EXIT.allSkipped;
  }
  if (v['no-vmm-ops'] && targets.allowed) {
    const { KVM_HOST_OPS } = await import('../fuzz/steps-kvm.js');
    const rest = [...targets.allowed].filter((op) => !KVM_HOST_OPS.includes(op));
    if (rest.length) targets.allowed = new Set(rest);
  }
  if (kcov) {
    const { openKcov } = await import('../fuzz/kcov.js');
    targets.coverage = openKcov(kcov === 'guide');
  }
  process.stdout.write(`xconf fuzz: target ${target}, ${reference ? `reference ${reference}` : 'no reference (invariants)'}, seed ${seed}` +
    `${shard.n > 1 ? `, shard ${shard.k}/${shard.n}` : ''}, ${timeMs / 1000}s, ${targets.allowed?.size} ops, findings in ${v.out}/` +
    `${kcov ? `, KCOV ${kcov === 'guide' ? 'guided' : 'observed'}` : ''}\n`);
  let seeds;
  if (v['corpus-from'] !== undefined) {
    const { seedsFromSuites } = await import('../fuzz/seed-corpus.js');
    const caps = [await targets.driver.probe(), ...(targets.reference ? [await targets.reference.probe()] : [])];
    const l = await seedsFromSuites([String(v['corpus-from'])], targets.allowed, targets.shape ?? { multi: true, mode32: true }, caps);
    seeds = l.seeds;
    process.stdout.write(`xconf fuzz: corpus from ${v['corpus-from']}: ${l.seeds.length} sequences from ${l.variants} case variants both targets run (${l.empty} without a fuzz-vocabulary step)\n`);
  }
  const stop = { requested: false };
  const off = onSignals(stop, process.stdout);
  let report: FuzzReport;
  try {
    report = await runFuzzSession({ target, reference, timeMs, seed, shard, outDir: String(v.out), targets, out: process.stdout, stop, seeds });
  } finally {
    off();
  }
  if (v.junit) writeAtomic(String(v.junit), fuzzJunit(report));
  process.stdout.write(summary(report));
  if (report.findings.some((f) => f.fresh)) return EXIT.failed;
  const blind = kcovBlind(report);
  if (blind) {
    process.stderr.write(`xconf fuzz: ${blind}\n`);
    return EXIT.environment;
  }
  return EXIT.ok;
}

/** A KCOV run that saw nothing of the kernel: a kernel without KCOV_INSTRUMENT_xen.o, or threads KCOV could not trace. */
export function kcovBlind(r: FuzzReport): string | undefined {
  const c = r.coverage;
  if (!c || r.steps === 0) return undefined;
  if (c.totals.failedThreads > 0) return `--kcov: ${c.totals.failedThreads} thread(s) entering KVM could not be traced (open or KCOV_ENABLE of /sys/kernel/debug/kcov failed); the edges counted are incomplete`;
  if (c.totals.edges === 0) return `--kcov: ${r.steps} steps reached no instrumented kernel code: this kernel's arch/x86/kvm/xen.o is not built with KCOV (KCOV_INSTRUMENT_xen.o := y)`;
  return undefined;
}

export async function runSelfcheck(argv: string[]): Promise<ExitCode> {
  const v = options(argv, {
    time: { type: 'string', default: '60s' }, seed: { type: 'string', default: '1' }, variant: { type: 'string' }, 'no-suites': { type: 'boolean' },
  });
  if (v.help) { process.stdout.write(SELFCHECK_HELP + '\n'); return EXIT.ok; }
  // Loaded only here: the broken variants are unreachable from every other command.
  const { selfcheck, selfcheckOk } = await import('../fuzz/selfcheck.js');
  const { BROKEN_MODELS } = await import('../fuzz/variants.js');
  if (v.variant !== undefined && !BROKEN_MODELS.some((b) => b.variant.name === v.variant)) {
    throw new UsageError(`--variant: unknown variant '${v.variant}' (variants: ${BROKEN_MODELS.map((b) => b.variant.name).join(', ')})`);
  }
  if (!v['no-suites'] && !existsSync('suites')) throw new UsageError('selfcheck runs the suites in ./suites: run it from the project root, or pass --no-suites');
  const stop = { requested: false };
  const off = onSignals(stop, process.stdout);
  try {
    const rs = await selfcheck({
      timeMs: parseDuration(String(v.time)), seed: parseSeed(String(v.seed)), only: v.variant as string | undefined,
      suites: v['no-suites'] ? undefined : ['suites'], out: process.stdout, stop,
    });
    const ok = selfcheckOk(rs);
    process.stdout.write(`selfcheck: ${rs.filter((r) => r.fuzzCaught).length}/${rs.length} variants caught by the fuzzer${ok ? '' : ' (not all caught and replayed)'}\n`);
    return ok ? EXIT.ok : EXIT.failed;
  } finally {
    off();
  }
}
