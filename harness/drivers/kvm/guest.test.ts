import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  BLOCK_MAGIC,
  GUEST_LAYOUT,
  GUEST_MAGIC,
  HDR,
  LAYOUT_VERSION,
  OP,
  OP_MAX,
  READLOOP_MODE,
  SEL,
  blockAddress,
  buildGdt,
  buildIdt,
  buildPageTables,
  buildPageTables32,
  pageTablesFor,
  UNMAPPED_VA,
  buildTss,
  decodeBlockHeader,
  decodeCommandRecord,
  decodeResults,
  decodeRunstateSnapshot,
  decodeUpcallRing,
  encodeBlockHeader,
  encodeCommand,
  encodeCommands,
  guestImagePath,
  guestRegs,
  guestSregs,
  loadGuestImage,
  parseGuestImage,
  scratchAddress,
  toRegister,
  type GuestCommand,
  type GuestImage,
  type GuestMode,
} from './guest.js';
import type { Sregs, Segment } from './addon.js';

const MODES: GuestMode[] = [64, 32];

// ------------------------------------------------------------ layout.inc --

/** The .equ constants of native/guest/layout.inc. */
function layoutInc(): Map<string, number> {
  const text = readFileSync(fileURLToPath(new URL('../../../native/guest/layout.inc', import.meta.url)), 'utf8');
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    const r = /^\.equ\s+(\w+),\s*(-?(?:0x[0-9a-fA-F]+|\d+))/.exec(line.trim());
    if (r) m.set(r[1], r[2].startsWith('-') ? -Number(r[2].slice(1)) : Number(r[2]));
  }
  return m;
}

