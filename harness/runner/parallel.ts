// `-j N`: a run split over N worker processes. The parent plans; each worker
// loads the same paths, plans the same way, runs the cases whose names it is
// given (round-robin, so slow subsystems spread out) and streams each result
// back. Results come back in completion order; the caller restores plan order.
import { fork } from 'node:child_process';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { PlannedCase } from './plan.js';
import type { CaseResult } from './results.js';

export interface ShardRequest {
  paths: string[];
  names: string[];
  target: string;
  timeoutSeconds?: number;
  seed?: string;
  /** A differential reference follows the target's own Xen version. */
  xenVersion?: string;
}

export type ShardMessage = { kind: 'result'; result: CaseResult } | { kind: 'fatal'; message: string };

const WORKER = fileURLToPath(new URL('./shard-worker.js', import.meta.url));

export async function runParallel(
  planned: PlannedCase[], paths: string[], target: string, jobs: number,
  opts: {
    timeoutSeconds?: number; seed?: string; xenVersion?: string; signal?: AbortSignal; onResult?: (r: CaseResult) => void;
    /** Run the workers at the lowest CPU priority (a reference beside a live target must not slow it). */
    background?: boolean;
  },
): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  const lists: string[][] = Array.from({ length: Math.min(jobs, planned.length) }, () => []);
  planned.forEach((pc, i) => lists[i % lists.length].push(pc.name));
  await Promise.all(lists.map((names) => new Promise<void>((resolve, reject) => {
    const child = fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    if (opts.background && child.pid !== undefined) {
      try {
        setPriority(child.pid, 19);
      } catch {
        // not permitted here: the worker runs at normal priority
      }
    }
    const stop = () => child.kill('SIGKILL');
    opts.signal?.addEventListener('abort', stop, { once: true });
    let fatal: string | undefined;
    child.on('message', (m: ShardMessage) => {
      if (m.kind === 'fatal') fatal = m.message;
      else if (!opts.signal?.aborted) {
        results.push(m.result);
        opts.onResult?.(m.result);
      }
    });
    child.on('exit', (code, sig) => {
      opts.signal?.removeEventListener('abort', stop);
      if (opts.signal?.aborted || (code === 0 && !fatal)) return resolve();
      reject(new Error(fatal ?? `a worker process died (${sig ? `signal ${sig}` : `exit code ${code}`})`));
    });
    const req: ShardRequest = { paths, names, target, timeoutSeconds: opts.timeoutSeconds, seed: opts.seed, xenVersion: opts.xenVersion };
    child.send(req);
  })));
  return results;
}
