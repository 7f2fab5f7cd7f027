import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { recordSize, XenStore, XsError, XS_QUOTA, XENSTORE_REL_PATH_MAX } from './xenstore.js';
import { XS, XS_RING, XsRingServer, encodeMsg, handle } from './xenstore-wire.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const b = (s: string) => enc.encode(s);
const s = (u: Uint8Array) => dec.decode(u);

function errno(f: () => unknown): string {
  try { f(); } catch (e) { if (e instanceof XsError) return e.errno; throw e; }
  return 'OK';
}

function fresh(): XenStore {
  const xs = new XenStore();
  xs.introduce(1, 'guest1');
  xs.introduce(2, 'guest2');
  return xs;
}

describe('xenstore model: nodes and permissions', () => {
  it('builds libxl\'s tree for a domain: the domain path read-only to it, data and friends its own', () => {
    const xs = fresh();
    expect(xs.directory(1, 0, '/local/domain/1')).toEqual(
      ['vm', 'name', 'cpu', 'memory', 'device', 'control', 'data', 'drivers', 'feature', 'attr', 'error', 'domid', 'store', 'console']);
    expect(s(xs.read(1, 0, 'name'))).toBe('guest1');
    expect(xs.getPerms(1, 0, '/local/domain/1')).toEqual([{ p: 'n', id: 0 }, { p: 'r', id: 1 }]);
    expect(xs.getPerms(1, 0, 'data')).toEqual([{ p: 'n', id: 1 }]);
    expect(xs.directory(1, 0, 'control')).toEqual(['shutdown', 'feature-poweroff', 'feature-reboot', 'feature-suspend', 'sysrq']);
    expect(errno(() => xs.write(1, 0, 'name', b('x')))).toBe('EACCES');
    expect(errno(() => xs.write(1, 0, 'mine', b('x')))).toBe('EACCES');
    xs.write(1, 0, 'control/shutdown', b('poweroff'));
  });

  it('refuses a guest a node record of quota_max_entry_size bytes or more, the parent\'s list of children included, keeping nothing', () => {
    const xs = fresh();
    // 24-byte header + 8 per permission + value + each child's name and NUL (write_node_raw).
    expect(recordSize({ value: b('abc'), children: ['x', 'yz'], perms: [{ p: 'n', id: 1 }] })).toBe(24 + 8 + 3 + 2 + 3);
    xs.write(1, 0, 'data/v', new Uint8Array(2048 - 24 - 8 - 1));
    expect(errno(() => xs.write(1, 0, 'data/v', new Uint8Array(2048 - 24 - 8)))).toBe('ENOSPC');
    expect(errno(() => xs.write(1, 0, `data/${'n'.repeat(2040)}`, b('')))).toBe('ENOSPC');
    expect(errno(() => xs.read(1, 0, `data/${'n'.repeat(2040)}`))).toBe('ENOENT');
    expect(xs.directory(1, 0, 'data')).toEqual(['v']);
    // dom0 is not bound by it.
    xs.write(0, 0, '/local/domain/1/data/v', new Uint8Array(4096));
  });

  it('gives xenstored error names for missing, foreign and malformed paths', () => {
    const xs = fresh();
    expect(errno(() => xs.read(1, 0, 'data/none'))).toBe('ENOENT');
    expect(errno(() => xs.read(1, 0, '/local/domain/2/data'))).toBe('EACCES');
    expect(errno(() => xs.read(1, 0, '/local/domain/2/data/x/y'))).toBe('EACCES');
    expect(errno(() => xs.read(1, 0, 'data/'))).toBe('EINVAL');
    expect(errno(() => xs.read(1, 0, 'data//x'))).toBe('EINVAL');
    expect(errno(() => xs.read(1, 0, 'data/a b'))).toBe('EINVAL');
    expect(errno(() => xs.write(1, 0, `data/${'a'.repeat(XENSTORE_REL_PATH_MAX)}`, b('')))).toBe('EINVAL');
    expect(errno(() => xs.rm(0, 0, '/'))).toBe('EINVAL');
  });

  it('creates missing parents inheriting perms with the writer as owner', () => {
    const xs = fresh();
    xs.setPerms(1, 0, 'data', [{ p: 'n', id: 1 }, { p: 'r', id: 2 }]);
    xs.write(1, 0, 'data/a/b', b('v'));
    expect(xs.getPerms(1, 0, 'data/a')).toEqual([{ p: 'n', id: 1 }, { p: 'r', id: 2 }]);
    expect(s(xs.read(2, 0, '/local/domain/1/data/a/b'))).toBe('v');
    expect(errno(() => xs.write(2, 0, '/local/domain/1/data/a/b', b('w')))).toBe('EACCES');
    expect(errno(() => xs.setPerms(1, 0, 'data/a', [{ p: 'n', id: 2 }]))).toBe('EPERM');
    expect(errno(() => xs.setPerms(2, 0, '/local/domain/1/data/a', [{ p: 'b', id: 1 }]))).toBe('EACCES');
  });

  it('rm of a missing node is OK when its parent exists, ENOENT otherwise', () => {
    const xs = fresh();
    expect(errno(() => xs.rm(1, 0, 'data/none'))).toBe('OK');
    expect(errno(() => xs.rm(1, 0, 'data/none/deeper'))).toBe('ENOENT');
  });

  it('enforces the entry, value size, watch and transaction quotas (watches and transactions: quota + 1, as xenstored counts)', () => {
    const xs = fresh();
    expect(errno(() => xs.write(1, 0, 'data/big', new Uint8Array(XS_QUOTA.entrySize)))).toBe('ENOSPC');
    for (let i = 0; i <= XS_QUOTA.watches; i++) xs.watch(1, `data/w${i}`, 't');
    expect(errno(() => xs.watch(1, 'data/one-more', 't'))).toBe('E2BIG');
    for (let i = 0; i <= XS_QUOTA.transactions; i++) xs.startTransaction(1, 0);
    expect(errno(() => xs.startTransaction(1, 0))).toBe('ENOSPC');
    // Nodes the domain owns count against quota_nb_entry_per_domain (spread out, so no record grows too big).
    const owned = () => xs.paths().filter((p) => xs.getPerms(0, 0, p)[0].id === 1).length;
    for (let i = 0; owned() < XS_QUOTA.entries; i++) xs.write(1, 0, `data/g${Math.floor(i / 40)}/e${i % 40}`, b(''));
    expect(errno(() => xs.write(1, 0, 'data/over', b('')))).toBe('ENOSPC');
  });
});

