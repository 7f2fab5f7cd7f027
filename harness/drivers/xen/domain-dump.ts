// What dom0 can see of a vCPU's poll state: debug key 'q' prints every domain's
// vCPUs into the console ring (xen/common/keyhandler.c dump_domains: per domain a
// "VCPU information and callbacks for domain <N>:" header, then per vCPU a line
// "VCPU<i>: CPU<c> [has=T|F] poll=<port> ..."). `poll` is v->poll_evtchn, which
// do_poll (xen/common/sched/core.c) sets to the polled port when one port is polled,
// -1 for several, and which is 0 when the vCPU is not polling.
import { DriverError } from '../../errors.js';

const START = "'q' pressed -> dumping domain info";

export interface VcpuDump {
  /** v->poll_evtchn: the polled port, -1 for several, 0 when not polling. */
  pollEvtchn: number;
  running: boolean;
}

/** The last 'q' dump in a console ring text: per domain id, its vCPUs by id. */
export function parseDomainDump(ring: string): Map<number, Map<number, VcpuDump>> {
  const start = ring.lastIndexOf(START);
  if (start < 0) {
    throw new DriverError("Xen's console ring holds no domain dump (debug key 'q'): was it overwritten, or is the ring too small?", { code: 'EIO' });
  }
  const out = new Map<number, Map<number, VcpuDump>>();
  let cur: Map<number, VcpuDump> | undefined;
  for (const line of ring.slice(start).split('\n')) {
    const h = /VCPU information and callbacks for domain (\d+):/.exec(line);
    if (h) {
      cur = new Map();
      out.set(Number(h[1]), cur);
      continue;
    }
    if (/General information for domain \d+:/.test(line)) {
      cur = undefined;
      continue;
    }
    const v = /\bVCPU(\d+): CPU\d+ \[has=([TF])\] poll=(-?\d+)/.exec(line);
    if (v && cur) cur.set(Number(v[1]), { pollEvtchn: Number(v[3]), running: v[2] === 'T' });
  }
  return out;
}
