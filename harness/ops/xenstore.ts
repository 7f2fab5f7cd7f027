// Xenstore as a guest reaches it: the request is written into the ring page
// (struct xenstore_domain_interface at HVM_PARAM_STORE_PFN), req_prod advanced,
// the store port (HVM_PARAM_STORE_EVTCHN) notified; the reply is read back from
// rsp and rsp_cons advanced. Watch events that arrive while waiting for a reply
// are queued for `xenstore.event`, as Linux's xenbus does. OUT: reply is the
// reply's type (XS_READ, XS_ERROR, ...), error the errno of the XS_ERROR name
// (ENOENT, ...; 0 for none, -1 for a name not in xsd_errors), payload the text
// with its NULs ("ENOENT\0", "OK\0"), len its byte count.
// Sources: xen/include/public/io/xs_wire.h, docs/misc/xenstore.txt.

import { z } from 'zod';
import { defineOp, int, type Action, type OutValue, type Resolved } from './types.js';
import { defineConstants } from './constants.js';
import { XenStore, XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX } from '../model/xenstore.js';
import { XS, XS_RING, XsRingServer, XENSTORE_PAYLOAD_MAX, XENSTORE_RING_SIZE, XSD_SOCKMSG_SIZE } from '../model/xenstore-wire.js';
import { XEN_ERRNO } from '../model/errno.js';
import type { XenModel, Domain } from '../model/domain.js';

defineConstants('XS_', XS);
defineConstants('', { XENSTORE_PAYLOAD_MAX, XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX, XENSTORE_RING_SIZE });

/** Where QEMU's Xen emulation puts the ring and port (hw/i386/kvm/xen_xenstore.c); the model does the same. */
export const STORE_PFN = 0xfeff9;
export const STORE_EVTCHN = 1;

const TYPES = Object.keys(XS) as Array<keyof typeof XS>;
const enc = new TextEncoder();
const dec = new TextDecoder();

export interface Reply { type: number; reqId: number; txId: number; payload: Uint8Array }

/** One domain's store connection on the model: the ring page, the server end and the guest's event queue. */
interface Conn { page: Uint8Array; server: XsRingServer; events: Reply[]; inbuf: number[] }
interface State { xs: XenStore; conns: Map<number, Conn> }
const states = new WeakMap<XenModel, State>();

function conn(m: XenModel, dom: Domain): Conn {
  let st = states.get(m);
  if (!st) {
    const xs = new XenStore((c) => c === 0 || (m.domain(c)?.privileged ?? false));
    for (const id of [...m.domains.keys()].sort((a, b) => a - b)) if (id !== 0) xs.introduce(id, `domain${id}`);
    st = { xs, conns: new Map() };
    states.set(m, st);
  }
  let c = st.conns.get(dom.id);
  if (!c) {
    c = { page: new Uint8Array(4096), server: new XsRingServer(st.xs, dom.id), events: [], inbuf: [] };
    st.conns.set(dom.id, c);
  }
  return c;
}

const u32 = (p: Uint8Array, o: number) => new DataView(p.buffer).getUint32(o, true);
const setU32 = (p: Uint8Array, o: number, v: number) => new DataView(p.buffer).setUint32(o, v >>> 0, true);

/** Guest side: copy bytes into req at req_prod (wrapping) as space allows, advance req_prod and
 *  notify the store port after each piece (a message may be larger than the 1 KiB ring). */
function send(c: Conn, bytes: Uint8Array, prodOverride?: number): void {
  let off = 0;
  do {
    const prod = u32(c.page, XS_RING.reqProd);
    const room = XENSTORE_RING_SIZE - ((prod - u32(c.page, XS_RING.reqCons)) >>> 0);
    const n = Math.min(room, bytes.length - off);
    for (let i = 0; i < n; i++) c.page[XS_RING.req + ((prod + i) & (XENSTORE_RING_SIZE - 1))] = bytes[off + i];
    off += n;
    setU32(c.page, XS_RING.reqProd, prodOverride ?? prod + n);
    // EVTCHNOP_send on STORE_EVTCHN: the server's handler services the ring.
    c.server.service(c.page);
    if (n === 0 || c.server.bad || prodOverride !== undefined) break;
  } while (off < bytes.length);
}

/** Guest side: drain rsp into the guest's buffer (notifying after each read, so the server can
 *  write the rest of a large reply), then take one whole message from it, or none. */
function take(c: Conn): Reply | undefined {
  for (;;) {
    const cons = u32(c.page, XS_RING.rspCons);
    const avail = (u32(c.page, XS_RING.rspProd) - cons) >>> 0;
    if (avail === 0 || avail > XENSTORE_RING_SIZE) break;
    for (let i = 0; i < avail; i++) c.inbuf.push(c.page[XS_RING.rsp + ((cons + i) & (XENSTORE_RING_SIZE - 1))]);
    setU32(c.page, XS_RING.rspCons, cons + avail);
    c.server.service(c.page);
  }
  return takeMessage(c.inbuf);
}