describe('layout.inc mirrors guest.ts', () => {
  const inc = layoutInc();
  const expectEq = (name: string, v: number) => expect(inc.get(name), name).toBe(v);

  it('block, queue and stack layout', () => {
    expectEq('GUEST_MAGIC', GUEST_MAGIC);
    expectEq('LAYOUT_VERSION', LAYOUT_VERSION);
    expectEq('IMAGE_BASE', GUEST_LAYOUT.imageBase);
    expectEq('BLOCK_SIZE', GUEST_LAYOUT.blockSize);
    expectEq('BLOCK_MASK', -GUEST_LAYOUT.blockSize);
    expectEq('BLK_UPCALL_RING', GUEST_LAYOUT.upcallRing);
    expectEq('UPCALL_RING_ENTRIES', GUEST_LAYOUT.upcallRingEntries);
    expectEq('UPCALL_REC_SIZE', GUEST_LAYOUT.upcallRecordSize);
    expectEq('BLK_GDT', GUEST_LAYOUT.gdt);
    expectEq('BLK_TSS', GUEST_LAYOUT.tss);
    expectEq('BLK_CMDS', GUEST_LAYOUT.cmds);
    expectEq('BLK_RESULTS', GUEST_LAYOUT.results);
    expectEq('MAX_CMDS', GUEST_LAYOUT.maxCmds);
    expectEq('CMD_SIZE', GUEST_LAYOUT.cmdSize);
    expectEq('RESULT_SIZE', GUEST_LAYOUT.resultSize);
    expectEq('BLK_SCRATCH', GUEST_LAYOUT.guestScratch);
    expectEq('USTACK_TOP', GUEST_LAYOUT.ustackTop);
    expectEq('TRAPSTACK_TOP', GUEST_LAYOUT.trapStackTop);
    expectEq('KSTACK_TOP', GUEST_LAYOUT.kstackTop);
    expectEq('PORT_BASE', GUEST_LAYOUT.portBase);
    expectEq('STUB_SIZE', GUEST_LAYOUT.stubSize);
    expect(GUEST_LAYOUT.kstackTop).toBeLessThan(GUEST_LAYOUT.blockSize);
    expect(inc.get('SCR_TORN_SAVED')! + 4).toBeLessThanOrEqual(GUEST_LAYOUT.harnessScratch);
  });

  it('header offsets', () => {
    const names: Record<string, keyof typeof HDR> = {
      HDR_MAGIC: 'magic', HDR_VCPU: 'vcpu', HDR_MODE: 'mode', HDR_COUNT: 'count', HDR_GEN: 'gen',
      HDR_STATE: 'state', HDR_CUR: 'cur', HDR_DONE_GEN: 'doneGen', HDR_HCALL_PAGE: 'hcallPage',
      HDR_FLAGS: 'flags', HDR_UPCALL_FLAGS: 'upcallFlags', HDR_UPCALL_WATCH: 'upcallWatch',
      HDR_UPCALL_COUNT: 'upcallCount', HDR_UPCALL_LAST: 'upcallLast', HDR_CUR_RESULT: 'curResult',
      HDR_KSP: 'ksp', HDR_RESUME_IP: 'resumeIp', HDR_RECOVER: 'recover', HDR_IRQ_ON: 'irqOn',
      HDR_FAULT_VEC: 'faultVec', HDR_FAULT_CS: 'faultCs', HDR_FAULT_ERR: 'faultErr',
      HDR_FAULT_RIP: 'faultRip', HDR_FAULT_CR2: 'faultCr2', HDR_FAULTS: 'faults',
    };
    for (const [inc_, ts] of Object.entries(names)) expectEq(inc_, HDR[ts]);
  });

  it('opcodes, selectors, ports', () => {
    const ops: Record<string, number> = {
      OP_END: OP.end, OP_HCALL: OP.hypercall, OP_VMCALL: OP.vmcall, OP_VMMCALL: OP.vmmcall,
      OP_WRMSR: OP.wrmsr, OP_RDMSR: OP.rdmsr, OP_READ: OP.read, OP_WRITE: OP.write,
      OP_READLOOP: OP.readLoop, OP_WAIT_UPCALL: OP.waitUpcall, OP_HLT: OP.hlt, OP_YIELD: OP.yield,
      OP_LOG: OP.log, OP_SET_UPCALL: OP.setUpcall, OP_IRQ: OP.irq, OP_CPUID: OP.cpuid, OP_MAX,
      RL_COPY: READLOOP_MODE.copy, RL_RUNSTATE64: READLOOP_MODE.runstate64, RL_RUNSTATE32: READLOOP_MODE.runstate32,
      SEL_KCODE64: SEL.kcode64, SEL_KDATA: SEL.kdata, SEL_KCODE32: SEL.kcode32, SEL_UCODE32: SEL.ucode32,
      SEL_UDATA: SEL.udata, SEL_UCODE64: SEL.ucode64, SEL_TSS: SEL.tss,
      PORT_DONE: GUEST_LAYOUT.portBase, PORT_YIELD: GUEST_LAYOUT.portBase + 1,
      PORT_FAULT: GUEST_LAYOUT.portBase + 2, PORT_LOG: GUEST_LAYOUT.portBase + 3,
    };
    for (const [k, v] of Object.entries(ops)) expectEq(k, v);
  });
});

// -------------------------------------------------------------- commands --

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const gpa = fc.integer({ min: 0x1000, max: 0xfff0_0000 });

type Row = [GuestCommand, number, number, bigint[]];
const row = (c: GuestCommand, op: number, flags: number, a: bigint[]): Row => [c, op, flags, a];

