// A session on a real hypervisor, driven through the xconf test guest: every guest step
// is a hypercall, MSR write or memory access the hypervisor answers, whoever hosts the
// guest (a Xen domain driven from dom0, xen/; QEMU's Xen emulation on KVM, qemu/).
// Nothing here answers for the hypervisor: a shadow of the reference model only follows
// the guest's registrations so memory paths (shared_info.…, runstate[0].…) resolve to
// the addresses the guest chose; the bytes read are the hypervisor's.
import { DriverError } from '../errors.js';
import { HYPERVISOR } from '../model/hypercall.js';
import { DOMID_SELF } from '../model/domain.js';
import { FIFO_LAYOUT } from '../ops/evtchn.js';
import { EVTCHNOP } from '../model/evtchn.js';
import type { Action, Outcome, StepPlacement } from '../ops/types.js';
import type { AreaView } from '../model/areas.js';
import { GuestMemory } from '../model/guest-memory.js';
import type { Session, SessionSetup } from './driver.js';
import type { ModelSession } from './model/model-driver.js';
import type { CommandResult, GuestCommand } from './kvm/guest.js';
import { blockAddress, GUEST_LAYOUT } from './kvm/guest.js';
import type { TestGuest } from './test-guest.js';
import { HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN, HVMOP_get_param, hvmParamArg, statusArg, storeFacts, TOOLSTACK_STORE_PORT, XenStoreRing, type StoreFacts } from './xen/xenstore-ring.js';
import { rawMessage, replyOut, requestMessage, takeEvent, type RawArgs, type RequestArgs } from '../ops/xenstore.js';
import { XS_RING } from '../model/xenstore-wire.js';

const XENMEM_add_to_physmap = 7n;
const EVTCHNOP_reset = 10n;
const XENMAPSPACE_shared_info = 0;
const HYPERCALL_MSR = 0x40000000;
/** How long xenstore.event waits for a watch event when none is queued (xenstored sends a WATCH's first event after its reply). */
const EVENT_WAIT_MS = 300;

/**
 * Of the host-side ops, the guest's own memory operations, run by the model's guest code
 * on the real guest's memory: Linux's upcall scan, a mask bit set with an atomic op,
 * grant entries written and revoked in the grant frames the guest placed.
 */
const GUEST_MEMORY_OPS = ['evtchn.run_upcall', 'evtchn.set_mask', 'gnttab.grant', 'gnttab.grant_range', 'gnttab.end_access'];

/** The page of a domain's xenstore ring, as the harness reaches it. */
export interface StorePage {
  read(offset: number, len: number): Buffer;
  write(offset: number, bytes: Buffer): void;
  close(): void;
}

/** What differs between the hypervisors a GuestSession runs on. */
export interface SessionPlatform {
  /** The ring page at `pfn` of the guest's domain. */
  storePage(guest: TestGuest, pfn: number): StorePage;
  /**
   * A host-side op the platform performs itself (QEMU's QMP, Xen's debug keys), or
   * undefined when it does not; `session` reads the guests' memory and areas.
   */
  hostOp?(guest: TestGuest, op: string, args: Record<string, unknown>, at: StepPlacement, session: GuestSession): Promise<Outcome> | undefined;
  /** Before a guest call on `vcpu`, with the shadow model's view of the case so far. */
  beforeCall?(guest: TestGuest, vcpu: number, shadow: ModelSession): void;
}

const FAULT_NAMES: Record<number, string> = { 0: 'DE', 3: 'BP', 6: 'UD', 13: 'GP', 14: 'PF' };

/**
 * The shadow model's memory: its own, except while a guest-side memory operation
 * (Linux's upcall scan, a mask bit set with an atomic op) runs, when it is the real
 * guest's (as the kvm target's VMM layer uses the VM's). The shadow's hypercalls
 * never write into the real guest: the hypervisor answered those.
 */
