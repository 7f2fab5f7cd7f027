// `npm run bench`: prints figures, asserts nothing.
//
//  1. the whole `xconf run` on the model, wall time including node start
//     (median of N; target <= 1000 ms on an idle 2-core machine)
//  2. where that time goes, by phase (bench/lib/phases.mjs in a fresh process
//     each time): node start, import, load and parse, run, report
//  3. a 10,000-case run (the shipped suites copied until there are 10,000
//     variants; target <= 5 s)
//  4. every other bench/*.mjs script
//
// XCONF_BENCH_RUNS sets N (default 10). The load average is printed with the
// figures: on a shared machine they are only as good as it was quiet.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { loadavg, tmpdir, cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { bundle } from '../tools/bundle.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const dir = mkdtempSync(join(tmpdir(), 'xconf-bench-'));
const runs = Number(process.env.XCONF_BENCH_RUNS ?? 10);
const TARGET_MS = 1000;
const TARGET_10K_MS = 5000;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (ms) => `${ms.toFixed(0)} ms`;
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');

function wall(args) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, ['bin/xconf.js', ...args], { cwd: root, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0 && r.status !== 4) throw new Error(`xconf ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { ms, summary: r.stdout.trim().split('\n').at(-1) };
}

function measure(label, args, n, target) {
  wall([...args, `--junit=${dir}/warm.xml`]); // warm the file cache and the parse cache
  const times = [];
  let summary = '';
  for (let i = 0; i < n; i++) {
    const r = wall([...args, `--junit=${dir}/j.xml`]);
    times.push(r.ms);
    summary = r.summary;
  }
  const med = median(times);
  console.log(`${label}, wall time incl. node start (${n} runs; ${summary})`);
  console.log(`  median ${fmt(med)}   min ${fmt(Math.min(...times))}   max ${fmt(Math.max(...times))}   target <= ${target} ms: ${med <= target ? 'met' : 'NOT met'}`);
  return med;
}

function nodeStart(n) {
  const t = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    spawnSync(process.execPath, ['-e', '0']);
    t.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(t);
}

// The phase timer, bundled as the CLI is (tools/bundle.mjs), so its imports cost what `xconf run`'s do.
await bundle({ phases: 'bench/lib/phases.mjs' }, join(root, 'dist', 'bench'));

function phases(n, paths = []) {
  const all = [];
  for (let i = 0; i < n; i++) {
    const r = spawnSync(process.execPath, [join(root, 'dist/bench/phases.js'), ...paths], { cwd: root, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`dist/bench/phases.js (bench/lib/phases.mjs bundled) exited ${r.status}: ${r.stderr}`);
    all.push(JSON.parse(r.stdout.trim().split('\n').at(-1)));
  }
  const pick = (k) => median(all.map((p) => p[k]));
  return { importMs: pick('importMs') + pick('runImportMs'), loadMs: pick('loadMs'), runMs: pick('runMs'), reportMs: pick('reportMs'), cases: all[0].cases };
}

console.log(`machine: ${cpus().length} CPUs, load average ${load()} (1/5/15 min) at start`);
const total = measure('whole `xconf run` on the model (every suite)', ['run'], runs, TARGET_MS);
const start = nodeStart(runs);
const p = phases(runs);
console.log(`  breakdown (median of ${runs} fresh processes, ${p.cases} cases):`);
console.log(`    node start       ${fmt(start).padStart(8)}`);
console.log(`    import modules   ${fmt(p.importMs).padStart(8)}`);
console.log(`    load and parse   ${fmt(p.loadMs).padStart(8)}`);
console.log(`    run (model)      ${fmt(p.runMs).padStart(8)}`);
console.log(`    report           ${fmt(p.reportMs).padStart(8)}   (JUnit + KTAP + console)`);
console.log(`    sum              ${fmt(start + p.importMs + p.loadMs + p.runMs + p.reportMs).padStart(8)}   (the CLI measured ${fmt(total)})`);

// A 10,000-case suite: copies of the shipped suites under one suites/ folder.
const big = join(dir, 'big', 'suites');
mkdirSync(big, { recursive: true });
const per = p.cases;
const copies = Math.ceil(10000 / per);
for (let i = 0; i < copies; i++) {
  for (const d of readdirSync(join(root, 'suites'), { withFileTypes: true })) {
    if (d.isDirectory()) cpSync(join(root, 'suites', d.name), join(big, `copy${i}`, d.name), { recursive: true });
  }
}
measure(`\n${copies * per}-case \`xconf run\` on the model (${copies} copies of the suites)`, ['run', big], Math.min(runs, 3), TARGET_10K_MS);
console.log(`machine: load average ${load()} at the end`);
rmSync(join(dir, 'big'), { recursive: true, force: true });

for (const f of readdirSync(here).filter((f) => f.endsWith('.mjs') && f !== 'run.mjs').sort()) {
  console.log(`\n== bench/${f}`);
  const r = spawnSync(process.execPath, [join(here, f)], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) console.log(`  (bench/${f} exited ${r.status})`);
}