/** A command valid in `mode`, with the a0..a6 words it must encode to. */
function arbCommand(mode: GuestMode): fc.Arbitrary<Row> {
  const reg = mode === 64 ? u64 : fc.bigInt({ min: 0n, max: 0xffffffffn });
  const args = fc.array(reg, { maxLength: 6 });
  const pad = (a: bigint[]) => [...a, ...Array(7 - a.length).fill(0n)];
  return fc.oneof(
    fc.tuple(fc.integer({ min: 0, max: 127 }), args, fc.boolean()).map(([nr, a, cpl3]) => row(
      { op: 'hypercall', nr, args: a, cpl3 }, OP.hypercall, cpl3 ? 1 : 0,
      pad([BigInt(nr), ...a.concat(Array(6 - a.length).fill(0n))]),
    )),
    fc.tuple(fc.constantFrom('vmcall' as const, 'vmmcall' as const), reg, args).map(([op, rax, a]) => row(
      { op, rax, args: a }, op === 'vmcall' ? OP.vmcall : OP.vmmcall, 0,
      pad([rax, ...a]),
    )),
    fc.tuple(u32, u64).map(([msr, value]) => row({ op: 'wrmsr', msr, value }, OP.wrmsr, 0, pad([BigInt(msr), value]))),
    fc.tuple(gpa, fc.constantFrom(1, 2, 4, 8) as fc.Arbitrary<1 | 2 | 4 | 8>).map(([addr, size]) => row(
      { op: 'read', addr, size }, OP.read, 0, pad([BigInt(addr), BigInt(size)]),
    )),
    fc.tuple(gpa, fc.integer({ min: 1, max: 256 }), fc.integer({ min: 0, max: 1000 })).map(([src, len, iterations]) => row(
      { op: 'read-loop', src, len, iterations }, OP.readLoop, 0,
      pad([BigInt(src), BigInt(len), BigInt(iterations), 0n, BigInt(READLOOP_MODE.copy)]),
    )),
    fc.tuple(gpa, fc.boolean(), u32, u64).map(([src, native, iterations, offset]) => row(
      { op: 'runstate-check', src, layout: native ? 'native' : 'compat', iterations, offset }, OP.readLoop, 0,
      pad([BigInt(src), native ? 48n : 44n, BigInt(iterations), 0n,
        BigInt(native ? READLOOP_MODE.runstate64 : READLOOP_MODE.runstate32), offset]),
    )),
    fc.tuple(u32, u32).map(([count, spins]) => row({ op: 'wait-upcall', count, spins }, OP.waitUpcall, 0, pad([BigInt(count), BigInt(spins)]))),
    u32.map((tag) => row({ op: 'yield', tag }, OP.yield, 0, pad([BigInt(tag)]))),
    u32.map((value) => row({ op: 'log', value }, OP.log, 0, pad([BigInt(value)]))),
    fc.tuple(u32, u32).map(([leaf, subleaf]) => row({ op: 'cpuid', leaf, subleaf }, OP.cpuid, 0, pad([BigInt(leaf), BigInt(subleaf)]))),
    fc.boolean().map((enable) => row({ op: 'irq', enable }, OP.irq, 0, pad([enable ? 1n : 0n]))),
    fc.constant(row({ op: 'hlt' }, OP.hlt, 0, pad([]))),
    fc.constant(row({ op: 'end' }, OP.end, 0, pad([]))),
  );
}

describe('command encoding', () => {
  for (const mode of MODES) {
    it(`encodes every command to op, flags and a0..a6 (${mode}-bit)`, () => {
      fc.assert(
        fc.property(fc.array(arbCommand(mode), { maxLength: GUEST_LAYOUT.maxCmds }), (cmds) => {
          const buf = encodeCommands(cmds.map((c) => c[0]), mode);
          expect(buf.length).toBe(cmds.length * GUEST_LAYOUT.cmdSize);
          cmds.forEach(([, op, flags, a], i) => {
            const rec = decodeCommandRecord(buf.subarray(i * 64, i * 64 + 64));
            expect(rec).toEqual({ op, flags, a });
          });
        }),
      );
    });
  }

  it('encodes negative register values as two’s complement of the mode width', () => {
    expect(toRegister(-1, 64, 'x')).toBe((1n << 64n) - 1n);
    expect(toRegister(-38, 32, 'x')).toBe(0xffffffdan);
    const rec = decodeCommandRecord(encodeCommand({ op: 'vmcall', rax: -1, args: [-2] }, 32));
    expect(rec.a[0]).toBe(0xffffffffn);
    expect(rec.a[1]).toBe(0xfffffffen);
  });

  it('rejects bad commands before anything reaches the guest', () => {
    const bad: Array<[GuestCommand, GuestMode, RegExp]> = [
      [{ op: 'hypercall', nr: 128 }, 64, /nr/],
      [{ op: 'hypercall', nr: 1, args: [1, 2, 3, 4, 5, 6, 7] }, 64, /at most six/],
      [{ op: 'vmcall', rax: 1n << 32n }, 32, /32-bit register/],
      [{ op: 'vmcall', rax: 1n << 64n }, 64, /64-bit register/],
      [{ op: 'vmcall', rax: 0.5 }, 64, /safe integer/],
      [{ op: 'read', addr: 0, size: 4 }, 64, /address 0/],
      [{ op: 'read', addr: 0xffff_fffe, size: 4 }, 64, /beyond 4 GiB/],
      [{ op: 'read', addr: 0x1000, size: 3 as 4 }, 64, /size/],
      [{ op: 'write', addr: 0x1000, size: 1, value: 256 }, 64, /fit in 1 bytes/],
      [{ op: 'read-loop', src: 0x1000, len: 0, iterations: 1 }, 64, /len/],
      [{ op: 'read-loop', src: 0x1000, len: 257, iterations: 1 }, 64, /len/],
      [{ op: 'runstate-check', src: 0x1000, layout: 'big' as 'native', iterations: 1 }, 64, /layout/],
      [{ op: 'set-upcall', watch: 0x1000, flags: 8 }, 64, /flags/],
      [{ op: 'nope' } as unknown as GuestCommand, 64, /unknown command op/],
    ];
    for (const [cmd, mode, re] of bad) expect(() => encodeCommand(cmd, mode), JSON.stringify(cmd, (_k, v) => (typeof v === 'bigint' ? String(v) : v))).toThrow(re);
    expect(() => encodeCommands(Array(GUEST_LAYOUT.maxCmds + 1).fill({ op: 'hlt' }), 64)).toThrow(/at most 128/);
    expect(() => encodeCommands([], 16 as GuestMode)).toThrow(/mode must be 64 or 32/);
  });

  it('accepts signed values for narrow writes', () => {
    expect(() => encodeCommand({ op: 'write', addr: 0x1000, size: 1, value: -1 }, 64)).not.toThrow();
    expect(() => encodeCommand({ op: 'write', addr: 0x1000, size: 2, value: 0xffff }, 64)).not.toThrow();
    expect(() => encodeCommand({ op: 'write', addr: 0x1000, size: 2, value: -0x8001 }, 64)).toThrow();
  });
});