describe('xenstore model: transactions and watches', () => {
  it('a conflicting commit fails with EAGAIN and leaves the store unchanged', () => {
    const xs = fresh();
    const t = xs.startTransaction(1, 0);
    xs.read(1, t, 'data');
    xs.write(1, t, 'data/x', b('in-tx'));
    xs.write(1, 0, 'data', b('outside'));
    expect(errno(() => xs.endTransaction(1, t, true))).toBe('EAGAIN');
    expect(errno(() => xs.read(1, 0, 'data/x'))).toBe('ENOENT');
    expect(errno(() => xs.endTransaction(1, t, true))).toBe('ENOENT');
    expect(errno(() => xs.startTransaction(1, 7))).toBe('ENOENT');
    expect(errno(() => xs.startTransaction(1, xs.startTransaction(1, 0)))).toBe('EBUSY');
  });

  it('fires the initial event, then one per change at or below the watch', () => {
    const xs = fresh();
    xs.watch(1, 'data', 'tok');
    expect(errno(() => xs.watch(1, 'data', 'tok'))).toBe('EEXIST');
    xs.write(1, 0, 'data/a', b('1'));
    xs.write(1, 0, 'drivers', b('1'));
    xs.rm(1, 0, 'data/a');
    expect(xs.events.map((e) => `${e.conn}:${e.path}:${e.token}`)).toEqual(['1:data:tok', '1:data/a:tok', '1:data/a:tok']);
    xs.unwatch(1, 'data', 'tok');
    expect(errno(() => xs.unwatch(1, 'data', 'tok'))).toBe('ENOENT');
  });

  it('property: a committed transaction equals applying its writes directly', () => {
    const name = fc.constantFrom('a', 'b', 'c');
    const w = fc.record({ path: fc.array(name, { minLength: 1, maxLength: 3 }).map((a) => `data/${a.join('/')}`), v: fc.string({ maxLength: 8 }), rm: fc.boolean() });
    fc.assert(fc.property(fc.array(w, { maxLength: 12 }), (ws) => {
      const a = fresh();
      const c = fresh();
      const t = a.startTransaction(1, 0);
      for (const x of ws) {
        const ra = errno(() => (x.rm ? a.rm(1, t, x.path) : a.write(1, t, x.path, b(x.v))));
        const rc = errno(() => (x.rm ? c.rm(1, 0, x.path) : c.write(1, 0, x.path, b(x.v))));
        expect(ra).toBe(rc);
      }
      a.endTransaction(1, t, true);
      expect(a.paths()).toEqual(c.paths());
      for (const p of c.paths()) expect(s(a.read(0, 0, p))).toBe(s(c.read(0, 0, p)));
    }), { numRuns: 150 });
  });

  it('property: no listing shows a removed node, every listed child exists', () => {
    const op = fc.record({ path: fc.array(fc.constantFrom('a', 'b'), { minLength: 1, maxLength: 3 }).map((a) => `data/${a.join('/')}`), rm: fc.boolean() });
    fc.assert(fc.property(fc.array(op, { maxLength: 20 }), (ops) => {
      const xs = fresh();
      for (const o of ops) errno(() => (o.rm ? xs.rm(1, 0, o.path) : xs.write(1, 0, o.path, b(''))));
      const all = new Set(xs.paths());
      for (const p of all) for (const c of xs.directory(0, 0, p)) expect(all.has(p === '/' ? `/${c}` : `${p}/${c}`)).toBe(true);
      const last = ops.at(-1);
      if (last?.rm) expect(errno(() => xs.read(1, 0, last.path))).toBe('ENOENT');
    }), { numRuns: 150 });
  });
});

