// One whole-suite model run in this process, timed by phase, as `xconf run`
// does it: import, load and parse the case files, plan and run them on the
// model, write the reports. Prints one JSON line (milliseconds). Used by
// bench/run.mjs; a child process each time so every run starts cold.
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const paths = process.argv.slice(2).length ? process.argv.slice(2) : ['suites'];
const dist = new URL('../../dist/', import.meta.url);
const t0 = performance.now();
const { loadPaths } = await import(new URL('suite/loader.js', dist));
const { plan } = await import(new URL('runner/plan.js', dist));
const t1 = performance.now();
const loaded = loadPaths(paths);
if (loaded.problems.length) throw new Error(`${loaded.problems.length} problems loading ${paths.join(' ')}`);
const t2 = performance.now();
const { runPlan } = await import(new URL('runner/run.js', dist));
const { createDriver } = await import(new URL('drivers/index.js', dist));
const driver = await createDriver('model');
await driver.probe();
const planned = plan(loaded.cases, {});
const t3 = performance.now();
const run = await runPlan(planned, driver, { seed: '0' });
const t4 = performance.now();
const { junitXml } = await import(new URL('report/junit.js', dist));
const { ktap } = await import(new URL('report/ktap.js', dist));
const { consoleSummary } = await import(new URL('report/console.js', dist));
const { writeAtomic } = await import(new URL('report/atomic-write.js', dist));
const dir = mkdtempSync(join(tmpdir(), 'xconf-bench-'));
writeAtomic(join(dir, 'junit.xml'), junitXml(run));
writeAtomic(join(dir, 'out.ktap'), ktap(run));
consoleSummary(run, {});
const t5 = performance.now();
console.log(JSON.stringify({
  importMs: t1 - t0, loadMs: t2 - t1, runImportMs: t3 - t2, runMs: t4 - t3, reportMs: t5 - t4,
  cases: planned.length, files: loaded.cases.length,
}));
