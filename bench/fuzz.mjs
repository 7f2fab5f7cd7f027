// Fuzz throughput and memory: steps per second of `xconf fuzz` on the model
// and on model-kvm (one process, one core), and the process RSS early and late
// in one run. By default the RSS comparison is short (10 s vs 40 s);
// XCONF_BENCH_FUZZ_LONG=1 compares RSS at 1 min and at 10 min as the
// overnight check (takes 10 minutes).
import { mkdtempSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => pathToFileURL(join(root, 'dist', p)).href;
const { buildTargets } = await import(dist('fuzz/targets.js'));
const { runFuzzSession } = await import(dist('fuzz/run.js'));

const quiet = { write: () => true, isTTY: false };
const out = () => mkdtempSync(join(tmpdir(), 'xconf-bench-fuzz-'));

async function throughput(target, seconds) {
  const targets = await buildTargets(target, undefined);
  const r = await runFuzzSession({
    target, timeMs: seconds * 1000, seed: 1, shard: { k: 1, n: 1 }, outDir: out(), targets, out: quiet, stop: { requested: false },
  });
  console.log(`fuzz on ${target.padEnd(9)}: ${r.stepsPerSecond.toLocaleString('en-US')} steps/s wall, ` +
    `${r.stepsPerCpuSecond.toLocaleString('en-US')} steps per CPU-second (${r.steps.toLocaleString('en-US')} steps, ${r.sequences} sequences, ` +
    `${seconds}s, ${r.findings.length} findings); target >= 100,000: ${r.stepsPerCpuSecond >= 100_000 ? 'met' : 'NOT met'}`);
}

async function rss(earlyS, lateS) {
  const targets = await buildTargets('model', undefined);
  const samples = new Map();
  const t0 = performance.now();
  const timer = setInterval(() => {
    const s = (performance.now() - t0) / 1000;
    for (const at of [earlyS, lateS]) if (!samples.has(at) && s >= at) samples.set(at, process.memoryUsage().rss);
  }, 200);
  await runFuzzSession({
    target: 'model', timeMs: lateS * 1000 + 500, seed: 2, shard: { k: 1, n: 1 }, outDir: out(), targets, out: quiet, stop: { requested: false },
  });
  clearInterval(timer);
  const a = samples.get(earlyS);
  const b = samples.get(lateS) ?? process.memoryUsage().rss;
  const mb = (x) => (x / 2 ** 20).toFixed(1);
  const growth = ((b - a) / a) * 100;
  console.log(`fuzz RSS on model: ${mb(a)} MiB at ${earlyS}s, ${mb(b)} MiB at ${lateS}s (${growth >= 0 ? '+' : ''}${growth.toFixed(1)}%); ` +
    `within 10%: ${Math.abs(growth) <= 10 ? 'yes' : 'NO'}`);
}

const seconds = Number(process.env.XCONF_BENCH_FUZZ_SECONDS ?? 10);
await throughput('model', seconds);
await throughput('model-kvm', seconds);
if (process.env.XCONF_BENCH_FUZZ_LONG) await rss(60, 600);
else await rss(10, 40);
