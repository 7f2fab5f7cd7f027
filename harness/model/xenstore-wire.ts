// The xenstore wire protocol and the shared ring a guest reaches through
// HVM_PARAM_STORE_PFN / HVM_PARAM_STORE_EVTCHN.
// Sources: xen/include/public/io/xs_wire.h (xsd_sockmsg_type, xsd_errors,
// struct xsd_sockmsg, struct xenstore_domain_interface, XENSTORE_PAYLOAD_MAX),
// tools/xenstore/xenstored_core.c (process_message, send_reply, send_error),
// tools/xenstore/xenstored_domain.c (readchn / writechn over the ring).

import { XenStore, XsError, type XsPerm } from './xenstore.js';

export const XS = {
  CONTROL: 0, DIRECTORY: 1, READ: 2, GET_PERMS: 3, WATCH: 4, UNWATCH: 5,
  TRANSACTION_START: 6, TRANSACTION_END: 7, INTRODUCE: 8, RELEASE: 9, GET_DOMAIN_PATH: 10,
  WRITE: 11, MKDIR: 12, RM: 13, SET_PERMS: 14, WATCH_EVENT: 15, ERROR: 16,
  IS_DOMAIN_INTRODUCED: 17, RESUME: 18, SET_TARGET: 19, RESET_WATCHES: 21, DIRECTORY_PART: 22,
} as const;

export const XENSTORE_PAYLOAD_MAX = 4096;
export const XENSTORE_RING_SIZE = 1024;
/** Offsets in struct xenstore_domain_interface. */
export const XS_RING = { req: 0, rsp: 1024, reqCons: 2048, reqProd: 2052, rspCons: 2056, rspProd: 2060, serverFeatures: 2064, connection: 2068, error: 2072 } as const;
export const XSD_SOCKMSG_SIZE = 16;
/** The ring's `error` field, written by a server that ignores the connection from then on (xs_wire.h, Xen 4.17+). */
export const XENSTORE_ERROR = { NONE: 0, COMM: 1, RINGIDX: 2, PROTO: 3 } as const;

export interface XsMsg { type: number; reqId: number; txId: number; payload: Uint8Array }

const enc = new TextEncoder();
const dec = new TextDecoder();
const z = (s: string) => enc.encode(`${s}\0`);

/** NUL-terminated strings of a payload; a trailing part without NUL is returned as the last. */
function strings(p: Uint8Array): string[] {
  const out: string[] = [];
  let s = 0;
  for (let i = 0; i < p.length; i++) if (p[i] === 0) { out.push(dec.decode(p.subarray(s, i))); s = i + 1; }
  if (s < p.length) out.push(dec.decode(p.subarray(s)));
  return out;
}

/** onearg: the payload must be one NUL-terminated string, else EINVAL. */
function onearg(p: Uint8Array): string {
  if (p.length === 0 || p[p.length - 1] !== 0 || p.indexOf(0) !== p.length - 1) throw new XsError('EINVAL');
  return dec.decode(p.subarray(0, p.length - 1));
}

function parsePerm(s: string): XsPerm {
  const m = /^([nrwb])(\d+)$/.exec(s);
  if (!m) throw new XsError('EINVAL');
  return { p: m[1] as XsPerm['p'], id: Number(m[2]) };
}

/** XS_TYPE_COUNT, and the types xenstored has no handler for (wire_funcs: WATCH_EVENT, ERROR, the removed RESTRICT). */
const XS_TYPE_COUNT = 23;
const NO_HANDLER = new Set<number>([XS.WATCH_EVENT, XS.ERROR, 20]);
/** XS_FLAG_PRIV: the types only dom0 (or a privileged domain) may send. */
const PRIVILEGED = new Set<number>([XS.CONTROL, XS.INTRODUCE, XS.RELEASE, XS.IS_DOMAIN_INTRODUCED, XS.RESUME, XS.SET_TARGET]);

/**
 * One request to its reply (OK, value, or XS_ERROR with the errno name). process_message
 * (xenstored_core.c, Xen 4.17) answers a type it has no handler for ENOSYS and a
 * privileged one from a guest EACCES, before looking at the transaction.
 */
export function handle(xs: XenStore, conn: number, m: XsMsg): XsMsg {
  const reply = (payload: Uint8Array, type = m.type): XsMsg => ({ type, reqId: m.reqId, txId: m.txId, payload });
  try {
    const p = m.payload;
    if (m.type >= XS_TYPE_COUNT || NO_HANDLER.has(m.type)) throw new XsError('ENOSYS');
    if (PRIVILEGED.has(m.type) && !xs.privileged(conn)) throw new XsError('EACCES');
    xs.checkTx(conn, m.txId);
    switch (m.type) {
      case XS.READ: return reply(xs.read(conn, m.txId, onearg(p)).slice());
      case XS.DIRECTORY: return reply(enc.encode(xs.directory(conn, m.txId, onearg(p)).map((c) => `${c}\0`).join('')));
      case XS.GET_PERMS: return reply(enc.encode(xs.getPerms(conn, m.txId, onearg(p)).map((x) => `${x.p}${x.id}\0`).join('')));
      case XS.WRITE: {
        const i = p.indexOf(0);
        if (i < 0) throw new XsError('EINVAL');
        xs.write(conn, m.txId, dec.decode(p.subarray(0, i)), p.slice(i + 1));
        return reply(z('OK'));
      }
      case XS.MKDIR: xs.mkdir(conn, m.txId, onearg(p)); return reply(z('OK'));
      case XS.RM: xs.rm(conn, m.txId, onearg(p)); return reply(z('OK'));
      case XS.SET_PERMS: {
        const a = strings(p);
        if (a.length < 2 || p[p.length - 1] !== 0) throw new XsError('EINVAL');
        xs.setPerms(conn, m.txId, a[0], a.slice(1).map(parsePerm));
        return reply(z('OK'));
      }
      case XS.TRANSACTION_START: return reply(z(String(xs.startTransaction(conn, m.txId))));
      case XS.TRANSACTION_END: {
        const a = onearg(p);
        if (a !== 'T' && a !== 'F') throw new XsError('EINVAL');
        xs.endTransaction(conn, m.txId, a === 'T');
        return { ...reply(z('OK')), txId: 0 };
      }
      case XS.WATCH: case XS.UNWATCH: {
        const a = strings(p);
        if (a.length !== 2 || p[p.length - 1] !== 0) throw new XsError('EINVAL');
        if (m.type === XS.WATCH) xs.watch(conn, a[0], a[1]); else xs.unwatch(conn, a[0], a[1]);
        return reply(z('OK'));
      }
      case XS.GET_DOMAIN_PATH: {
        const d = onearg(p);
        if (!/^\d+$/.test(d)) throw new XsError('EINVAL');
        return reply(z(`/local/domain/${Number(d)}`));
      }
      default: throw new XsError('EINVAL');
    }
  } catch (e) {
    if (!(e instanceof XsError)) throw e;
    return reply(z(e.errno), XS.ERROR);
  }
}

