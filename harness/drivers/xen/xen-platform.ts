// The host-side ops the xen target does itself, from dom0 or as a backend running
// in a guest domain: Xen's grant and domain dumps (debug keys 'g' and 'q'), vCPU and
// domain state (domctl getvcpuinfo / getdomaininfo), a grant-mapping backend, and
// destroying a domain. The rest of a session is guest-session.ts.
import { DriverError } from '../../errors.js';
import { HYPERVISOR } from '../../model/hypercall.js';
import { GNTMAP, GNTST, GNTTABOP } from '../../model/gnttab.js';
import { BACKEND_KIND, BACKEND_POLICY } from '../../model/backend-memory.js';
import type { SessionSetup } from '../driver.js';
import type { GuestSession, SessionPlatform } from '../guest-session.js';
import type { TestGuest } from '../test-guest.js';
import type { Outcome, StepPlacement } from '../../ops/types.js';
import { activeFromDump, maptrackFromDump, parseGrantDump } from './grant-dump.js';
import { parseDomainDump } from './domain-dump.js';
import { xenAddon } from './native.js';
import type { XenGuest } from './xen-guest.js';
import { DEFAULT_UPCALL_FLAGS } from '../kvm/guest.js';
import { callbackVector } from '../../model/hvm-op.js';
import type { ModelSession } from '../model/model-driver.js';

/** The host ops xen-platform.ts performs. */
export const XEN_PLATFORM_OPS = ['gnttab.active', 'gnttab.maptrack', 'sched.status', 'gnttab.backend_flood', 'gnttab.backend_unmap',
  'gnttab.backend_unmap_all', 'gnttab.domain_destroy'];

/** OUT values of those ops that dom0 cannot see. */
export const XEN_PLATFORM_UNOBSERVABLE: Record<string, string> = {
  'gnttab.maptrack.orphaned': 'Xen\'s grant table dump (debug key g) shows no orphaned maptrack entries: only the model can count them',
  'gnttab.maptrack.p2m_grants': 'Xen\'s grant table dump (debug key g) shows no p2m grant mappings: only the model can count them',
  'sched.status.wakeups': 'Xen counts no wake-ups a guest or dom0 can read: only the model can show them',
  'sched.status.yields': 'Xen counts no SCHEDOP_yield calls a guest or dom0 can read: only the model can show them',
};

/** XEN_DOMINF_shutdown and the shutdown code's place in the flags (public/domctl.h). */
const XEN_DOMINF_SHUTDOWN = 1 << 2;
const XEN_DOMINF_SHUTDOWNSHIFT = 16;
const PAGE = 4096;
/** Where in a vCPU's harness scratch the backend's map / unmap structs go. */
const BACKEND_SCRATCH = 0x200;

/** Where the last read of Xen's console ring ended: one per driver, sessions follow on. */
export interface ConsoleCursor { at: number }

/**
 * A backend kernel in a guest domain (model/backend-memory.ts, kind guest, policy
 * unpopulated): each mapping takes a frame of unused guest-physical space above RAM
 * (Linux's xen_alloc_unpopulated_pages) and maps the grant there with
 * GNTTABOP_map_grant_ref from the backend domain's own vCPU; Xen answers.
 */
interface Backend {
  perFrontend: number;
  unpopulated: number;
  mappings: Map<number, { gfn: number; frontend: number }>;
  perFrontendCount: Map<number, number>;
  freeGfns: number[];
  nextGfn: number;
}

export class XenPlatform implements SessionPlatform {
  private readonly backends = new Map<number, Backend>();
  /** The vcpu_info each guest vCPU's upcall handler clears (0: none), by `dom/vcpu`. */
  private readonly watches = new Map<string, number>();

  constructor(private readonly setup: SessionSetup, private readonly console: ConsoleCursor) {}

  storePage(guest: TestGuest, pfn: number) {
    return new (xenAddon().Mapping)(guest.domid, pfn, 1);
  }

  hostOp(guest: TestGuest, op: string, args: Record<string, unknown>, at: StepPlacement, session: GuestSession): Promise<Outcome> | undefined {
    switch (op) {
      case 'gnttab.active':
      case 'gnttab.maptrack': {
        const dump = parseGrantDump(this.debugKey('g'));
        return op === 'gnttab.active' ? activeFromDump(dump, at.dom, Number(args.ref as bigint), session) : Promise.resolve(maptrackFromDump(dump, at.dom));
      }
      case 'sched.status':
        return Promise.resolve(this.schedStatus(guest, at.vcpu));
      case 'gnttab.backend_flood':
        return this.backendFlood(session, at, args);
      case 'gnttab.backend_unmap':
        return this.backendUnmap(session, at, Number(args.handle as bigint)).then((status) => ({ out: { status: BigInt(status) } }));
      case 'gnttab.backend_unmap_all':
        return this.backendUnmapAll(session, at, args.frontend === undefined ? undefined : Number(args.frontend as bigint));
      case 'gnttab.domain_destroy': {
        const dom = Number(args.domid as bigint);
        session.destroyDomain(dom);
        this.backends.delete(dom);
        return Promise.resolve({});
      }
    }
    return undefined;
  }