// --------------------------------------------------------------- results --

function resultRecord(status: number, vector: number, ret: bigint, aux: bigint[]): Buffer {
  const b = Buffer.alloc(GUEST_LAYOUT.resultSize);
  b.writeUInt32LE(status, 0);
  b.writeUInt32LE(vector, 4);
  b.writeBigUInt64LE(ret, 8);
  aux.forEach((v, i) => b.writeBigUInt64LE(v, 16 + 8 * i));
  return b;
}

describe('result decoding', () => {
  const cmds: GuestCommand[] = [
    { op: 'hypercall', nr: 17 },
    { op: 'wrmsr', msr: 1, value: 1 },
    { op: 'cpuid', leaf: 0 },
    { op: 'runstate-check', src: 0x1000, layout: 'native', iterations: 9 },
    { op: 'read-loop', src: 0x1000, len: 8, iterations: 3 },
    { op: 'wait-upcall', count: 2 },
    { op: 'log', value: 1 },
  ];
  const gen = 0x123456;
  const buf = Buffer.concat([
    resultRecord((gen << 8) | 1, 0, 0xffffffffffffffdan, [1n, 2n, 3n, 4n, 5n, 6n]),
    resultRecord((gen << 8) | 2, 13, 0n, [0x10n, 0x1234n, 0n, 0x8n, 0n, 0n]),
    resultRecord((gen << 8) | 1, 0, 0xdn, [0x756e6547n, 0x6c65746en, 0x49656e69n, 0n, 0n, 0n]),
    resultRecord((gen << 8) | 1, 0, 1n, [5n, 2n, 1n, 1n, 4n, 9n]),
    resultRecord((gen << 8) | 1, 0, 2n, [3n, 0n, 0n, 0n, 0n, 0n]),
    resultRecord((gen << 8) | 1, 0, 2n, [1n, 0n, 0n, 0n, 0n, 0n]),
    resultRecord(((gen - 1) << 8) | 1, 0, 0n, [0n, 0n, 0n, 0n, 0n, 0n]), // stale: last batch
  ]);

  it('decodes statuses, faults and per-op views', () => {
    const r = decodeResults(buf, cmds, 64, gen);
    expect(r.map((x) => x.status)).toEqual(['ok', 'fault', 'ok', 'ok', 'ok', 'ok', 'not-run']);
    expect(r[0].retSigned).toBe(-38n);
    expect(r[0].argsAfter).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
    expect(r[1].fault).toEqual({ vector: 13, errorCode: 0x10n, rip: 0x1234n, cr2: 0n, cs: 8 });
    expect(r[2].cpuid).toEqual({ eax: 0xd, ebx: 0x756e6547, ecx: 0x6c65746e, edx: 0x49656e69 });
    expect(r[3].runstate).toEqual({ ok: 5n, busy: 2n, raced: 1n, torn: 1n, changes: 4n, iterations: 9n });
    expect(r[4].readLoop).toEqual({ changes: 2n, iterations: 3n });
    expect(r[5].waitUpcall).toEqual({ count: 2, reached: true });
  });

  it('sign-extends from 32 bits in 32-bit mode', () => {
    const b = resultRecord((1 << 8) | 1, 0, 0xffffffdan, []);
    expect(decodeResults(b, [{ op: 'hypercall', nr: 1 }], 32, 1)[0].retSigned).toBe(-38n);
    expect(decodeResults(b, [{ op: 'hypercall', nr: 1 }], 64, 1)[0].retSigned).toBe(0xffffffdan);
  });

  it('rejects a short buffer', () => {
    expect(() => decodeResults(Buffer.alloc(10), cmds, 64, gen)).toThrow(/result buffer/);
  });

  it('decodes a stored torn runstate snapshot', () => {
    const b = Buffer.alloc(64);
    b.writeUInt32LE(1, 0);
    b.writeBigUInt64LE(100n, 8);
    [10n, 20n, 30n, 41n].forEach((v, i) => b.writeBigUInt64LE(v, 16 + 8 * i));
    b.writeBigUInt64LE(100n, 48);
    b.writeBigUInt64LE(100n, 56);
    expect(decodeRunstateSnapshot(b)).toEqual({ state: 1, entry: 100n, time: [10n, 20n, 30n, 41n], t1: 100n, t2: 100n });
  });
});