export class ShadowMemory extends GuestMemory {
  real?: TestGuest;
  override read(gpa: number, len: number): Uint8Array {
    if (!this.real || !this.contains(gpa, len)) return super.read(gpa, len);
    return new Uint8Array(this.real.read(gpa, len));
  }
  override write(gpa: number, bytes: Uint8Array): void {
    if (!this.real || !this.contains(gpa, bytes.length)) return super.write(gpa, bytes);
    this.real.write(gpa, Buffer.from(bytes));
  }
}

function faultOf(r: CommandResult | undefined): string | undefined {
  if (r?.status !== 'fault') return undefined;
  const vec = r.fault?.vector ?? -1;
  return FAULT_NAMES[vec] ?? `vector ${vec}`;
}

/** A domain's store: where the toolstack left it, and the connection once a case talks to it. */
interface Store {
  facts: StoreFacts;
  ring?: XenStoreRing;
  mapping?: StorePage;
}

export class GuestSession implements Session {
  private readonly stores = new Map<number, Store>();

  constructor(
    private readonly guests: Map<number, TestGuest>,
    private readonly setup: SessionSetup,
    private readonly shadow: ModelSession,
    private readonly shadowMemory: ReadonlyMap<number, ShadowMemory>,
    private readonly vendor: 'intel' | 'amd',
    private readonly platform: SessionPlatform,
  ) {}

  private guest(dom: number): TestGuest {
    const g = this.guests.get(dom);
    if (!g) throw new DriverError(`the case's setup creates no domain ${dom}`, { code: 'EINVAL' });
    return g;
  }

  /** What the case's setup asks of a fresh domain, done by its guest itself, as a Xen guest does it. */
  async start(): Promise<void> {
    for (const d of this.setup.domains) {
      const g = this.guest(d.id);
      const scratch = GUEST_LAYOUT.blockBase + GUEST_LAYOUT.harnessScratch;
      // The toolstack bound ports 1 and 2 (xenstore, console) to dom0; cases expect a
      // domain with no channels, so close them all as a guest may (EVTCHNOP_reset). First
      // the guest learns where its store is, to reconnect when a case talks to xenstore.
      const reset = Buffer.alloc(2);
      reset.writeUInt16LE(DOMID_SELF, 0);
      g.write(scratch, reset);
      const [pfnAt, portAt, statusAt] = [scratch + 0x100, scratch + 0x110, scratch + 0x120];
      g.write(pfnAt, hvmParamArg(HVM_PARAM_STORE_PFN));
      g.write(portAt, hvmParamArg(HVM_PARAM_STORE_EVTCHN));
      g.write(statusAt, statusArg(TOOLSTACK_STORE_PORT));
      const hvm = (at: number) => this.command(BigInt(HYPERVISOR.hvm_op), [HVMOP_get_param, BigInt(at)], 'auto');
      const evtchn = (cmd: bigint, at: number) => this.command(BigInt(HYPERVISOR.event_channel_op), [cmd, BigInt(at)], 'auto');
      const br = g.run(0, [hvm(pfnAt), hvm(portAt), evtchn(BigInt(EVTCHNOP.status), statusAt), evtchn(EVTCHNOP_reset, scratch)]);
      if (br.status !== 'done') throw new DriverError(`setup of domain ${d.id}: the guest did not finish its first commands (${br.status})`, { code: 'EIO' });
      const rr = br.results[3];
      if (faultOf(rr) || rr.retSigned !== 0n) throw new DriverError(`setup of domain ${d.id}: EVTCHNOP_reset(DOMID_SELF) gave ${faultOf(rr) ?? rr.retSigned}`, { code: 'EIO' });
      if (br.results.slice(0, 3).every((x) => !faultOf(x) && x.retSigned === 0n)) {
        this.stores.set(d.id, { facts: storeFacts(g.read(pfnAt, 16), g.read(portAt, 16), g.read(statusAt, 24)) });
      }
      if (d.sharedInfo !== null) {
        const wide = this.setup.mode === 64;
        const b = Buffer.alloc(wide ? 24 : 16);
        b.writeUInt16LE(DOMID_SELF, 0);
        b.writeUInt32LE(XENMAPSPACE_shared_info, 4);
        if (wide) b.writeBigUInt64LE(BigInt(d.sharedInfo / 4096), 16);
        else b.writeUInt32LE(d.sharedInfo / 4096, 12);
        g.write(scratch, b);
        const r = await this.call(d.id, 0, BigInt(HYPERVISOR.memory_op), [XENMEM_add_to_physmap, BigInt(scratch)], 'auto');
        if (r.fault || r.ret !== 0n) throw new DriverError(`setup of domain ${d.id}: XENMEM_add_to_physmap(shared_info at 0x${d.sharedInfo.toString(16)}) gave ${r.fault ?? r.ret}`, { code: 'EIO' });
      }
      if (d.hypercallPage !== null) {
        const r = g.run(0, [{ op: 'wrmsr', msr: HYPERCALL_MSR, value: d.hypercallPage }]);
        if (r.status !== 'done' || r.results[0]?.status !== 'ok') throw new DriverError(`setup of domain ${d.id}: writing the hypercall MSR failed (${r.status})`, { code: 'EIO' });
        for (let i = 0; i < d.vcpus; i++) g.setHypercallPage(i, d.hypercallPage);
      }
    }
  }