  /**
   * A domain callback of the vector type (HVM_PARAM_CALLBACK_IRQ) is taken for as long as
   * evtchn_upcall_pending is set (xen/arch/x86/hvm/irq.c hvm_vcpu_has_pending_irq): a guest
   * that did not clear it would take it forever. So while the case has one, the guest's
   * handler clears the vCPU's evtchn_upcall_pending, as Linux's upcall handler does first.
   */
  beforeCall(guest: TestGuest, vcpu: number, shadow: ModelSession): void {
    const d = shadow.model.domain(guest.domid);
    const vi = d && callbackVector(d) !== null ? d.vcpu(vcpu)?.vcpuInfoAddress() ?? 0 : 0;
    const key = `${guest.domid}/${vcpu}`;
    if ((this.watches.get(key) ?? 0) === vi) return;
    // Only the watch changes: the handler clears nothing without one, and EOIs as it always does.
    (guest as XenGuest).setUpcallWatch(vcpu, vi, DEFAULT_UPCALL_FLAGS);
    this.watches.set(key, vi);
  }

  /** Send one debug key and return what its handler printed (the ring read on from the last read). */
  private debugKey(key: string): string {
    const x = xenAddon();
    this.console.at = x.readConsole(this.console.at).index;
    x.debugKeys(key);
    const read = x.readConsole(this.console.at);
    this.console.at = read.index;
    return read.text;
  }

  /**
   * blocked: the vCPU's _VPF_blocked (domctl getvcpuinfo); polling and poll_port: its
   * poll_evtchn (debug key 'q'); shutdown and its code: domctl getdomaininfo.
   */
  private schedStatus(guest: TestGuest, vcpu: number): Outcome {
    const x = xenAddon();
    const d = x.domainInfo(guest.domid);
    if (!d) throw new DriverError(`domain ${guest.domid} no longer exists`, { code: 'EIO' });
    const v = x.vcpuInfo(guest.domid, vcpu);
    const dumped = parseDomainDump(this.debugKey('q')).get(guest.domid)?.get(vcpu);
    if (!dumped) throw new DriverError(`Xen's domain dump (debug key 'q') lists no vCPU ${vcpu} of domain ${guest.domid}`, { code: 'EIO' });
    return {
      out: {
        blocked: v.blocked ? 1n : 0n,
        polling: dumped.pollEvtchn !== 0 ? 1n : 0n,
        poll_port: BigInt(dumped.pollEvtchn),
        shutdown: d.flags & XEN_DOMINF_SHUTDOWN ? 1n : 0n,
        shutdown_code: BigInt((d.flags >>> XEN_DOMINF_SHUTDOWNSHIFT) & 0xff),
      },
    };
  }

  private backend(dom: number): Backend {
    let b = this.backends.get(dom);
    if (b) return b;
    const d = this.setup.domains.find((x) => x.id === dom);
    if (!d) throw new DriverError(`the case's setup creates no domain ${dom}`, { code: 'EINVAL' });
    const limit = (k: string, dflt: number) => d.limits[k] ?? dflt;
    b = {
      perFrontend: limit('backend_max_per_frontend', Number.MAX_SAFE_INTEGER),
      unpopulated: limit('backend_unpopulated_pages', 65536),
      mappings: new Map(),
      perFrontendCount: new Map(),
      freeGfns: [],
      // As the model's backend: unused space starts 1 GiB above the domain's RAM.
      nextGfn: d.memoryBytes / PAGE + (1 << 18),
    };
    this.backends.set(dom, b);
    return b;
  }

  private async backendFlood(session: GuestSession, at: StepPlacement, a: Record<string, unknown>): Promise<Outcome> {
    const b = this.backend(at.dom);
    const frontend = Number(a.frontend as bigint);
    const c = { ok: 0n, refused: 0n, no_space: 0n, general_error: 0n, other: 0n, last_status: 0n };
    for (let i = 0; i < Number(a.count as bigint); i++) {
      const ref = Number(a.first_ref as bigint) + (a.same_ref ? 0 : i);
      let status: number;
      if ((b.perFrontendCount.get(frontend) ?? 0) >= b.perFrontend) {
        // The backend's own bound: refused (-ENOSPC) with no hypercall.
        status = GNTST.no_space;
        c.refused++;
      } else {
        status = await this.backendMap(session, at, b, frontend, ref, a.readonly === true);
        if (status === GNTST.okay) c.ok++;
        else if (status === GNTST.no_space) c.no_space++;
        else if (status === GNTST.general_error) c.general_error++;
        else c.other++;
      }
      c.last_status = BigInt(status);
    }
    return { out: c };
  }