describe('block header and upcall ring', () => {
  it('round-trips the host-written header fields', () => {
    const b = encodeBlockHeader({ vcpu: 3, mode: 32, lapic: true, hypercallPage: 0x40000, upcallWatch: 0x200040, upcallFlags: 7 });
    const h = decodeBlockHeader(b);
    expect(h).toMatchObject({ magic: BLOCK_MAGIC, vcpu: 3, mode: 32, hypercallPage: 0x40000n, flags: 1, upcallFlags: 7, upcallWatch: 0x200040n, count: 0 });
    expect(() => encodeBlockHeader({ vcpu: 16, mode: 64, lapic: false })).toThrow();
    // The Xen target's guest waits in memory for the next batch (layout.inc HF_WAIT_GEN).
    expect(decodeBlockHeader(encodeBlockHeader({ vcpu: 0, mode: 64, lapic: true, waitGen: true })).flags).toBe(3);
    expect(decodeBlockHeader(encodeBlockHeader({ vcpu: 0, mode: 64, lapic: false, waitGen: true })).flags).toBe(2);
  });

  it('returns the ring oldest first, after wrap-around', () => {
    const n = GUEST_LAYOUT.upcallRingEntries;
    const ring = Buffer.alloc(n * 32);
    const count = n + 5;
    for (let seq = 1; seq <= count; seq++) {
      const off = ((seq - 1) % n) * 32;
      ring.writeUInt32LE(0x40 + (seq % 7), off);
      ring.writeUInt32LE(seq, off + 4);
    }
    const recs = decodeUpcallRing(ring, count);
    expect(recs).toHaveLength(n);
    expect(recs[0].seq).toBe(6);
    expect(recs[n - 1].seq).toBe(count);
    expect(decodeUpcallRing(ring, 0)).toEqual([]);
  });

  it('places blocks and scratch per vCPU', () => {
    expect(blockAddress(0)).toBe(0x30000);
    expect(blockAddress(15)).toBe(0x30000 + 15 * 0x10000);
    expect(blockAddress(15) + GUEST_LAYOUT.blockSize).toBeLessThanOrEqual(GUEST_LAYOUT.freeBase);
    expect(() => blockAddress(16)).toThrow(RangeError);
    expect(scratchAddress(1)).toEqual({ gpa: 0x40000 + 0x6000, size: 0x4000 });
  });
});

// ------------------------------------------------------------- CPU state --

const fakeImage = (mode: GuestMode): GuestImage => ({
  mode,
  bytes: Buffer.alloc(0x2000),
  entry: 0x10060,
  stubs: 0x10800,
  userReturn: 0x10300,
});

