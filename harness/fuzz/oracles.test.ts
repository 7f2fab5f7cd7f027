// The memory oracle's signature names the field that differs, not its offset: one bug on
// many ports or vCPUs must stay one finding overnight.

import { describe, expect, it } from 'vitest';
import '../model/runstate.js'; // registers the runstate area
import { compareAreas, differenceClass } from './oracles.js';
import { signature } from './engine.js';
import type { AreaSpan } from './exec.js';

describe('differenceClass', () => {
  it('names the event bitmaps whatever the port', () => {
    // 64-bit: pending words at 0x800..0x9ff, mask at 0xa00; 32-bit: pending 0x800..0x87f, mask 0x880.
    expect(differenceClass('shared_info', 64, 0x800)).toBe('shared_info.evtchn_pending');
    expect(differenceClass('shared_info', 64, 0x9ff)).toBe('shared_info.evtchn_pending');
    expect(differenceClass('shared_info', 64, 0xa00)).toBe('shared_info.evtchn_mask');
    expect(differenceClass('shared_info', 32, 0x878)).toBe('shared_info.evtchn_pending');
    expect(differenceClass('shared_info', 32, 0x880)).toBe('shared_info.evtchn_mask');
  });

  it('names a vcpu_info slot of shared_info by its field in the width it has', () => {
    expect(differenceClass('shared_info', 64, 0)).toBe('shared_info.vcpu_info.evtchn_upcall_pending');
    expect(differenceClass('shared_info', 64, 64 + 8)).toBe('shared_info.vcpu_info.evtchn_pending_sel');
    expect(differenceClass('shared_info', 32, 64 + 4)).toBe('shared_info.vcpu_info.evtchn_pending_sel');
    expect(differenceClass('shared_info', 32, 64 + 8)).toBe('shared_info.vcpu_info.arch.cr2');
    expect(differenceClass('vcpu_info[3]', 64, 1)).toBe('vcpu_info.evtchn_upcall_mask');
  });

  it('keeps the offset of bytes no field covers', () => {
    // 64-bit vcpu_info bytes 2..7 are padding.
    expect(differenceClass('vcpu_info[0]', 64, 2)).toBe('vcpu_info+2');
    expect(differenceClass('no_such_area', 64, 12)).toBe('no_such_area+12');
  });
});

describe('compareAreas', () => {
  const span = (name: string, gpa: number, size: number): AreaSpan => ({ dom: 1, name, gpa, size });

  it('signs two differences in the same field on different ports alike, and keeps the exact bytes in the expectation', () => {
    const ref = new Uint8Array(0xc40);
    const sign = (port: number) => {
      const live = new Uint8Array(ref);
      live[0x800 + (port >> 3)] = 1 << (port & 7);
      const d = compareAreas([span('shared_info', 0x10000, 0xc40)], [span('shared_info', 0x10000, 0xc40)], (side) => (side === 'ref' ? ref : live), 64);
      return d!;
    };
    const a = sign(3);
    const b = sign(700);
    expect(a.classes).toEqual(['shared_info.evtchn_pending', 'differs']);
    expect(b.classes).toEqual(a.classes);
    expect(a.expect.memory).toEqual({ 'dom1.bytes@0x10800:8': '00 00 00 00 00 00 00 00' });
    expect(Object.keys(b.expect.memory!)).toEqual(['dom1.bytes@0x10850:8']);
  });

  it('finds no difference in equal bytes', () => {
    const same = new Uint8Array(64).fill(7);
    expect(compareAreas([span('vcpu_info[0]', 0x3000, 64)], [span('vcpu_info[0]', 0x3000, 64)], () => same, 32)).toBeUndefined();
  });
});

describe('signature', () => {
  const d = { kind: 'differential' as const, field: 'ret', expected: '-2', actual: '0', classes: ['-2 (-ENOENT)', 'zero'] as [string, string], expect: {} };
  const at = (op: string, args: Record<string, unknown>) => [{ step: { op, dom: 1, vcpu: 0, args }, outcome: {} }] as unknown as Parameters<typeof signature>[0];

  it('keeps an argument that names what the op acts on, so two attributes are two findings', () => {
    const a = signature(at('kvm.xen_get_attr', { attr: 'runstate_addr' }), 0, d);
    expect(a).toBe('differential|kvm.xen_get_attr(attr=runstate_addr)|ret|-2 (-ENOENT)->zero');
    expect(signature(at('kvm.xen_get_attr', { attr: 'timer_expires' }), 0, d)).not.toBe(a);
  });

  it('leaves numbers out: one bug over many values is one finding', () => {
    expect(signature(at('evtchn.send', { port: 5n }), 0, d)).toBe(signature(at('evtchn.send', { port: 700n }), 0, d));
    expect(signature(at('evtchn.send', { port: 5n }), 0, d)).toBe('differential|evtchn.send|ret|-2 (-ENOENT)->zero');
  });
});
