import { describe, expect, it } from 'vitest';
import { hvmParamArg, statusArg, storeFacts, XenStoreRing, type RingIo } from './xenstore-ring.js';
import { XenStore } from '../../model/xenstore.js';
import { XS, XS_RING, XsRingServer } from '../../model/xenstore-wire.js';
import { requestMessage, rawMessage } from '../../ops/xenstore.js';

/** The client against the model's server on a plain page: the doorbell services the ring. */
function pair(opts: { lazy?: boolean } = {}) {
  const xs = new XenStore();
  xs.introduce(1, 'domain1');
  const page = new Uint8Array(4096);
  const server = new XsRingServer(xs, 1);
  let rings = 0;
  const io: RingIo = {
    read: (o, n) => Buffer.from(page.subarray(o, o + n)),
    write: (o, b) => page.set(b, o),
    notify: async () => {
      rings++;
      // A server that answers a tick later, as xenstored in another process does.
      if (opts.lazy) await new Promise((r) => setTimeout(r, 2));
      server.service(page);
    },
  };
  return { xs, page, io, ring: new XenStoreRing(io, 200), rings: () => rings };
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe('the xen target\'s xenstore ring client', () => {
  it('sends a request, rings, and reads the reply back', async () => {
    const p = pair({ lazy: true });
    await p.ring.send(requestMessage({ type: 'WRITE', path: 'data/k', value: 'v', req_id: 5n }, 1) as Uint8Array);
    const r = await p.ring.reply();
    expect([r?.type, r?.reqId, text(r!.payload)]).toEqual([XS.WRITE, 5, 'OK\0']);
    expect(text(p.xs.read(1, 0, 'data/k'))).toBe('v');
    expect(p.rings()).toBeGreaterThanOrEqual(1);
  });

  it('sends a message longer than the ring in pieces and takes a long reply in pieces', async () => {
    const p = pair();
    const value = 'x'.repeat(2000);
    await p.ring.send(requestMessage({ type: 'WRITE', path: 'data/big', value }, 1) as Uint8Array);
    expect((await p.ring.reply())?.type).toBe(XS.WRITE);
    await p.ring.send(requestMessage({ type: 'READ', path: 'data/big' }, 1) as Uint8Array);
    const r = await p.ring.reply();
    expect(text(r!.payload)).toBe(value);
  });

  it('queues watch events that come before a reply; collects one that comes after', async () => {
    const p = pair();
    await p.ring.send(requestMessage({ type: 'WATCH', path: 'data', token: 't' }, 1) as Uint8Array);
    expect((await p.ring.reply())?.type).toBe(XS.WATCH);
    await p.ring.collectEvents(50);
    expect(p.ring.events.map((e) => text(e.payload))).toEqual(['data\0t\0']);
  });

  it('a corrupt req_prod gets no reply, and the ring\'s error field says the server gave up', async () => {
    const p = pair();
    await p.ring.send(rawMessage({ type: BigInt(XS.READ), payload: 'name\0' }) as Uint8Array, 5000);
    expect(await p.ring.reply()).toBeUndefined();
    expect(p.ring.bad()).toBe(true);
    expect(new DataView(p.page.buffer).getUint32(XS_RING.error, true)).toBe(2);
  });

  it('no reply within the timeout is none, the connection still good', async () => {
    const p = pair();
    p.io.notify = async () => {}; // a server that never answers
    await p.ring.send(requestMessage({ type: 'READ', path: 'name' }, 1) as Uint8Array);
    expect(await p.ring.reply()).toBeUndefined();
    expect(p.ring.bad()).toBe(false);
  });
});

describe('where the toolstack left the store', () => {
  const param = (v: number) => { const b = hvmParamArg(0); b.writeBigUInt64LE(BigInt(v), 8); return b; };
  const status = (st: number, dom: number, port: number) => { const b = statusArg(1); b.writeUInt32LE(st, 8); b.writeUInt16LE(dom, 16); b.writeUInt32LE(port, 20); return b; };

  it('takes the ring frame, the guest\'s port and xenstored\'s port at the other end', () => {
    expect(storeFacts(param(0xfeffc), param(1), status(2, 0, 7))).toEqual({ pfn: 0xfeffc, port: 1, remotePort: 7 });
  });
  it('knows no remote port when port 1 is not the store port or is not bound to dom0', () => {
    expect(storeFacts(param(0xfeffc), param(3), status(2, 0, 7)).remotePort).toBeNull();
    expect(storeFacts(param(0xfeffc), param(1), status(1, 0, 0)).remotePort).toBeNull();
    expect(storeFacts(param(0xfeffc), param(1), status(2, 4, 7)).remotePort).toBeNull();
  });
  it('asks for the params and the status of the guest\'s own ports (DOMID_SELF)', () => {
    expect([...hvmParamArg(2).subarray(0, 8)]).toEqual([0xf0, 0x7f, 0, 0, 2, 0, 0, 0]);
    expect([...statusArg(1).subarray(0, 8)]).toEqual([0xf0, 0x7f, 0, 0, 1, 0, 0, 0]);
  });
});
