// The guest end of a real xenstore connection, for the xen target: the ring page the
// toolstack gave the domain (HVM_PARAM_STORE_PFN), read and written from dom0 through a
// foreign mapping as the guest's own bytes, and the guest's EVTCHNOP_send on its store
// port as the doorbell, so the toolstack's xenstored in dom0 answers. The layout and the
// rules are the model's (model/xenstore-wire.ts): struct xenstore_domain_interface and
// docs/misc/xenstore-ring.txt (indexes free-running, the `error` field set by a server
// that gave up on the connection: xenstored_core.c ignore_connection, Xen 4.17).
import { XS, XS_RING, XENSTORE_RING_SIZE } from '../../model/xenstore-wire.js';
import { takeMessage, type Reply } from '../../ops/xenstore.js';
import { DOMID_SELF } from '../../model/domain.js';

/** The ring page and the doorbell, as the guest has them. */
export interface RingIo {
  read(offset: number, len: number): Buffer;
  write(offset: number, bytes: Buffer): void;
  /** The guest notifies its store port (EVTCHNOP_send). */
  notify(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class XenStoreRing {
  private readonly inbuf: number[] = [];
  /** Watch events that came while a reply was awaited, oldest first (as Linux's xenbus queues them). */
  readonly events: Reply[] = [];

  constructor(private readonly io: RingIo, private readonly timeoutMs = 3000) {}

  private u32(off: number): number {
    return this.io.read(off, 4).readUInt32LE(0);
  }

  private setU32(off: number, v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0, 0);
    this.io.write(off, b);
  }

  /** The server gave up on this connection (the ring's error field, XENSTORE_ERROR_*). */
  bad(): boolean {
    return this.u32(XS_RING.error) !== 0;
  }

  /**
   * Write a message into req as space allows, advancing req_prod and ringing after each
   * piece; wait for the server to consume before the next piece. `prodOverride` writes a
   * req_prod of the case's choosing instead (a corrupt index) and stops there.
   */
  async send(bytes: Uint8Array, prodOverride?: number): Promise<void> {
    let off = 0;
    const deadline = performance.now() + this.timeoutMs;
    const room = () => XENSTORE_RING_SIZE - ((this.u32(XS_RING.reqProd) - this.u32(XS_RING.reqCons)) >>> 0);
    for (;;) {
      const prod = this.u32(XS_RING.reqProd);
      const n = Math.max(0, Math.min(room(), bytes.length - off));
      this.copyIn(XS_RING.req, prod, bytes.subarray(off, off + n));
      off += n;
      this.setU32(XS_RING.reqProd, prodOverride ?? prod + n);
      await this.io.notify();
      if (prodOverride !== undefined || off >= bytes.length) return;
      // The rest waits for room: the server consumes, or gives up on the connection.
      while (room() <= 0) {
        if (this.bad() || performance.now() > deadline) return;
        await sleep(1);
      }
    }
  }

  /** Bytes into a ring at a free-running index, wrapping at its end. */
  private copyIn(ring: number, index: number, bytes: Uint8Array): void {
    const at = index & (XENSTORE_RING_SIZE - 1);
    const first = Math.min(bytes.length, XENSTORE_RING_SIZE - at);
    if (first) this.io.write(ring + at, Buffer.from(bytes.subarray(0, first)));
    if (first < bytes.length) this.io.write(ring, Buffer.from(bytes.subarray(first)));
  }

  /** Bytes out of a ring at a free-running index, wrapping at its end. */
  private copyOut(ring: number, index: number, len: number): Buffer {
    const at = index & (XENSTORE_RING_SIZE - 1);
    const first = Math.min(len, XENSTORE_RING_SIZE - at);
    return first < len ? Buffer.concat([this.io.read(ring + at, first), this.io.read(ring, len - first)]) : this.io.read(ring + at, len);
  }

  /** Move what rsp holds into the guest's buffer, advancing rsp_cons (and ringing, so a long reply can go on). */
  private drain(): boolean {
    const cons = this.u32(XS_RING.rspCons);
    const avail = (this.u32(XS_RING.rspProd) - cons) >>> 0;
    if (avail === 0 || avail > XENSTORE_RING_SIZE) return false;
    this.inbuf.push(...this.copyOut(XS_RING.rsp, cons, avail));
    this.setU32(XS_RING.rspCons, cons + avail);
    return true;
  }

  /** The next message that is not a watch event (those are queued), or none within the timeout or once the server gave up. */
  async reply(): Promise<Reply | undefined> {
    const deadline = performance.now() + this.timeoutMs;
    for (;;) {
      if (this.drain()) await this.io.notify();
      for (let r = takeMessage(this.inbuf); r; r = takeMessage(this.inbuf)) {
        if (r.type !== XS.WATCH_EVENT) return r;
        this.events.push(r);
      }
      if (this.bad() || performance.now() > deadline) return undefined;
      await sleep(1);
    }
  }

  /** Take every watch event that arrives within `waitMs` (or is already here) into the queue. */
  async collectEvents(waitMs: number): Promise<void> {
    const deadline = performance.now() + waitMs;
    for (;;) {
      if (this.drain()) await this.io.notify();
      for (let r = takeMessage(this.inbuf); r; r = takeMessage(this.inbuf)) this.events.push(r);
      if (this.events.length || this.bad() || performance.now() > deadline) return;
      await sleep(1);
    }
  }
}

/**
 * Where the toolstack left a domain's store, read by its guest before the session's
 * EVTCHNOP_reset closes the port: the ring's frame, the guest's port and, at the other
 * end, xenstored's port in dom0. A closed interdomain port leaves the remote end unbound
 * to this domain (xen/common/event_channel.c evtchn_close), so the guest binds to it
 * again when a case first talks to xenstore.
 */
export interface StoreFacts {
  pfn: number;
  port: number;
  /** xenstored's port in dom0, or null when the guest's port was not bound to dom0. */
  remotePort: number | null;
}

export const HVMOP_get_param = 1n;
export const HVM_PARAM_STORE_PFN = 1;
export const HVM_PARAM_STORE_EVTCHN = 2;
const EVTCHNSTAT_interdomain = 2;
/** The port the toolstack binds to xenstored first (libxl: the store channel, before the console's). */
export const TOOLSTACK_STORE_PORT = 1;

/** struct xen_hvm_param for HVMOP_get_param (public/hvm/hvm_op.h). */
export function hvmParamArg(index: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(DOMID_SELF, 0);
  b.writeUInt32LE(index, 4);
  return b;
}

/** struct evtchn_status for EVTCHNOP_status of one of the guest's own ports (public/event_channel.h). */
export function statusArg(port: number): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt16LE(DOMID_SELF, 0);
  b.writeUInt32LE(port, 4);
  return b;
}

/** The facts from the answered structs: the two params and the status of TOOLSTACK_STORE_PORT. */
export function storeFacts(pfnParam: Buffer, portParam: Buffer, status: Buffer): StoreFacts {
  const port = Number(portParam.readBigUInt64LE(8));
  const boundToDom0 = port === TOOLSTACK_STORE_PORT && status.readUInt32LE(8) === EVTCHNSTAT_interdomain && status.readUInt16LE(16) === 0;
  return { pfn: Number(pfnParam.readBigUInt64LE(8)), port, remotePort: boundToDom0 ? status.readUInt32LE(20) : null };
}
