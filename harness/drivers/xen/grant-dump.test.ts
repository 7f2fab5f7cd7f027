import { describe, expect, it } from 'vitest';
import type { AreaView } from '../../model/areas.js';
import { activeFromDump, maptrackFromDump, parseGrantDump, type GrantMemory } from './grant-dump.js';

// A console ring as Xen 4.17 writes it for debug key 'g' (gnttab_usage_print's format),
// after an older dump whose values must not be taken.
const dump = (pin: string) => [
  "(XEN) gnttab_usage_print_all [ key 'g' pressed",
  '(XEN)       -------- active --------       -------- shared --------',
  '(XEN) [ref] localdom mfn      pin          localdom gmfn     flags',
  '(XEN) grant-table for remote d0 (v1)',
  '(XEN)   1 frames (64 max), 0 maptrack frames (1024 max)',
  '(XEN) no active grant table entries',
  '(XEN)       -------- active --------       -------- shared --------',
  '(XEN) [ref] localdom mfn      pin          localdom gmfn     flags',
  '(XEN) grant-table for remote d1 (v1)',
  '(XEN)   1 frames (64 max), 0 maptrack frames (1024 max)',
  `(XEN) [0x008]      2 0x1234a5 ${pin}          2 0x000300 0x19`,
  '(XEN) [0x1ff]      3 0x1234a6 0x00000100          3 0x000301 0x0d',
  '(XEN)       -------- active --------       -------- shared --------',
  '(XEN) [ref] localdom mfn      pin          localdom gmfn     flags',
  '(XEN) grant-table for remote d2 (v2)',
  '(XEN)   2 frames (64 max), 1 maptrack frames (1024 max)',
  '(XEN) [0x00a]      1 0x1234a7 0x00000001          1 0x000302 0x18',
  '(XEN) gnttab_usage_print_all ] done',
].join('\n');
const ring = `(XEN) boot noise\n${dump('0x00000005')}\n(XEN) (d1) guest line\n${dump('0x00000201')}\n`;

/** A granting domain whose grant frame 0 sits at gpa 0x200000, with the entries' first u16s. */
function memory(frames: Record<string, number>, words: Record<number, number>): GrantMemory {
  const view: AreaView = { width: 64, get: (k) => frames[k] };
  return {
    areas: () => view,
    read: async (_dom, gpa) => {
      const w = words[gpa] ?? 0;
      return new Uint8Array([w & 0xff, w >> 8]);
    },
  };
}

describe("the grant table dump of debug key 'g'", () => {
  it('takes the last complete dump, per domain: version, frames and the pinned rows', () => {
    const d = parseGrantDump(ring);
    expect([...d.keys()]).toEqual([0, 1, 2]);
    expect(d.get(1)).toMatchObject({ version: 1, frames: 1 });
    expect(d.get(1)!.rows.get(8)).toEqual({ mapper: 2, pin: 0x201, status: 0x19 });
    expect(d.get(1)!.rows.get(0x1ff)).toEqual({ mapper: 3, pin: 0x100, status: 0x0d });
    expect(d.get(2)).toMatchObject({ version: 2, frames: 2 });
    expect(d.get(0)!.rows.size).toBe(0);
  });
  it('a ring without a complete dump is an error, not an empty table', () => {
    expect(() => parseGrantDump("(XEN) gnttab_usage_print_all [ key 'g' pressed\n(XEN) grant-table for remote d1 (v1)\n")).toThrow(/no complete grant table dump/);
  });
  it('answers gnttab.active: pin words and mapper from the dump, flags from the guest\'s grant frame', async () => {
    const d = parseGrantDump(ring);
    const mem = memory({ 'grant_frame/0': 0x200000 }, { [0x200000 + 8 * 8]: 0x19, [0x200000 + 9 * 8]: 0x09 });
    expect((await activeFromDump(d, 1, 8, mem)).out).toEqual({ pin: 0x201n, pin_hstw: 1n, pin_hstr: 2n, mapper: 2n, status_bits: 0x18n, entry_flags: 0x19n });
    // Not pinned: nothing in the dump; the guest's own reading bit is still seen.
    expect((await activeFromDump(d, 1, 9, mem)).out).toEqual({ pin: 0n, pin_hstw: 0n, pin_hstr: 0n, mapper: 0n, status_bits: 0x08n, entry_flags: 0x09n });
    // Past the table (one v1 frame: 512 entries): all zero, as the model says.
    expect((await activeFromDump(d, 1, 600, mem)).out).toMatchObject({ pin: 0n, status_bits: 0n, entry_flags: 0n });
  });
  it('an entry in a frame the guest has not placed: the dump\'s flags when pinned (v1), else an error', async () => {
    const d = parseGrantDump(ring);
    const none = memory({}, {});
    expect((await activeFromDump(d, 1, 8, none)).out).toMatchObject({ pin: 0x201n, status_bits: 0x18n, entry_flags: 0x19n });
    await expect(activeFromDump(d, 1, 9, none)).rejects.toThrow(/grant entry 9 is in a frame the guest has not placed/);
    await expect(activeFromDump(d, 7, 9, none)).rejects.toThrow(/has no domain 7/);
  });
  it('answers gnttab.maptrack: the host pins of every entry the domain maps, and its maptrack frames', () => {
    const d = parseGrantDump(ring);
    expect(d.get(2)!.maptrackFrames).toBe(1);
    // d1's ref 8 (pin 0x201: one write, two read mappings) is d2's.
    expect(maptrackFromDump(d, 2).out).toEqual({ used: 3n, frames: 1n, limit: 256n });
    // d1 maps d2's ref 10 once (pin 1).
    expect(maptrackFromDump(d, 1).out).toEqual({ used: 1n, frames: 0n, limit: 0n });
    expect(() => maptrackFromDump(d, 9)).toThrow(/has no domain 9/);
  });
  it('v2: the status bits come from the status frame', async () => {
    const d = parseGrantDump(ring);
    const mem = memory({ 'grant_frame/0': 0x300000, 'grant_status_frame/0': 0x310000 }, { [0x300000 + 10 * 16]: 0x1, [0x310000 + 10 * 2]: 0x18 });
    expect((await activeFromDump(d, 2, 10, mem)).out).toEqual({ pin: 1n, pin_hstw: 1n, pin_hstr: 0n, mapper: 1n, status_bits: 0x18n, entry_flags: 0x1n });
  });
});
