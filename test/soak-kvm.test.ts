// Resource hygiene on a host with /dev/kvm: many kvm cases run in one process
// (no isolation) leave no file descriptor or VM behind, and memory stays flat.
// `npm test` runs a few hundred cases; `npm run test:soak` runs 10,000.
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync } from 'node:fs';
import { loadPaths } from '../harness/suite/loader.js';
import { plan } from '../harness/runner/plan.js';
import { runCase } from '../harness/runner/run-case.js';
import { KvmDriver } from '../harness/drivers/kvm/kvm-driver.js';
import { loadAddon } from '../harness/drivers/kvm/addon.js';

const N = Number(process.env.XCONF_SOAK_CASES ?? 300);
const usable = existsSync('/dev/kvm') && loadAddon().ok;
const fds = () => readdirSync('/proc/self/fd').length;

describe('kvm resource hygiene', () => {
  it.skipIf(!usable)(`${N} kvm cases in one process leak no descriptors and keep memory flat`, async () => {
    const driver = new KvmDriver();
    const caps = await driver.probe();
    const planned = plan(loadPaths(['suites/kvm']).cases, {});
    const run = async (n: number) => {
      for (let i = 0; i < n; i++) {
        if (i % 50 === 0) await new Promise((r) => setImmediate(r)); // keep the test worker responsive
        const r = await runCase(planned[i % planned.length], driver, caps);
        if (r.status !== 'pass') throw new Error(`${r.name}: ${r.status} ${r.message}`);
      }
    };
    // VMs are torn down on threads of their own (closeInBackground): count once they are done.
    const settled = async () => {
      let last = fds();
      for (let same = 0, i = 0; same < 10 && i < 500; i++) {
        await new Promise((r) => setTimeout(r, 10));
        const now = fds();
        same = now === last ? same + 1 : 0;
        last = now;
      }
      return last;
    };
    await run(planned.length); // warm up: first VM, lazy allocations
    global.gc?.();
    const fd0 = await settled();
    const rss0 = process.memoryUsage().rss;
    await run(N);
    global.gc?.();
    const grown = (process.memoryUsage().rss - rss0) / 1048576;
    const fd1 = await settled();
    console.log(`soak: ${N} kvm cases, fds ${fd0} -> ${fd1}, rss +${grown.toFixed(1)} MiB`);
    expect(fd1).toBe(fd0);
    expect(grown).toBeLessThan(64);
  }, 3_600_000);
});