  private async backendMap(session: GuestSession, at: StepPlacement, b: Backend, frontend: number, ref: number, readonly: boolean): Promise<number> {
    if (b.mappings.size >= b.unpopulated) {
      throw new DriverError(`the backend in domain ${at.dom} used its ${b.unpopulated} unpopulated frames; ballooning RAM out is the model's alone here`, { code: 'EUNSUPPORTED' });
    }
    const gfn = b.freeGfns.pop() ?? b.nextGfn++;
    const arg = Buffer.alloc(32); // struct gnttab_map_grant_ref, the same in both widths
    arg.writeBigUInt64LE(BigInt(gfn) * BigInt(PAGE), 0);
    arg.writeUInt32LE(GNTMAP.host_map | (readonly ? GNTMAP.readonly : 0), 8);
    arg.writeUInt32LE(ref, 12);
    arg.writeUInt16LE(frontend, 16);
    const r = await session.scratchCall(at.dom, at.vcpu, HYPERVISOR.grant_table_op, BigInt(GNTTABOP.map_grant_ref), BACKEND_SCRATCH, arg, 1n);
    if (r.ret !== 0n) throw new DriverError(`domain ${at.dom}: GNTTABOP_map_grant_ref itself gave ${r.ret}`, { code: 'EIO' });
    const status = r.out.readInt16LE(18);
    if (status !== GNTST.okay) {
      b.freeGfns.push(gfn);
      return status;
    }
    const handle = r.out.readUInt32LE(20);
    b.mappings.set(handle, { gfn, frontend });
    b.perFrontendCount.set(frontend, (b.perFrontendCount.get(frontend) ?? 0) + 1);
    return status;
  }

  private async backendUnmap(session: GuestSession, at: StepPlacement, handle: number): Promise<number> {
    const b = this.backend(at.dom);
    const m = b.mappings.get(handle);
    if (!m) return GNTST.bad_handle;
    const arg = Buffer.alloc(24); // struct gnttab_unmap_grant_ref
    arg.writeBigUInt64LE(BigInt(m.gfn) * BigInt(PAGE), 0);
    arg.writeUInt32LE(handle, 16);
    const r = await session.scratchCall(at.dom, at.vcpu, HYPERVISOR.grant_table_op, BigInt(GNTTABOP.unmap_grant_ref), BACKEND_SCRATCH, arg, 1n);
    if (r.ret !== 0n) throw new DriverError(`domain ${at.dom}: GNTTABOP_unmap_grant_ref itself gave ${r.ret}`, { code: 'EIO' });
    const status = r.out.readInt16LE(20);
    if (status === GNTST.okay) {
      b.mappings.delete(handle);
      const n = (b.perFrontendCount.get(m.frontend) ?? 1) - 1;
      if (n > 0) b.perFrontendCount.set(m.frontend, n);
      else b.perFrontendCount.delete(m.frontend);
      b.freeGfns.push(m.gfn);
    }
    return status;
  }

  private async backendUnmapAll(session: GuestSession, at: StepPlacement, frontend: number | undefined): Promise<Outcome> {
    let n = 0;
    for (const [h, m] of [...this.backend(at.dom).mappings]) {
      if (frontend !== undefined && m.frontend !== frontend) continue;
      if ((await this.backendUnmap(session, at, h)) === GNTST.okay) n++;
    }
    return { out: { unmapped: BigInt(n) } };
  }
}

/** Why a case's backend limits cannot be met here, or undefined when they can. */
export function backendUnsupported(limits: Record<string, number>): string | undefined {
  if ((limits.backend_kind ?? BACKEND_KIND.guest) !== BACKEND_KIND.guest) {
    return 'an in-host backend (backend_kind host) is a VMM serving the device itself; on Xen the backend is a guest domain';
  }
  if (Object.keys(limits).some((k) => k.startsWith('backend_')) && limits.backend_policy !== BACKEND_POLICY.unpopulated) {
    return 'the xen target\'s backend maps into unpopulated space only (backend_policy BACKEND_POLICY_unpopulated); ballooning RAM out is the model\'s alone';
  }
  return undefined;
}
