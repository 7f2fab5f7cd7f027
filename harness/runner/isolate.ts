// Runs one case variant in a fresh child process, so a native crash (signal,
// abort) or a wedged ioctl costs that case only. The child reports each step
// as it starts; if it dies, the case is an error naming the signal and the
// last step reached, and the next case gets a new child.

import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { PlannedCase } from './plan.js';
import type { CaseResult } from './results.js';
import { caseTimeoutMs, type RunCaseOptions } from './run-case.js';

export interface WorkerRequest {
  file: string;
  id: string;
  variant: string;
  target: string;
  timeoutSeconds?: number;
  xenVersion?: string;
}

export type WorkerMessage =
  | { kind: 'step'; index: number; label: string }
  | { kind: 'result'; result: CaseResult };

const WORKER = fileURLToPath(new URL('./case-worker.js', import.meta.url));
/** Time the child gets beyond the case's own limit to report a timeout itself. */
const GRACE_MS = 5000;

export function runIsolated(pc: PlannedCase, target: string, opts: RunCaseOptions, worker = WORKER, signal?: AbortSignal): Promise<CaseResult> {
  const t0 = performance.now();
  const base = {
    id: pc.case.id, variant: pc.variant.name, name: pc.name, file: pc.case.file,
    description: pc.case.description, spec: pc.case.spec, steps: [],
  };
  return new Promise((resolve) => {
    let last: { index: number; label: string } | undefined;
    let result: CaseResult | undefined;
    let stderr = '';
    const child = fork(worker, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'advanced' });
    child.stderr?.on('data', (b: Buffer) => { stderr = (stderr + b.toString()).slice(-2000); });
    const limit = caseTimeoutMs(pc.case, opts) + GRACE_MS;
    const timer = setTimeout(() => child.kill('SIGKILL'), limit);
    // A stopped run does not wait for the case in flight.
    const stop = () => child.kill('SIGKILL');
    const aborter = signal;
    aborter?.addEventListener('abort', stop, { once: true });
    child.on('message', (m: WorkerMessage) => {
      if (m.kind === 'step') last = { index: m.index, label: m.label };
      else result = m.result;
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      aborter?.removeEventListener('abort', stop);
      if (result) return resolve(result);
      const where = last ? `after starting step ${last.index + 1} (${last.label})` : 'before its first step';
      const how = signal === 'SIGKILL' && performance.now() - t0 >= limit - 50
        ? `timeout: the case's process did not finish within ${(limit / 1000).toFixed(0)}s and was killed`
        : `the case's process died (${signal ? `signal ${signal}` : `exit code ${code}`})`;
      const tail = stderr.trim().split('\n').slice(-1)[0];
      resolve({ ...base, status: 'error', message: `${how} ${where}${tail ? `: ${tail}` : ''}`, durationMs: performance.now() - t0 });
    });
    const req: WorkerRequest = { file: pc.case.file, id: pc.case.id, variant: pc.variant.name, target, timeoutSeconds: opts.timeoutSeconds, xenVersion: opts.xenVersion };
    child.send(req);
  });
}