  /**
   * The guest command for one hypercall. `auto` is the CPU's own instruction, as the
   * model reads it: Xen's hypercall page has ud2 in some slots (iret), so a call the
   * case did not route through the page must not land there.
   */
  private command(nr: bigint, args: readonly bigint[], via: StepPlacement['via'], cpl3 = false): GuestCommand {
    const usePage = via === 'page';
    return usePage
      ? { op: 'hypercall', nr: Number(nr & 0x7fn), args, cpl3 }
      : { op: via === 'vmcall' || (via === 'auto' && this.vendor === 'intel') ? 'vmcall' : 'vmmcall', rax: nr, args, cpl3 };
  }

  private async call(dom: number, vcpu: number, nr: bigint, args: readonly bigint[], via: StepPlacement['via'], cpl3 = false): Promise<Outcome & { result?: CommandResult }> {
    const g = this.guest(dom);
    this.platform.beforeCall?.(g, vcpu, this.shadow);
    const r = g.run(vcpu, [this.command(nr, args, via, cpl3)]);
    if (r.status === 'timeout') throw new DriverError(`domain ${dom} vCPU ${vcpu} did not finish its command in time`, { code: 'ETIMEDOUT' });
    if (r.status === 'guest-fault') return { fault: `guest-fault vector ${r.fault?.vector ?? '?'}` };
    const fault = faultOf(r.results[0]);
    return fault ? { fault } : { ret: r.results[0].retSigned, result: r.results[0] };
  }