export function encodeMsg(m: XsMsg): Uint8Array {
  const b = new Uint8Array(XSD_SOCKMSG_SIZE + m.payload.length);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, m.type, true); dv.setUint32(4, m.reqId, true); dv.setUint32(8, m.txId, true); dv.setUint32(12, m.payload.length, true);
  b.set(m.payload, XSD_SOCKMSG_SIZE);
  return b;
}

/** The server end of one domain's ring: consumes whole requests, writes replies and
 *  watch events into rsp. A header whose len exceeds XENSTORE_PAYLOAD_MAX or ring
 *  indexes that are out of range make the connection bad: xenstored ignores it from then on,
 *  saying why in the ring's error field (xenstored_core.c handle_input, xenstored_domain.c
 *  ignore_connection, Xen 4.17). */
export class XsRingServer {
  bad = false;
  private out: Uint8Array[] = [];
  constructor(readonly xs: XenStore, readonly conn: number) {}

  /** Bytes of a request read from the ring but not yet whole (xenstored's conn->in). */
  private inbuf: number[] = [];

  /** Service the ring page (4 KiB view); returns whether the guest should be notified. */
  service(page: Uint8Array): boolean {
    if (this.bad) return false;
    const dv = new DataView(page.buffer, page.byteOffset, page.byteLength);
    let cons = dv.getUint32(XS_RING.reqCons, true);
    const prod = dv.getUint32(XS_RING.reqProd, true);
    if (((prod - cons) >>> 0) > XENSTORE_RING_SIZE) return this.ignore(dv, XENSTORE_ERROR.RINGIDX);
    const avail = (prod - cons) >>> 0;
    for (let i = 0; i < avail; i++) this.inbuf.push(page[XS_RING.req + ((cons + i) & (XENSTORE_RING_SIZE - 1))]);
    const used = avail;
    let notify = used > 0;
    while (this.inbuf.length >= XSD_SOCKMSG_SIZE) {
      const h = new DataView(Uint8Array.from(this.inbuf.slice(0, XSD_SOCKMSG_SIZE)).buffer);
      const len = h.getUint32(12, true);
      if (len > XENSTORE_PAYLOAD_MAX) { this.ignore(dv, XENSTORE_ERROR.PROTO); break; }
      if (this.inbuf.length < XSD_SOCKMSG_SIZE + len) break;
      const payload = Uint8Array.from(this.inbuf.splice(0, XSD_SOCKMSG_SIZE + len).slice(XSD_SOCKMSG_SIZE));
      const r = handle(this.xs, this.conn, { type: h.getUint32(0, true), reqId: h.getUint32(4, true), txId: h.getUint32(8, true), payload });
      this.out.push(encodeMsg(r));
      notify = true;
    }
    cons = (cons + used) >>> 0;
    dv.setUint32(XS_RING.reqCons, cons, true);
    if (this.bad) return false;
    const evs = this.xs.events;
    for (let i = 0; i < evs.length;) {
      if (evs[i].conn !== this.conn) { i++; continue; }
      const ev = evs.splice(i, 1)[0];
      this.out.push(encodeMsg({ type: XS.WATCH_EVENT, reqId: 0, txId: 0, payload: enc.encode(`${ev.path}\0${ev.token}\0`) }));
    }
    return this.flush(page, dv) || notify;
  }

  private ignore(dv: DataView, err: number): false {
    this.bad = true;
    this.out = []; // conn_free_buffered_data: nothing more is sent
    dv.setUint32(XS_RING.error, err, true);
    return false;
  }

  /** Copy queued output into rsp as space allows: a reply larger than the ring goes in pieces. */
  private flush(page: Uint8Array, dv: DataView): boolean {
    let prod = dv.getUint32(XS_RING.rspProd, true);
    const cons = dv.getUint32(XS_RING.rspCons, true);
    let wrote = false;
    while (this.out.length) {
      const m = this.out[0];
      const n = Math.min(m.length, XENSTORE_RING_SIZE - ((prod - cons) >>> 0));
      if (n === 0) break;
      for (let i = 0; i < n; i++) page[XS_RING.rsp + ((prod + i) & (XENSTORE_RING_SIZE - 1))] = m[i];
      prod = (prod + n) >>> 0;
      wrote = true;
      if (n === m.length) this.out.shift(); else this.out[0] = m.subarray(n);
    }
    dv.setUint32(XS_RING.rspProd, prod, true);
    return wrote;
  }
}
