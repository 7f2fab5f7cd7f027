// Child side of runParallel: loads and plans the given paths, runs the named
// cases on a fresh driver, and sends each result as it ends.
import { loadPaths } from '../suite/loader.js';
import { createDriver } from '../drivers/index.js';
import { plan } from './plan.js';
import { runPlan } from './run.js';
import type { ShardMessage, ShardRequest } from './parallel.js';

process.once('disconnect', () => process.exit(0));

process.once('message', async (req: ShardRequest) => {
  const send = (m: ShardMessage) => new Promise<void>((r) => process.send!(m, () => r()));
  try {
    const wanted = new Set(req.names);
    const planned = plan(loadPaths(req.paths).cases, {}).filter((pc) => wanted.has(pc.name));
    if (planned.length !== wanted.size) throw new Error(`the case files changed while the run started (${wanted.size - planned.length} cases not found)`);
    const pending: Promise<void>[] = [];
    await runPlan(planned, await createDriver(req.target), {
      timeoutSeconds: req.timeoutSeconds, seed: req.seed, xenVersion: req.xenVersion,
      onResult: (r) => { pending.push(send({ kind: 'result', result: r })); },
    });
    await Promise.all(pending);
  } catch (e) {
    await send({ kind: 'fatal', message: (e as Error).message });
  }
  process.exit(0);
});