  async apply(action: Action, at: StepPlacement): Promise<Outcome> {
    const g = this.guest(at.dom);
    if (at.vcpu >= g.vcpus) throw new DriverError(`no vCPU ${at.vcpu} in domain ${at.dom}`, { code: 'EINVAL' });
    switch (action.kind) {
      case 'check':
        return {};
      case 'write':
        for (const w of action.writes) g.write(w.gpa, Buffer.from(w.bytes));
        this.shadow.applyNow(action, at);
        return {};
      case 'wrmsr': {
        const r = g.run(at.vcpu, [{ op: 'wrmsr', msr: action.msr, value: action.value }]);
        if (r.status === 'timeout') throw new DriverError('the guest did not finish its MSR write in time', { code: 'ETIMEDOUT' });
        const fault = r.status === 'guest-fault' ? `guest-fault vector ${r.fault?.vector ?? '?'}` : faultOf(r.results[0]);
        if (!fault && action.msr === HYPERCALL_MSR) {
          for (let i = 0; i < g.vcpus; i++) g.setHypercallPage(i, Number(action.value & ~0xfffn));
        }
        this.shadow.applyNow(action, at);
        return { fault };
      }
      case 'hypercall': {
        if (action.regs && Object.keys(action.regs).length) throw new DriverError('explicit registers are not supported by the test guest', { code: 'ENOTSUP' });
        if (at.cpl !== 0 && at.cpl !== 3) throw new DriverError(`the test guest runs at CPL 0 or 3, not ${at.cpl}`, { code: 'ENOTSUP' });
        for (const w of action.writes) g.write(w.gpa, Buffer.from(w.bytes));
        const o = await this.call(at.dom, at.vcpu, BigInt(action.nr), action.args, at.via, at.cpl === 3);
        if (o.fault) {
          this.shadow.applyNow(action, at);
          return { fault: o.fault };
        }
        // Xen's answer is read before the shadow follows the call (it only tracks where areas are).
        const out = action.out ? action.out.decode(new Uint8Array(g.read(action.out.gpa, action.out.size))) : undefined;
        this.shadow.applyNow(action, at);
        return { ret: o.ret, out };
      }
      case 'host': {
        if (GUEST_MEMORY_OPS.includes(action.op)) {
          // Done on the real guest's memory by the model's guest code, which is what it is.
          const mem = this.shadowMemory.get(at.dom)!;
          mem.real = g;
          try {
            const { servedBy: _model, ...o } = this.shadow.applyNow(action, at);
            return o;
          } finally {
            mem.real = undefined;
          }
        }
        const o = await this.host(action.op, action.args, at);
        this.shadow.applyNow(action, at);
        return o;
      }
    }
  }

  private async host(op: string, args: Record<string, unknown>, at: StepPlacement): Promise<Outcome> {
    const own = this.platform.hostOp?.(this.guest(at.dom), op, args, at, this);
    if (own) return own;
    switch (op) {
      case 'evtchn.use_fifo':
        return (args.enable ?? 1n) === 0n ? { ret: 0n } : this.useFifo(at.dom, Number(args.scratch as bigint), Number((args.pages as bigint | undefined) ?? 1n), (args.mask_all ?? 0n) !== 0n);
      case 'evtchn.alloc_many':
        return this.allocMany(args, at);
      case 'xenstore.request':
      case 'xenstore.raw':
      case 'xenstore.event':
      case 'xenstore.params':
        return this.xenstore(op, args, at);
    }
    throw new DriverError(`op ${op} is not implemented by this target`, { code: 'ENOSYS' });
  }

  /**
   * One guest hypercall (nr, cmd, the struct's address[, count]) on the harness scratch of
   * vCPU `vcpu`'s block, its struct written first; the struct read back.
   */
  async scratchCall(dom: number, vcpu: number, nr: number, cmd: bigint, offset: number, arg: Buffer, count?: bigint): Promise<{ ret: bigint; out: Buffer }> {
    const g = this.guest(dom);
    const at = blockAddress(vcpu) + GUEST_LAYOUT.harnessScratch + offset;
    g.write(at, arg);
    const r = await this.call(dom, vcpu, BigInt(nr), count === undefined ? [cmd, BigInt(at)] : [cmd, BigInt(at), count], 'auto');
    if (r.fault) throw new DriverError(`domain ${dom}: the guest faulted (${r.fault}) in hypercall ${nr} command ${cmd} on its store`, { code: 'EIO' });
    return { ret: r.ret!, out: g.read(at, arg.length) };
  }