describe('CPU state built for the guest', () => {
  it('identity-maps 4 GiB with user-accessible 2 MiB pages', () => {
    const pt = buildPageTables();
    const at = (gpa: number) => pt.readBigUInt64LE(gpa - GUEST_LAYOUT.pml4);
    expect(at(GUEST_LAYOUT.pml4)).toBe(BigInt(GUEST_LAYOUT.pdpt) | 7n);
    expect(at(GUEST_LAYOUT.pdpt + 24)).toBe(BigInt(GUEST_LAYOUT.pageDirectories + 0x3000) | 7n);
    // the LAPIC page 0xfee00000 lies in PD 3, entry 0x1f7
    expect(at(GUEST_LAYOUT.pageDirectories + 0x3000 + 8 * 0x1f7)).toBe(0xfee00000n | 0x87n);
  });

  it('leaves UNMAPPED_VA, and only it, unmapped in both modes', () => {
    const pt64 = buildPageTables();
    const pde64 = (va: number) => pt64.readBigUInt64LE(GUEST_LAYOUT.pageDirectories - GUEST_LAYOUT.pml4 + 8 * Math.floor(va / 0x20_0000));
    const pd32 = buildPageTables32();
    const pde32 = (va: number) => pd32.readUInt32LE(4 * Math.floor(va / 0x40_0000));
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), (va) => {
      const hole = va >= UNMAPPED_VA.base && va < UNMAPPED_VA.base + UNMAPPED_VA.size;
      const p64 = pde64(va), p32 = pde32(va);
      expect(Number(p64 & 1n)).toBe(hole ? 0 : 1);
      expect(p32 & 1).toBe(hole ? 0 : 1);
      if (!hole) {
        // identity, large page, user, writable
        expect(p64 & ~0x1f_ffffn).toBe(BigInt(va) & ~0x1f_ffffn);
        expect(Number(p64 & 0x87n)).toBe(0x87);
        expect((p32 & ~0x3f_ffff) >>> 0).toBe((va & ~0x3f_ffff) >>> 0);
        expect(p32 & 0x87).toBe(0x87);
      }
    }));
    // The hole lies past the largest guest RAM a case may ask for.
    expect(UNMAPPED_VA.base).toBe(0x4000_0000);
    expect(pageTablesFor(32)).toEqual(pd32);
    expect(pageTablesFor(64)).toEqual(pt64);
  });

  it('has the selectors both modes use, and a busy TSS pointing into the block', () => {
    const block = blockAddress(2);
    const gdt = buildGdt(block);
    const d = (sel: number) => gdt.readBigUInt64LE(sel);
    const access = (sel: number) => Number((d(sel) >> 40n) & 0xffn);
    const flags = (sel: number) => Number((d(sel) >> 52n) & 0xfn);
    expect(access(SEL.kcode64)).toBe(0x9a);
    expect(flags(SEL.kcode64) & 2).toBe(2); // L
    expect(flags(SEL.kcode32) & 4).toBe(4); // D
    expect(access(SEL.ucode64)).toBe(0xfa); // DPL 3
    expect(access(SEL.udata)).toBe(0xf2);
    const tss = d(SEL.tss);
    const base = Number((tss >> 16n) & 0xffffffn) | (Number((tss >> 56n) & 0xffn) << 24);
    expect(base).toBe(block + GUEST_LAYOUT.tss);
    expect(access(SEL.tss)).toBe(0x8b);
    expect(buildTss(block, 64).readBigUInt64LE(4)).toBe(BigInt(block + GUEST_LAYOUT.trapStackTop));
    expect(buildTss(block, 32).readUInt32LE(8)).toBe(SEL.kdata);
  });

  for (const mode of MODES) {
    it(`points every IDT gate at its stub (${mode}-bit)`, () => {
      const img = fakeImage(mode);
      const idt = buildIdt(img);
      const size = mode === 64 ? 16 : 8;
      expect(idt.length).toBe(256 * size);
      for (const v of [0, 6, 13, 0x20, 0xe3, 0xff]) {
        const off = v * size;
        const target = idt.readUInt16LE(off) | (idt.readUInt16LE(off + 6) << 16);
        expect(target).toBe(img.stubs + v * GUEST_LAYOUT.stubSize);
        expect(idt.readUInt16LE(off + 2)).toBe(mode === 64 ? SEL.kcode64 : SEL.kcode32);
        expect(idt[off + 5]).toBe(0x8e);
      }
    });

    it(`starts vCPU 1 at the entry with its own block (${mode}-bit)`, () => {
      const zeroSeg: Segment = { base: 0n, limit: 0, selector: 0, type: 0, present: 0, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0 };
      const base: Sregs = {
        cs: zeroSeg, ds: zeroSeg, es: zeroSeg, fs: zeroSeg, gs: zeroSeg, ss: zeroSeg, tr: zeroSeg, ldt: zeroSeg,
        gdt: { base: 0n, limit: 0 }, idt: { base: 0n, limit: 0 },
        cr0: 0n, cr2: 0n, cr3: 0n, cr4: 0n, cr8: 0n, efer: 0n, apicBase: 0xfee00900n, interruptBitmap: [0n, 0n, 0n, 0n],
      };
      const s = guestSregs(base, mode, 1);
      expect(s.apicBase).toBe(0xfee00900n);
      expect(s.gdt.base).toBe(BigInt(blockAddress(1) + GUEST_LAYOUT.gdt));
      expect(s.tr.base).toBe(BigInt(blockAddress(1) + GUEST_LAYOUT.tss));
      expect(s.cs.l).toBe(mode === 64 ? 1 : 0);
      expect(s.efer).toBe(mode === 64 ? 0x500n : 0n);
      // Both modes page: PAE with the PML4, or 4 MiB pages (PSE) with the 32-bit directory.
      expect(s.cr0 & 0x80010000n).toBe(0x80010000n);
      expect(s.cr3).toBe(BigInt(GUEST_LAYOUT.pml4));
      expect(s.cr4).toBe(mode === 64 ? 0x20n : 0x10n);
      const r = guestRegs(fakeImage(mode), 1);
      expect(r.rip).toBe(0x10060n);
      expect(r.rdi).toBe(BigInt(blockAddress(1)));
      expect(r.rsp & ~0xffffn).toBe(BigInt(blockAddress(1)));
    });
  }
});