/** The first whole message of the bytes read so far, taken off them; none while it is incomplete. */
export function takeMessage(inbuf: number[]): Reply | undefined {
  if (inbuf.length < XSD_SOCKMSG_SIZE) return undefined;
  const h = new DataView(Uint8Array.from(inbuf.slice(0, XSD_SOCKMSG_SIZE)).buffer);
  const len = h.getUint32(12, true);
  if (inbuf.length < XSD_SOCKMSG_SIZE + len) return undefined;
  const payload = Uint8Array.from(inbuf.splice(0, XSD_SOCKMSG_SIZE + len).slice(XSD_SOCKMSG_SIZE));
  return { type: h.getUint32(0, true), reqId: h.getUint32(4, true), txId: h.getUint32(8, true), payload };
}

/** Read until a reply that is not a watch event; events go to the guest's queue. */
function awaitReply(c: Conn): Reply | undefined {
  for (;;) {
    const r = take(c);
    if (!r || r.type !== XS.WATCH_EVENT) return r;
    c.events.push(r);
  }
}

const REPLY_OUT = ['reply', 'payload', 'error', 'tx', 'req_id', 'len'] as const;

/** The OUT of xenstore.event: the oldest queued watch event, taken off the queue, and how many there were. */
export function takeEvent(events: Reply[]): Record<string, OutValue> {
  const n = events.length;
  const ev = events.shift();
  if (!ev) return { path: '', token: '', events: 0n };
  const [path = '', token = ''] = dec.decode(ev.payload).split('\0');
  return { path, token, events: BigInt(n) };
}

/** The OUT of a request: the reply (reply -1 when none came) and whether the server gave up on the connection. */
export function replyOut(r: Reply | undefined, bad: boolean): Record<string, OutValue> {
  if (!r) return { reply: -1n, payload: '', error: 0n, tx: 0n, req_id: 0n, len: 0n, bad: bad ? 1n : 0n };
  const text = dec.decode(r.payload);
  const tx = r.type === XS.TRANSACTION_START && /^\d+\0$/.test(text) ? BigInt(text.slice(0, -1)) : BigInt(r.txId);
  return {
    reply: BigInt(r.type), payload: text,
    error: r.type === XS.ERROR ? BigInt((XEN_ERRNO as Record<string, number>)[text.replace(/\0$/, '')] ?? -1) : 0n,
    tx, req_id: BigInt(r.reqId), len: BigInt(r.payload.length), bad: bad ? 1n : 0n,
  };
}

function header(type: number, reqId: number, txId: number, len: number): Uint8Array {
  const h = new Uint8Array(XSD_SOCKMSG_SIZE);
  const dv = new DataView(h.buffer);
  dv.setUint32(0, type, true); dv.setUint32(4, reqId, true); dv.setUint32(8, txId, true); dv.setUint32(12, len, true);
  return h;
}

const concat = (a: Uint8Array, b: Uint8Array) => { const r = new Uint8Array(a.length + b.length); r.set(a); r.set(b, a.length); return r; };

const requestArgs = z.strictObject({
  type: z.enum(TYPES),
  path: z.string().optional(),
  repeat: int().optional(),
  value: z.string().optional(),
  value_repeat: int().optional(),
  token: z.string().optional(),
  perms: z.array(z.string()).optional(),
  domid: int().optional(),
  tx: int().optional(),
  req_id: int().optional(),
});
export type RequestArgs = Resolved<z.infer<typeof requestArgs>>;

const rawArgs = z.strictObject({
  type: int(),
  req_id: int().optional(),
  tx: int().optional(),
  len: int().optional(),
  payload: z.string().optional(),
  hex: z.string().regex(/^([0-9a-fA-F]{2}\s*)*$/, 'hex bytes such as "de ad be ef"').optional(),
  req_prod: int().optional(),
});
export type RawArgs = Resolved<z.infer<typeof rawArgs>>;

export const xenstoreRequest = defineOp({
  name: 'xenstore.request',
  summary: 'Guest sends one xsd_sockmsg over the store ring and reads the reply: type READ|WRITE|MKDIR|RM|DIRECTORY|GET_PERMS|SET_PERMS|WATCH|UNWATCH|TRANSACTION_START|TRANSACTION_END|GET_DOMAIN_PATH; payload built from path, value, token, perms, domid (value without NUL for WRITE, "T"/"F" for TRANSACTION_END); `repeat` / `value_repeat` repeat the path / value string n times',
  args: requestArgs,
  requires: ['xenstore'],
  out: [...REPLY_OUT, 'bad'],
  encode: (a): Action => ({ kind: 'host', op: 'xenstore.request', args: a }),
  model(m, a, at) {
    const c = conn(m, at.dom);
    const msg = requestMessage(a, at.dom.id);
    if (typeof msg === 'string') return { fault: msg };
    send(c, msg);
    return { out: replyOut(awaitReply(c), c.server.bad) };
  },
});

