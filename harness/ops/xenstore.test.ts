import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ops } from './index.js';
import { XenModel } from '../model/domain.js';
import { XenStore } from '../model/xenstore.js';
import { XS, handle } from '../model/xenstore-wire.js';
import type { OutValue } from './types.js';

function model(): XenModel {
  return new XenModel({ flavor: 'xen', cpu: 'intel', mode: 64, domains: [{ id: 1, vcpus: 1, memoryBytes: 0x100000, privileged: false }] } as never);
}

function run(m: XenModel, name: string, args: Record<string, unknown>): Record<string, OutValue> {
  const op = ops.get(name)!;
  const dom = m.domain(1)!;
  const r = op.model!(m, args as never, { dom, vcpu: dom.vcpus[0] });
  expect(r.fault).toBeUndefined();
  return r.out!;
}

describe('xenstore ops over the ring', () => {
  it('property: every request through the ring gets the reply the server gives directly, whatever the ring position and size', () => {
    const req = fc.record({
      type: fc.constantFrom('READ', 'WRITE', 'DIRECTORY', 'RM', 'MKDIR'),
      path: fc.array(fc.constantFrom('a', 'b'), { minLength: 1, maxLength: 3 }).map((a) => `data/${a.join('/')}`),
      size: fc.integer({ min: 0, max: 2040 }),
    });
    fc.assert(fc.property(fc.array(req, { minLength: 1, maxLength: 12 }), (reqs) => {
      const m = model();
      const direct = new XenStore();
      direct.introduce(1, 'domain1');
      for (const r of reqs) {
        const value = 'v'.repeat(r.size);
        const out = run(m, 'xenstore.request', { type: r.type, path: r.path, value });
        const payload = new TextEncoder().encode(r.type === 'WRITE' ? `${r.path}\0${value}` : `${r.path}\0`);
        const want = handle(direct, 1, { type: XS[r.type as 'READ'], reqId: 0, txId: 0, payload });
        expect(out.reply).toBe(BigInt(want.type));
        expect(out.payload).toBe(new TextDecoder().decode(want.payload));
      }
      const p = run(m, 'xenstore.params', {});
      expect(p.req_cons).toBe(p.req_prod);
      expect(p.rsp_cons).toBe(p.rsp_prod);
    }), { numRuns: 60 });
  });

  it('queues the watch event that follows the WATCH reply and hands it out once', () => {
    const m = model();
    expect(run(m, 'xenstore.request', { type: 'WATCH', path: 'data', token: 'tk' }).payload).toBe('OK\0');
    expect(run(m, 'xenstore.event', {})).toEqual({ path: 'data', token: 'tk', events: 1n });
    expect(run(m, 'xenstore.event', {})).toEqual({ path: '', token: '', events: 0n });
  });

  it('a raw header with len over XENSTORE_PAYLOAD_MAX gets no reply and the connection stays dead', () => {
    const m = model();
    expect(run(m, 'xenstore.raw', { type: BigInt(XS.READ), len: 4097n, payload: 'name\0' })).toMatchObject({ reply: -1n, bad: 1n });
    expect(run(m, 'xenstore.request', { type: 'READ', path: 'name' })).toMatchObject({ reply: -1n, bad: 1n });
  });
});