describe('xenstore wire and ring', () => {
  const msg = (type: number, payload: string, txId = 0) => ({ type, reqId: 9, txId, payload: b(payload) });

  it('answers errors as XS_ERROR with the errno name and a NUL', () => {
    const xs = fresh();
    const r = handle(xs, 1, msg(XS.READ, 'data/none\0'));
    expect([r.type, r.reqId, s(r.payload)]).toEqual([XS.ERROR, 9, 'ENOENT\0']);
    expect(s(handle(xs, 1, msg(XS.READ, 'data')).payload)).toBe('EINVAL\0');
    expect(s(handle(xs, 1, msg(XS.READ, 'data\0')).payload)).toBe('');
    expect(s(handle(xs, 1, msg(99, '')).payload)).toBe('ENOSYS\0');
    expect(s(handle(xs, 1, msg(XS.INTRODUCE, 'x\0')).payload)).toBe('EACCES\0');
    expect(s(handle(xs, 1, msg(XS.GET_DOMAIN_PATH, '3\0')).payload)).toBe('/local/domain/3\0');
    expect(s(handle(xs, 1, msg(XS.GET_PERMS, 'name\0')).payload)).toBe('n0\0r1\0');
  });

  it('serves a request written into the ring and answers in rsp', () => {
    const xs = fresh();
    const page = new Uint8Array(4096);
    const dv = new DataView(page.buffer);
    const srv = new XsRingServer(xs, 1);
    const req = encodeMsg(msg(XS.WRITE, 'data/k\0hello'));
    const start = 1020; // wraps
    dv.setUint32(XS_RING.reqCons, start, true);
    dv.setUint32(XS_RING.rspCons, start, true); dv.setUint32(XS_RING.rspProd, start, true);
    for (let i = 0; i < req.length; i++) page[(start + i) & 1023] = req[i];
    dv.setUint32(XS_RING.reqProd, start + req.length, true);
    expect(srv.service(page)).toBe(true);
    expect(dv.getUint32(XS_RING.reqCons, true)).toBe(start + req.length);
    expect(dv.getUint32(XS_RING.rspProd, true)).toBe(start + 16 + 3);
    const rsp = Array.from({ length: 19 }, (_, i) => page[1024 + ((start + i) & 1023)]);
    expect(rsp.slice(0, 4)).toEqual([XS.WRITE, 0, 0, 0]);
    expect(s(Uint8Array.from(rsp.slice(16)))).toBe('OK\0');
    expect(s(xs.read(1, 0, 'data/k'))).toBe('hello');
  });

  it('marks the connection bad on an oversize length or corrupt indexes', () => {
    const page = new Uint8Array(4096);
    const dv = new DataView(page.buffer);
    const srv = new XsRingServer(fresh(), 1);
    dv.setUint32(12, 4097, true);
    dv.setUint32(XS_RING.reqProd, 16, true);
    srv.service(page);
    expect(srv.bad).toBe(true);
    // The ring says why, as xenstored 4.17's ignore_connection writes it.
    expect(dv.getUint32(XS_RING.error, true)).toBe(3);
    const srv2 = new XsRingServer(fresh(), 1);
    const p2 = new Uint8Array(4096);
    new DataView(p2.buffer).setUint32(XS_RING.reqProd, 2000, true);
    expect(srv2.service(p2)).toBe(false);
    expect(srv2.bad).toBe(true);
    expect(new DataView(p2.buffer).getUint32(XS_RING.error, true)).toBe(2);
  });
});
