import { describe, expect, it } from 'vitest';
import { ops } from './index.js';
import { HYPERVISOR } from '../model/hypercall.js';
import { EVTCHNOP } from '../model/evtchn.js';
import type { Action, OpContext } from './types.js';

const ctx: OpContext = { width: 64, scratch: 0x100000, dom: 1, vcpu: 0 };

function encode(name: string, args: Record<string, unknown>, c: OpContext = ctx): Action {
  const op = ops.get(name)!;
  const parsed = op.args.parse(args) as Record<string, unknown>;
  const resolved = Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, (v as { expr?: { v: bigint } }).expr?.v ?? v]));
  return op.encode(resolved as never, c);
}

describe('evtchn op marshalling (public/event_channel.h layouts, same in both modes)', () => {
  it('status: dom u16@0, port u32@4 in a 24-byte struct; decodes the union at 16', () => {
    for (const width of [64, 32] as const) {
      const a = encode('evtchn.status', { port: 0x1234 }, { ...ctx, width });
      expect(a.kind).toBe('hypercall');
      if (a.kind !== 'hypercall') return;
      expect(a.nr).toBe(HYPERVISOR.event_channel_op);
      expect(a.args).toEqual([BigInt(EVTCHNOP.status), 0x100000n]);
      const b = a.writes[0].bytes;
      expect(b.length).toBe(24);
      expect([b[0], b[1], b[4], b[5], b[6], b[7]]).toEqual([0xf0, 0x7f, 0x34, 0x12, 0, 0]);
      const out = new Uint8Array(24);
      out.set([2, 0, 0, 0, 1, 0, 0, 0, 5, 0, 6, 0, 7, 0, 0, 0], 8);
      expect(a.out!.decode(out)).toMatchObject({ status: 2n, vcpu: 1n, remote_dom: 5n, remote_port: 7n });
    }
  });

  it('init_control: control_gfn u64@0, offset u32@8, vcpu u32@12, link_bits u8@16', () => {
    const a = encode('evtchn.init_control', { control_gfn: 0x123456789, offset: 64, vcpu: 3 });
    if (a.kind !== 'hypercall') throw new Error('not a hypercall');
    const dv = new DataView(a.writes[0].bytes.buffer);
    expect(a.writes[0].bytes.length).toBe(24);
    expect(dv.getBigUint64(0, true)).toBe(0x123456789n);
    expect(dv.getUint32(8, true)).toBe(64);
    expect(dv.getUint32(12, true)).toBe(3);
    const out = new Uint8Array(24);
    out[16] = 17;
    expect(a.out!.decode(out)).toEqual({ link_bits: 17n });
  });

  it('bind_interdomain: remote_dom u16@0, remote_port u32@4, local_port u32@8 (12 bytes)', () => {
    const a = encode('evtchn.bind_interdomain', { remote_dom: 2, remote_port: 9 });
    if (a.kind !== 'hypercall') throw new Error('not a hypercall');
    expect(Array.from(a.writes[0].bytes)).toEqual([2, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('host and guest actions are host kind', () => {
    expect(encode('evtchn.run_upcall', {}).kind).toBe('host');
    expect(encode('evtchn.host_send', { port: 3 })).toEqual({ kind: 'host', op: 'evtchn.host_send', args: { port: 3n, vcpu: 0n } });
  });
});
