// Helpers for event-channel tests: build a model and issue EVTCHNOPs as a guest would.

import { ModelDriver } from '../drivers/model/model-driver.js';
import type { XenModel, Vcpu } from './domain.js';
import { EVTCHNOP } from './evtchn.js';
import { guestEvtchnOp, runUpcall, useFifo, guestSetMask } from '../ops/evtchn.js';
import { StructWriter } from '../ops/types.js';

export const SCRATCH = 0x100000;

export function buildModel(opts: { flavor?: 'xen' | 'kvm'; mode?: 64 | 32; vcpus?: number; domains?: Array<{ id: number; privileged?: boolean; limits?: Record<string, number> }> } = {}): XenModel {
  const doms = opts.domains ?? [{ id: 1 }];
  return new ModelDriver(opts.flavor ?? 'xen').build({
    mode: opts.mode ?? 64,
    xenVersion: { major: 4, minor: 19, extra: '.0' },
    scratch: SCRATCH,
    domains: doms.map((d) => ({
      id: d.id, vcpus: opts.vcpus ?? 1, privileged: d.privileged ?? false, memoryBytes: 16 << 20,
      sharedInfo: 0x80000, hypercallPage: 0x81000, limits: d.limits ?? {},
    })),
  });
}

const DOMID_SELF = 0x7ff0;

/** A guest-side EVTCHNOP client for one vCPU. */
export class Guest {
  constructor(readonly m: XenModel, readonly v: Vcpu) {}
  private op(cmd: number, w: StructWriter): { ret: number; out: DataView } {
    const r = guestEvtchnOp(this.m, this.v, cmd, SCRATCH, w.bytes);
    return { ret: Number(r.ret), out: new DataView(r.out.buffer, r.out.byteOffset, r.out.byteLength) };
  }
  /** Port number or negative errno. */
  allocUnbound(remote = DOMID_SELF, dom = DOMID_SELF): number {
    const r = this.op(EVTCHNOP.alloc_unbound, new StructWriter(8).u16(0, dom).u16(2, remote));
    return r.ret < 0 ? r.ret : r.out.getUint32(4, true);
  }
  bindInterdomain(remoteDom: number, remotePort: number): number {
    const r = this.op(EVTCHNOP.bind_interdomain, new StructWriter(12).u16(0, remoteDom).u32(4, remotePort));
    return r.ret < 0 ? r.ret : r.out.getUint32(8, true);
  }
  bindIpi(vcpu: number): number {
    const r = this.op(EVTCHNOP.bind_ipi, new StructWriter(8).u32(0, vcpu));
    return r.ret < 0 ? r.ret : r.out.getUint32(4, true);
  }
  bindVirq(virq: number, vcpu: number): number {
    const r = this.op(EVTCHNOP.bind_virq, new StructWriter(12).u32(0, virq).u32(4, vcpu));
    return r.ret < 0 ? r.ret : r.out.getUint32(8, true);
  }
  close(port: number): number { return this.op(EVTCHNOP.close, new StructWriter(4).u32(0, port)).ret; }
  send(port: number): number { return this.op(EVTCHNOP.send, new StructWriter(4).u32(0, port)).ret; }
  unmask(port: number): number { return this.op(EVTCHNOP.unmask, new StructWriter(4).u32(0, port)).ret; }
  bindVcpu(port: number, vcpu: number): number { return this.op(EVTCHNOP.bind_vcpu, new StructWriter(8).u32(0, port).u32(4, vcpu)).ret; }
  setPriority(port: number, prio: number): number { return this.op(EVTCHNOP.set_priority, new StructWriter(8).u32(0, port).u32(4, prio)).ret; }
  status(port: number, dom = DOMID_SELF): { ret: number; status: number; vcpu: number } {
    const r = this.op(EVTCHNOP.status, new StructWriter(24).u16(0, dom).u32(4, port));
    return { ret: r.ret, status: r.out.getUint32(8, true), vcpu: r.out.getUint32(12, true) };
  }
  expandArray(gfn: number): number { return this.op(EVTCHNOP.expand_array, new StructWriter(8).u64(0, gfn)).ret; }
  reset(dom = DOMID_SELF): number { return this.op(EVTCHNOP.reset, new StructWriter(2).u16(0, dom)).ret; }
  useFifo(pages = 1): number { return Number(useFifo(this.m, this.v, SCRATCH, pages, false).ret ?? 0n); }
  setMask(port: number, masked: boolean): boolean { return guestSetMask(this.v.domain, port, masked); }
  runUpcall(): number[] { return runUpcall(this.v); }
}
