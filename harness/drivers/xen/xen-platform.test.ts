import { describe, expect, it } from 'vitest';
import { parseDomainDump } from './domain-dump.js';
import { backendUnsupported, XEN_PLATFORM_OPS } from './xen-platform.js';
import { parseXlInfo, xenCapabilities } from './xen-driver.js';
import { BACKEND_KIND, BACKEND_POLICY } from '../../model/backend-memory.js';
import { hostOpCapability, hostOpOutCapability } from '../../ops/types.js';

// The shape of debug key 'q' on Xen 4.17 (xen/common/keyhandler.c dump_domains), abridged;
// a first dump, then the one that counts.
const Q = `(XEN) 'q' pressed -> dumping domain info (now = 100)
(XEN) General information for domain 1:
(XEN) VCPU information and callbacks for domain 1:
(XEN)   UNIT0 affinities: hard={0-1} soft={0-1}
(XEN)     VCPU0: CPU0 [has=F] poll=5 upcall_pend=00 upcall_mask=00
(XEN) 'q' pressed -> dumping domain info (now = 200)
(XEN) General information for domain 0:
(XEN)     refcnt=3 dying=0 pause_count=0
(XEN) VCPU information and callbacks for domain 0:
(XEN)   UNIT0 affinities: hard={0-1} soft={0-1}
(XEN)     VCPU0: CPU1 [has=T] poll=0 upcall_pend=00 upcall_mask=00 dirty_cpu=1
(XEN)     pause_count=0 pause_flags=0
(XEN) General information for domain 2:
(XEN)     nr_pages=4096 xenheap_pages=5 dirty_cpus={} max_pages=4352
(XEN) VCPU information and callbacks for domain 2:
(XEN)   UNIT0 affinities: hard={0-1} soft={0-1}
(XEN)     VCPU0: CPU0 [has=F] poll=0 upcall_pend=01 upcall_mask=00
(XEN)     pause_count=0 pause_flags=4
(XEN)   UNIT1 affinities: hard={0-1} soft={0-1}
(XEN)     VCPU1: CPU1 [has=F] poll=-1 upcall_pend=00 upcall_mask=01
(XEN)     pause_count=0 pause_flags=1
`;

describe('the domain dump of debug key q', () => {
  it('gives each domain\'s vCPUs from the last dump: poll_evtchn and whether it runs', () => {
    const d = parseDomainDump(Q);
    expect([...d.keys()]).toEqual([0, 2]);
    expect(d.get(0)!.get(0)).toEqual({ pollEvtchn: 0, running: true });
    expect(d.get(2)!.get(0)).toEqual({ pollEvtchn: 0, running: false });
    expect(d.get(2)!.get(1)).toEqual({ pollEvtchn: -1, running: false });
    expect(parseDomainDump(Q.slice(0, Q.indexOf("(XEN) 'q' pressed", 10))).get(1)!.get(0)!.pollEvtchn).toBe(5);
  });

  it('a ring without a dump is an error that says so', () => {
    expect(() => parseDomainDump('(XEN) nothing here\n')).toThrow(/holds no domain dump/);
  });
});

describe('the xen target\'s backend', () => {
  it('is a guest-domain backend mapping into unpopulated space; other kinds and policies say why they cannot run', () => {
    expect(backendUnsupported({})).toBeUndefined();
    expect(backendUnsupported({ max_grant_frames: 4 })).toBeUndefined();
    expect(backendUnsupported({ backend_policy: BACKEND_POLICY.unpopulated, backend_max_per_frontend: 16 })).toBeUndefined();
    expect(backendUnsupported({ backend_kind: BACKEND_KIND.host })).toMatch(/in-host backend/);
    expect(backendUnsupported({ backend_max_per_frontend: 16 })).toMatch(/unpopulated space only/);
    expect(backendUnsupported({ backend_policy: BACKEND_POLICY.balloon_reserve })).toMatch(/unpopulated space only/);
  });

  it('its ops and sched.status are capabilities of the target; what dom0 cannot count skips naming itself', () => {
    const caps = xenCapabilities(parseXlInfo('xen_major : 4\nxen_minor : 17\nvirt_caps : hvm gnttab-v1\n', 'vendor_id : AuthenticAMD'));
    for (const op of XEN_PLATFORM_OPS) expect(caps.has.has(hostOpCapability(op)), op).toBe(true);
    for (const k of ['blocked', 'polling', 'poll_port', 'shutdown', 'shutdown_code']) expect(caps.has.has(hostOpOutCapability('sched.status', k)), k).toBe(true);
    expect(caps.missing.get(hostOpOutCapability('sched.status', 'yields'))).toMatch(/only the model/);
    expect(caps.missing.get(hostOpOutCapability('sched.status', 'wakeups'))).toMatch(/only the model/);
    expect(caps.missing.get('sched.shutdown_continues')).toMatch(/domain_shutdown/);
    expect(caps.has.has(hostOpCapability('gnttab.backend_stats'))).toBe(false);
  });
});