/** The xsd_sockmsg of an xenstore.request step, or why it cannot be sent. */
export function requestMessage(a: RequestArgs, domid: number): Uint8Array | string {
  const path = (a.path ?? '').repeat(Number(a.repeat ?? 1n));
  const s0 = (s: string) => `${s}\0`;
  let p: string;
  switch (a.type) {
    case 'WRITE': p = `${s0(path)}${(a.value ?? '').repeat(Number(a.value_repeat ?? 1n))}`; break;
    case 'WATCH': case 'UNWATCH': p = `${s0(path)}${s0(a.token ?? '')}`; break;
    case 'SET_PERMS': p = `${s0(path)}${(a.perms ?? []).map(s0).join('')}`; break;
    case 'TRANSACTION_START': p = '\0'; break;
    case 'TRANSACTION_END': p = s0(a.value ?? 'T'); break;
    case 'GET_DOMAIN_PATH': p = s0(String(a.domid ?? BigInt(domid))); break;
    default: p = s0(path);
  }
  const payload = enc.encode(p);
  if (payload.length > XENSTORE_PAYLOAD_MAX) return `payload of ${payload.length} bytes exceeds XENSTORE_PAYLOAD_MAX: use xenstore.raw to send it`;
  return concat(header(XS[a.type], Number(a.req_id ?? 0n), Number(a.tx ?? 0n), payload.length), payload);
}

/** The hand-built message of an xenstore.raw step, or why it cannot be sent. */
export function rawMessage(a: RawArgs): Uint8Array | string {
  const payload = a.hex !== undefined
    ? Uint8Array.from((a.hex.match(/[0-9a-fA-F]{2}/g) ?? []).map((h) => parseInt(h, 16)))
    : enc.encode(a.payload ?? '');
  const len = Number(a.len ?? BigInt(payload.length));
  if (len > 0xffffffff || Number(a.type) > 0xffffffff) return 'type and len are u32';
  return concat(header(Number(a.type), Number(a.req_id ?? 0n), Number(a.tx ?? 0n), len), payload);
}

export const xenstoreRaw = defineOp({
  name: 'xenstore.raw',
  summary: 'Guest sends a hand-built message: header fields (type, len default the payload length), payload text (`hex` instead for bytes), optionally a corrupt req_prod; reads a reply if one comes (reply: -1 otherwise, bad: 1 once the server dropped the connection)',
  args: rawArgs,
  requires: ['xenstore'],
  out: [...REPLY_OUT, 'bad'],
  encode: (a): Action => ({ kind: 'host', op: 'xenstore.raw', args: a }),
  model(m, a, at) {
    const c = conn(m, at.dom);
    const msg = rawMessage(a);
    if (typeof msg === 'string') return { fault: msg };
    send(c, msg, a.req_prod === undefined ? undefined : Number(a.req_prod));
    return { out: replyOut(awaitReply(c), c.server.bad) };
  },
});

export const xenstoreEvent = defineOp({
  name: 'xenstore.event',
  summary: 'Guest takes the oldest watch event (XS_WATCH_EVENT "path\\0token\\0") received so far; path/token are "" and events 0 when none is queued',
  args: z.strictObject({}).optional(),
  requires: ['xenstore'],
  out: ['path', 'token', 'events'],
  encode: (): Action => ({ kind: 'host', op: 'xenstore.event', args: {} }),
  model(m, _a, at) {
    const c = conn(m, at.dom);
    for (let r = take(c); r; r = take(c)) c.events.push(r);
    return { out: takeEvent(c.events) };
  },
});

export const xenstoreParams = defineOp({
  name: 'xenstore.params',
  summary: 'Guest reads where its store is: pfn (HVM_PARAM_STORE_PFN) and port (HVM_PARAM_STORE_EVTCHN), and the ring indexes',
  args: z.strictObject({}).optional(),
  requires: ['xenstore'],
  out: ['pfn', 'port', 'req_cons', 'req_prod', 'rsp_cons', 'rsp_prod', 'connection'],
  encode: (): Action => ({ kind: 'host', op: 'xenstore.params', args: {} }),
  model(m, _a, at) {
    const c = conn(m, at.dom);
    const g = (o: number) => BigInt(u32(c.page, o));
    return { out: { pfn: BigInt(STORE_PFN), port: BigInt(STORE_EVTCHN), req_cons: g(XS_RING.reqCons), req_prod: g(XS_RING.reqProd), rsp_cons: g(XS_RING.rspCons), rsp_prod: g(XS_RING.rspProd), connection: g(XS_RING.connection) } };
  },
});
