// One whole-suite model run in this process, timed by phase, as `xconf run`
// does it: import, load and parse the case files, plan and run them on the
// model, write the reports. Prints one JSON line (milliseconds). Used by
// bench/run.mjs; a child process each time so every run starts cold. Run
// bundled like the CLI (bench/run.mjs bundles it into dist/bench/ with the
// same esbuild settings, split at these dynamic imports), so the import figure
// is what `xconf run` pays.
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const paths = process.argv.slice(2).length ? process.argv.slice(2) : ['suites'];
const t0 = performance.now();
const { loadPaths } = await import('../../dist/suite/loader.js');
const { plan } = await import('../../dist/runner/plan.js');
const t1 = performance.now();
const loaded = loadPaths(paths);
if (loaded.problems.length) throw new Error(`${loaded.problems.length} problems loading ${paths.join(' ')}`);
const t2 = performance.now();
const { runPlan } = await import('../../dist/runner/run.js');
const { createDriver } = await import('../../dist/drivers/index.js');
const driver = await createDriver('model');
await driver.probe();
const planned = plan(loaded.cases, {});
const t3 = performance.now();
const run = await runPlan(planned, driver, { seed: '0' });
const t4 = performance.now();
const { junitXml } = await import('../../dist/report/junit.js');
const { ktap } = await import('../../dist/report/ktap.js');
const { consoleSummary } = await import('../../dist/report/console.js');
const { writeAtomic } = await import('../../dist/report/atomic-write.js');
const dir = mkdtempSync(join(tmpdir(), 'xconf-bench-'));
writeAtomic(join(dir, 'junit.xml'), junitXml(run));
writeAtomic(join(dir, 'out.ktap'), ktap(run));
consoleSummary(run, {});
const t5 = performance.now();
console.log(JSON.stringify({
  importMs: t1 - t0, loadMs: t2 - t1, runImportMs: t3 - t2, runMs: t4 - t3, reportMs: t5 - t4,
  cases: planned.length, files: loaded.cases.length,
}));
