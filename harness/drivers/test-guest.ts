// What a session on a real hypervisor needs of the xconf test guest it drives, whoever
// runs it: a Xen domain seen from dom0 (xen/xen-guest.ts) or a QEMU process with Xen
// emulation (qemu/qemu-guest.ts). Both run the same image (native/guest/) with the
// command queue in guest memory; they differ in how the harness reaches that memory.
import { DriverError } from '../errors.js';
import {
  blockAddress, buildGdt, buildIdt, pageTablesFor, buildTss, decodeBlockHeader, decodeResults, encodeBlockHeader, encodeCommands,
  GUEST_LAYOUT, GUEST_STATE, HDR, type BlockHeader, type CommandResult, type GuestCommand, type GuestImage, type GuestMode,
} from './kvm/guest.js';

export interface GuestBatch {
  status: 'done' | 'timeout' | 'guest-fault';
  results: CommandResult[];
  fault?: BlockHeader['lastFault'];
}

export interface TestGuest {
  /** The domain id the case names the guest by. */
  readonly domid: number;
  readonly mode: GuestMode;
  readonly vcpus: number;
  /** Run one batch on one vCPU and decode its results. */
  run(vcpu: number, commands: readonly GuestCommand[], timeoutMs?: number): GuestBatch;
  /** Guest memory as the guest sees it. */
  read(gpa: number, len: number): Buffer;
  write(gpa: number, bytes: Buffer): void;
  /** Where the guest calls the hypercall page from now on. */
  setHypercallPage(vcpu: number, gpa: number): void;
  destroy(): void;
}

/** The guest's low memory as the harness reaches it (a foreign mapping, a shared RAM file), by guest-physical address. */
export interface LowMemory {
  read(gpa: number, len: number): Buffer;
  write(gpa: number, bytes: Buffer): void;
  /** Until the u32 at gpa reads `value`: false on timeout. */
  waitU32(gpa: number, value: number, timeoutMs: number): boolean;
}

/**
 * What the KVM VMM writes into a new VM (kvm/guest-vm.ts GuestVm.create), for a guest
 * that waits in memory for its batches (host flag WAIT_GEN). The image last: the entry
 * stub refuses to start until its magic is there.
 */
export function layOutGuest(mem: LowMemory, image: GuestImage, mode: GuestMode, vcpus: number): void {
  mem.write(GUEST_LAYOUT.pml4, pageTablesFor(mode));
  mem.write(GUEST_LAYOUT.idt, buildIdt(image));
  mem.write(GUEST_LAYOUT.hypercallPage, Buffer.alloc(4096, 0xcc));
  for (let i = 0; i < vcpus; i++) {
    const block = blockAddress(i);
    mem.write(block, encodeBlockHeader({ vcpu: i, mode, lapic: true, waitGen: true }));
    mem.write(block + GUEST_LAYOUT.gdt, buildGdt(block));
    mem.write(block + GUEST_LAYOUT.tss, buildTss(block, mode));
  }
  mem.write(GUEST_LAYOUT.imageBase, image.bytes);
}

export function readHeader(mem: LowMemory, vcpu: number): BlockHeader {
  return decodeBlockHeader(mem.read(blockAddress(vcpu), HDR.size));
}

/**
 * One batch of generation `gen` on vCPU `vcpu`: the commands and the count written, then
 * the generation (the guest starts on that write); its results once the guest publishes it.
 */
export function runBatch(mem: LowMemory, mode: GuestMode, vcpu: number, gen: number, commands: readonly GuestCommand[], timeoutMs: number): GuestBatch {
  const base = blockAddress(vcpu);
  mem.write(base + GUEST_LAYOUT.cmds, encodeCommands(commands, mode));
  mem.write(base + GUEST_LAYOUT.results, Buffer.alloc(commands.length * GUEST_LAYOUT.resultSize));
  const w = Buffer.alloc(4);
  w.writeUInt32LE(commands.length, 0);
  mem.write(base + HDR.count, w);
  const g = Buffer.alloc(4);
  g.writeUInt32LE(gen, 0);
  mem.write(base + HDR.gen, g);
  const finished = mem.waitU32(base + HDR.doneGen, gen, timeoutMs);
  const h = readHeader(mem, vcpu);
  const results = decodeResults(mem.read(base + GUEST_LAYOUT.results, commands.length * GUEST_LAYOUT.resultSize), commands, mode, gen);
  if (!finished) return { status: 'timeout', results };
  if (h.state === GUEST_STATE.fatal) return { status: 'guest-fault', results, fault: h.lastFault };
  return { status: 'done', results };
}

/** The access split into the widest loads or stores the guest's mode has, one command each. */
function chunks(mode: GuestMode, gpa: number, len: number): Array<{ addr: number; size: 1 | 2 | 4 | 8 }> {
  const word = mode === 64 ? 8 : 4;
  const out: Array<{ addr: number; size: 1 | 2 | 4 | 8 }> = [];
  for (let at = gpa; at < gpa + len;) {
    const size = ([word, 4, 2, 1] as const).find((n) => at + n <= gpa + len)!;
    out.push({ addr: at, size });
    at += size;
  }
  return out;
}

function runOrThrow(g: TestGuest, cmds: GuestCommand[], what: string): CommandResult[] {
  const results: CommandResult[] = [];
  for (let i = 0; i < cmds.length; i += GUEST_LAYOUT.maxCmds) {
    const r = g.run(0, cmds.slice(i, i + GUEST_LAYOUT.maxCmds));
    const bad = r.results.find((x) => x.status !== 'ok');
    if (r.status !== 'done' || bad) {
      throw new DriverError(`${what}: the guest's own access ${r.status !== 'done' ? `ended with ${r.status}` : `faulted (vector ${bad!.fault?.vector})`}`, { code: 'EFAULT' });
    }
    results.push(...r.results);
  }
  return results;
}

/** Memory the harness cannot reach itself, read by the guest's own loads (vCPU 0). */
export function guestRead(g: TestGuest, gpa: number, len: number): Buffer {
  const parts = chunks(g.mode, gpa, len);
  const res = runOrThrow(g, parts.map((p) => ({ op: 'read', addr: p.addr, size: p.size })), `reading 0x${gpa.toString(16)}+${len}`);
  const out = Buffer.alloc(len);
  parts.forEach((p, i) => {
    const v = res[i].ret;
    for (let k = 0; k < p.size; k++) out[p.addr - gpa + k] = Number((v >> BigInt(8 * k)) & 0xffn);
  });
  return out;
}

/** And written by its own stores. */
export function guestWrite(g: TestGuest, gpa: number, bytes: Buffer): void {
  const parts = chunks(g.mode, gpa, bytes.length);
  runOrThrow(g, parts.map((p) => {
    let v = 0n;
    for (let k = p.size - 1; k >= 0; k--) v = (v << 8n) | BigInt(bytes[p.addr - gpa + k]);
    return { op: 'write', addr: p.addr, size: p.size, value: v };
  }), `writing 0x${gpa.toString(16)}+${bytes.length}`);
}