  /**
   * The store connection of a domain: the guest binds to xenstored's port again (the
   * session's EVTCHNOP_reset closed its own), and dom0 maps the ring page as the guest's;
   * the guest's EVTCHNOP_send on its new port is the doorbell.
   */
  private async storeRing(dom: number, vcpu: number): Promise<XenStoreRing> {
    const s = this.stores.get(dom);
    if (!s) throw new DriverError(`domain ${dom}: its guest could not read HVM_PARAM_STORE_PFN / STORE_EVTCHN when the session began`, { code: 'EIO' });
    if (s.ring) return s.ring;
    const { pfn, port, remotePort } = s.facts;
    if (remotePort === null) throw new DriverError(`domain ${dom}: its store port ${port} was not bound to dom0 when the session began (the toolstack binds port ${TOOLSTACK_STORE_PORT})`, { code: 'EIO' });
    const bind = Buffer.alloc(12);
    bind.writeUInt16LE(0, 0);
    bind.writeUInt32LE(remotePort, 4);
    const b = await this.scratchCall(dom, vcpu, HYPERVISOR.event_channel_op, BigInt(EVTCHNOP.bind_interdomain), 0x140, bind);
    if (b.ret !== 0n) throw new DriverError(`domain ${dom}: binding to xenstored's port ${remotePort} again gave ${b.ret}`, { code: 'EIO' });
    const local = b.out.readUInt32LE(8);
    const mapping = this.platform.storePage(this.guest(dom), pfn);
    s.mapping = mapping;
    const send = Buffer.alloc(4);
    send.writeUInt32LE(local, 0);
    s.ring = new XenStoreRing({
      read: (o, n) => mapping.read(o, n),
      write: (o, bytes) => mapping.write(o, bytes),
      notify: async () => {
        const r = await this.scratchCall(dom, vcpu, HYPERVISOR.event_channel_op, BigInt(EVTCHNOP.send), 0x150, send);
        if (r.ret !== 0n) throw new DriverError(`domain ${dom}: EVTCHNOP_send on its store port ${local} gave ${r.ret}`, { code: 'EIO' });
      },
    });
    return s.ring;
  }

  /** The xenstore ops on the toolstack's xenstored, over the domain's real ring. */
  private async xenstore(op: string, args: Record<string, unknown>, at: StepPlacement): Promise<Outcome> {
    const ring = await this.storeRing(at.dom, at.vcpu);
    switch (op) {
      case 'xenstore.request':
      case 'xenstore.raw': {
        const msg = op === 'xenstore.request' ? requestMessage(args as RequestArgs, at.dom) : rawMessage(args as RawArgs);
        if (typeof msg === 'string') return { fault: msg };
        await ring.send(msg, args.req_prod === undefined ? undefined : Number(args.req_prod as bigint));
        return { out: replyOut(await ring.reply(), ring.bad()) };
      }
      case 'xenstore.event': {
        await ring.collectEvents(ring.events.length ? 0 : EVENT_WAIT_MS);
        return { out: takeEvent(ring.events) };
      }
      default: {
        const s = this.stores.get(at.dom)!;
        const u = (o: number) => BigInt(s.mapping!.read(o, 4).readUInt32LE(0));
        return {
          out: {
            pfn: BigInt(s.facts.pfn), port: BigInt(s.facts.port), req_cons: u(XS_RING.reqCons), req_prod: u(XS_RING.reqProd),
            rsp_cons: u(XS_RING.rspCons), rsp_prod: u(XS_RING.rspProd), connection: u(XS_RING.connection),
          },
        };
      }
    }
  }

