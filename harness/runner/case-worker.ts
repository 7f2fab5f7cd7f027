// Child side of runIsolated: loads one case file, runs one variant against a
// fresh driver, reports each step and the result over IPC, then exits.

import { loadFile } from '../suite/loader.js';
import { createDriver } from '../drivers/index.js';
import { plan } from './plan.js';
import { runCase } from './run-case.js';
import type { WorkerMessage, WorkerRequest } from './isolate.js';

// The parent holds the only reason to live: if it dies (or closes the IPC
// channel), stop at once rather than run on as an orphan holding a VM.
process.once('disconnect', () => process.exit(0));

process.once('message', async (req: WorkerRequest) => {
  const send = (m: WorkerMessage) => new Promise<void>((r) => process.send!(m, () => r()));
  const loaded = loadFile(req.file, req.id);
  const pc = loaded.case && plan([loaded.case], {}).find((p) => p.variant.name === req.variant);
  if (!pc) {
    process.stderr.write(`case ${req.id}[${req.variant}] could not be reloaded: ${loaded.problems[0]?.message ?? 'variant missing'}\n`);
    process.exit(70);
  }
  const driver = await createDriver(req.target);
  const caps = await driver.probe();
  const result = await runCase(pc, driver, caps, {
    timeoutSeconds: req.timeoutSeconds,
    xenVersion: req.xenVersion,
    onStep: (index, label) => { void send({ kind: 'step', index, label }); },
  });
  await send({ kind: 'result', result });
  process.exit(0);
});
