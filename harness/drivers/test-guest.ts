// What a session on a real hypervisor needs of the xconf test guest it drives, whoever
// runs it: a Xen domain seen from dom0 (xen/xen-guest.ts) or a QEMU process with Xen
// emulation (qemu/qemu-guest.ts). Both run the same image (native/guest/) with the
// command queue in guest memory; they differ in how the harness reaches that memory.
import { DriverError } from '../errors.js';
import { GUEST_LAYOUT, type BlockHeader, type CommandResult, type GuestCommand, type GuestMode } from './kvm/guest.js';

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