  /**
   * evtchn.alloc_many: the guest's loop of EVTCHNOP_alloc_unbound in queues of up to
   * GUEST_LAYOUT.maxCmds calls, one struct for all (dom and remote_dom are inputs only,
   * the port is written back on success: xen/common/event_channel.c), as on kvm.
   */
  private async allocMany(args: Record<string, unknown>, at: StepPlacement): Promise<Outcome> {
    const g = this.guest(at.dom);
    const count = args.count as bigint;
    const scratch = Number(args.scratch as bigint);
    const b = Buffer.alloc(8);
    b.writeUInt16LE(DOMID_SELF, 0);
    b.writeUInt16LE((args.remote_dom === undefined ? DOMID_SELF : Number(args.remote_dom as bigint)) & 0xffff, 2);
    g.write(scratch, b);
    const lastPort = () => BigInt(g.read(scratch + 4, 4).readUInt32LE(0));
    const call = this.command(BigInt(HYPERVISOR.event_channel_op), [BigInt(EVTCHNOP.alloc_unbound), BigInt(scratch)], 'auto');
    let allocated = 0n;
    while (allocated < count) {
      const r = g.run(at.vcpu, Array(Math.min(Number(count - allocated), GUEST_LAYOUT.maxCmds)).fill(call));
      if (r.status === 'timeout') throw new DriverError('the guest did not finish its EVTCHNOP_alloc_unbound loop in time', { code: 'ETIMEDOUT' });
      if (r.status === 'guest-fault') return { fault: `guest-fault vector ${r.fault?.vector ?? '?'}` };
      for (const x of r.results) {
        const fault = faultOf(x);
        if (fault) return { fault };
        if (x.retSigned !== 0n) return { ret: x.retSigned, out: { allocated, last: lastPort() } };
        allocated++;
      }
    }
    return { ret: 0n, out: { allocated, last: lastPort() } };
  }

  /**
   * The guest switches to FIFO as Linux does and as the model's op does (ops/evtchn.ts
   * useFifo): EVTCHNOP_init_control with a zeroed control block per vCPU, then
   * EVTCHNOP_expand_array for each event array page; real hypercalls, answered by Xen.
   */
  private async useFifo(dom: number, scratch: number, pages: number, maskAll: boolean): Promise<Outcome> {
    const PAGE = 4096;
    const g = this.guest(dom);
    for (let vcpu = 0; vcpu < g.vcpus; vcpu++) {
      const cb = FIFO_LAYOUT.controlBase + vcpu * PAGE;
      g.write(cb, Buffer.alloc(PAGE));
      const init = Buffer.alloc(24);
      init.writeBigUInt64LE(BigInt(cb / PAGE), 0);
      init.writeUInt32LE(vcpu, 12);
      g.write(scratch, init);
      const r = await this.call(dom, 0, BigInt(HYPERVISOR.event_channel_op), [BigInt(EVTCHNOP.init_control), BigInt(scratch)], 'auto');
      if (r.fault || r.ret !== 0n) return r.fault ? { fault: r.fault } : { ret: r.ret };
    }
    for (let i = 0; i < pages; i++) {
      const page = FIFO_LAYOUT.arrayBase + i * PAGE;
      const init = Buffer.alloc(PAGE);
      if (maskAll) for (let o = 0; o < PAGE; o += 4) init[o + 3] = 0x40; // MASKED (bit 30)
      g.write(page, init);
      const arg = Buffer.alloc(8);
      arg.writeBigUInt64LE(BigInt(page / PAGE), 0);
      g.write(scratch, arg);
      const r = await this.call(dom, 0, BigInt(HYPERVISOR.event_channel_op), [BigInt(EVTCHNOP.expand_array), BigInt(scratch)], 'auto');
      if (r.fault || r.ret !== 0n) return r.fault ? { fault: r.fault } : { ret: r.ret };
    }
    return { ret: 0n };
  }

  /** Destroy one of the case's domains now (gnttab.domain_destroy); later steps cannot name it. */
  destroyDomain(dom: number): void {
    const g = this.guest(dom);
    this.stores.get(dom)?.mapping?.close();
    this.stores.delete(dom);
    this.guests.delete(dom);
    g.destroy();
  }

  async read(dom: number, gpa: number, len: number): Promise<Uint8Array> {
    return new Uint8Array(this.guest(dom).read(gpa, len));
  }

  areas(dom: number): AreaView {
    return this.shadow.areas(dom);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const s of this.stores.values()) s.mapping?.close();
    destroyAll([...this.guests.values()]);
  }
}

/** Destroy every domain, each even if another fails; the first failure is reported. */
export function destroyAll(guests: TestGuest[]): void {
  let first: unknown;
  for (const g of guests) {
    try {
      g.destroy();
    } catch (e) {
      first ??= e;
    }
  }
  if (first) throw first;
}