// ------------------------------------------------------------ the image --

describe('guest image header checks', () => {
  function header(mode: number): Buffer {
    const b = Buffer.alloc(0x400);
    const v = [GUEST_MAGIC, LAYOUT_VERSION, mode, 0x10060, 0x10100, 16, 0x10200, 0x10000, 0x1000, 0x3000, 128, 64, 64, 0x100, 64, 0x700, OP_MAX, 0, 0x900, 0x980, 0x400];
    v.forEach((x, i) => b.writeUInt32LE(x, 4 * i));
    return b;
  }

  it('accepts a consistent header', () => {
    expect(parseGuestImage(header(64), 64)).toMatchObject({ mode: 64, entry: 0x10060, stubs: 0x10100, userReturn: 0x10200 });
  });

  it('names the field that drifted', () => {
    const b = header(64);
    b.writeUInt32LE(0x2000, 32);
    expect(() => parseGuestImage(b, 64)).toThrow(/command offset/);
    expect(() => parseGuestImage(header(32), 64)).toThrow(/32-bit mode/);
    const c = header(64);
    c.writeUInt32LE(0x90000, 12);
    expect(() => parseGuestImage(c, 64)).toThrow(/entry .* outside/);
  });

  it('reports a missing image with a reason', () => {
    const r = loadGuestImage(64, '/nonexistent/guest64.bin');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/missing/);
  });

  for (const mode of MODES) {
    const built = existsSync(guestImagePath(mode));
    it.skipIf(!built)(`the built guest${mode}.bin matches guest.ts${built ? '' : ' (skipped: not built; run npm ci)'}`, () => {
      const r = loadGuestImage(mode);
      if (!r.ok) throw new Error(r.reason);
      expect(r.image.bytes.length).toBeLessThanOrEqual(GUEST_LAYOUT.imageMaxSize);
      // the user-return point is a ud2
      expect(r.image.bytes.readUInt16LE(r.image.userReturn - GUEST_LAYOUT.imageBase)).toBe(0x0b0f);
    });
  }
});
