// `npm run bench`: prints figures, asserts nothing. Runs the whole-run
// benchmark below, then every other bench/*.mjs script.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const dir = mkdtempSync(join(tmpdir(), 'xconf-bench-'));
const runs = Number(process.env.XCONF_BENCH_RUNS ?? 10);

function wall(args) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, ['bin/xconf.js', ...args], { cwd: root, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0 && r.status !== 4) throw new Error(`xconf ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { ms, summary: r.stdout.trim().split('\n').at(-1) };
}

function measure(label, args) {
  const times = [];
  let summary = '';
  wall([...args, `--junit=${dir}/warm.xml`]); // warm the file cache
  for (let i = 0; i < runs; i++) {
    const r = wall([...args, `--junit=${dir}/j.xml`]);
    times.push(r.ms);
    summary = r.summary;
  }
  times.sort((a, b) => a - b);
  const med = times[Math.floor(times.length / 2)];
  console.log(`${label}, wall time incl. node start (${runs} runs; ${summary})`);
  console.log(`  median ${med.toFixed(0)} ms   min ${times[0].toFixed(0)} ms   max ${times.at(-1).toFixed(0)} ms   target <= 1500 ms: ${med <= 1500 ? 'met' : 'NOT met'}`);
}
measure('whole `xconf run` on the model (every suite)', ['run']);
measure('`xconf run suites/hypercall` on the model', ['run', 'suites/hypercall']);
const nodeOnly = [];
for (let i = 0; i < 5; i++) {
  const t0 = process.hrtime.bigint();
  spawnSync(process.execPath, ['-e', '0']);
  nodeOnly.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
nodeOnly.sort((a, b) => a - b);
console.log(`  (bare node start: median ${nodeOnly[2].toFixed(0)} ms)`);

for (const f of readdirSync(here).filter((f) => f.endsWith('.mjs') && f !== 'run.mjs').sort()) {
  console.log(`\n== bench/${f}`);
  const r = spawnSync(process.execPath, [join(here, f)], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) console.log(`  (bench/${f} exited ${r.status})`);
}
