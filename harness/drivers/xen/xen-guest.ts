// One Xen domain running the xconf test guest, seen from dom0. The guest is the
// same image the kvm target runs (native/guest/guest{64,32}.S); it enters through
// the PVH stub (native/guest/pvh.S). The domain is built paused by the toolstack
// (`xl create -p`); dom0 then writes through a foreign mapping what the KVM VMM
// writes into its VM (image, page tables, IDT, vCPU block, GDT, TSS) and unpauses
// it. Batches go through the same command queue as on KVM: dom0 writes the
// commands and bumps the block's generation, the guest (host flag WAIT_GEN) runs
// them and publishes the generation it completed; dom0 waits for it in memory.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DriverError } from '../../errors.js';
import { packagePath } from '../../paths.js';
import { HYPERVISOR } from '../../model/hypercall.js';
import { VCPUOP } from '../../model/vcpu-op.js';
import { blockAddress, GUEST_LAYOUT, GUEST_STATE, HDR, loadGuestImage, type BlockHeader, type GuestCommand, type GuestMode } from '../kvm/guest.js';
import { xenAddon, type XenMapping } from './native.js';
import { guestRead, guestWrite, layOutGuest, readHeader, runBatch, type GuestBatch, type LowMemory, type TestGuest } from '../test-guest.js';

const PAGE = 4096;
/** The guest's own pages (page tables, image, blocks): mapped once, never remapped by a case. */
const LOW_PAGES = GUEST_LAYOUT.freeBase / PAGE;
/** vCPU blocks must end below the PVH stub at 1 MiB (native/guest/pvh.ld). */
export const XEN_MAX_VCPUS = 12;
const BOOT_TIMEOUT_MS = 20_000;
/** Where pvh.ld loads the stub, and how much after it the domain builder may have used. */
const STUB_BASE = 0x100000;
const STUB_AREA = 0x10000;
/** Where the stub's other vCPUs enter (pvh.S AP_ENTRY_OFFSET). */
const AP_ENTRY_OFFSET = 0x10;
/** XEN_DOMINF_shutdown (public/domctl.h): the domain has shut down (domain_shutdown). */
const XEN_DOMINF_SHUTDOWN = 1 << 2;
/** How often a wait for the guest looks whether its domain has shut down. */
const SHUTDOWN_LOOK_MS = 200;
const CALL_OPS: ReadonlySet<string> = new Set(['hypercall', 'vmcall', 'vmmcall']);

export interface XenGuestOptions {
  /** The domain id the case names it by (hypercall arguments carry it). */
  domid: number;
  mode: GuestMode;
  vcpus: number;
  memoryBytes: number;
  /** xl.cfg settings for the case's limits (XL_LIMITS). */
  limits?: Record<string, number>;
  /** The CPU's hypercall instruction, for starting the other vCPUs: vmcall (intel) or vmmcall (amd). */
  vendor: 'intel' | 'amd';
  timeoutMs?: number;
}

/** The case limits (DomainSetup.limits) the toolstack sets at domain creation, as xl.cfg names them. */
export const XL_LIMITS: Record<string, string> = {
  max_grant_frames: 'max_grant_frames',
  max_maptrack_frames: 'max_maptrack_frames',
  max_grant_version: 'max_grant_version',
  // libxl passes max_event_channels as xen_domctl_createdomain.max_evtchn_port.
  max_evtchn_port: 'max_event_channels',
};

export type XenBatch = GuestBatch;


/**
 * Build the paused PVH domain with the case's domain id: through xconf-xl-create
 * (ci/live-xen/xl-create.c, libxl with domain_create_info.domid; XCONF_XEN_CREATE
 * names it), or, without it, `xl create -p`, whose id Xen picks: then a case naming
 * another id cannot run.
 */
function createPaused(name: string, o: XenGuestOptions): number {
  const memMiB = Math.max(16, Math.ceil(o.memoryBytes / (1 << 20)));
  const kernel = packagePath('native', 'build', 'guest', 'pvh.elf');
  const limits = Object.entries(o.limits ?? {}).map(([k, v]) => {
    if (!XL_LIMITS[k] || !Number.isSafeInteger(v) || v < 0) throw new DriverError(`limit ${k}=${v} has no xl.cfg setting`, { code: 'EUNSUPPORTED' });
    return [XL_LIMITS[k], v] as const;
  });
  const helper = process.env.XCONF_XEN_CREATE;
  if (helper) {
    const args = [name, String(o.domid), kernel, String(memMiB), String(o.vcpus), ...limits.map(([k, v]) => `${k}=${v}`)];
    // The last case's domain with this id may still be dying: Xen frees a destroyed domain
    // (and its id) after an RCU grace period, so creating it again at once can fail. Retry briefly.
    for (let attempt = 0; ; attempt++) {
      const r = spawnSync(helper, args, { encoding: 'utf8', timeout: 60_000 });
      if (r.error) throw new DriverError(`${helper}: ${r.error.message}`, { code: 'ENOXL' });
      if (r.status === 0) return Number(r.stdout.trim());
      const why = `${r.stderr}`.trim().split('\n').slice(-2).join('; ');
      if (attempt < 15 && r.status === 1) {
        spawnSync('sleep', ['0.2']);
        continue;
      }
      throw new DriverError(`creating domain ${o.domid} (${name}): ${helper} exited ${r.status}${why ? `: ${why}` : ''}`, { code: 'EXL' });
    }
  }
  const lines = [
    `name = "${name}"`,
    'type = "pvh"',
    `kernel = "${kernel}"`,
    `memory = ${memMiB}`,
    `vcpus = ${o.vcpus}`,
    ...limits.map(([k, v]) => `${k} = ${v}`),
    'on_poweroff = "destroy"',
    'on_reboot = "destroy"',
    'on_crash = "preserve"',
    '',
  ];
  const dir = mkdtempSync(join(tmpdir(), 'xconf-xen-'));
  const cfg = join(dir, `${name}.cfg`);
  writeFileSync(cfg, lines.join('\n'));
  try {
    xl(['create', '-p', '-q', cfg], `creating domain ${name}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const domid = Number(xl(['domid', name], `looking up ${name}`).trim());
  if (domid !== o.domid) {
    xl(['destroy', String(domid)], `destroying ${name}`);
    throw new DriverError(`xl gave the domain id ${domid} where the case names ${o.domid}; set XCONF_XEN_CREATE to ci/live-xen's xconf-xl-create to choose ids`, { code: 'EUNSUPPORTED' });
  }
  return domid;
}

/** Run a toolstack command; its stderr becomes the error. */
function xl(args: string[], what: string): string {
  const r = spawnSync('xl', args, { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw new DriverError(`xl ${args[0]}: ${r.error.message} (the xen target runs in a Xen dom0 with xl on PATH)`, { code: 'ENOXL' });
  if (r.status !== 0) {
    const why = `${r.stderr}`.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('Parsing config')).slice(-2).join('; ');
    throw new DriverError(`${what}: xl ${args.join(' ')} exited ${r.status}${why ? `: ${why}` : ''}`, { code: 'EXL' });
  }
  return r.stdout;
}

export class XenGuest implements TestGuest {
  private generation: number[];
  private closed = false;
  /** The domain shut down (SCHEDOP_shutdown): Xen paused its vCPUs, none runs again. */
  private shutDown = false;
  /** The guest's memory for a batch: a wait also ends when the domain shuts down. */
  private readonly batchMemory: LowMemory;

  private constructor(
    readonly domid: number,
    readonly name: string,
    readonly mode: GuestMode,
    readonly vcpus: number,
    private readonly low: XenMapping,
    private readonly timeoutMs: number,
  ) {
    this.generation = Array(vcpus).fill(0);
    this.batchMemory = {
      read: (gpa, len) => low.read(gpa, len),
      write: (gpa, bytes) => low.write(gpa, bytes),
      waitU32: (gpa, value, timeoutMs) => {
        const end = Date.now() + timeoutMs;
        for (;;) {
          if (low.waitU32(gpa, value, Math.max(0, Math.min(SHUTDOWN_LOOK_MS, end - Date.now())))) return true;
          if (Date.now() >= end) return false;
          const info = xenAddon().domainInfo(domid);
          if (info && info.flags & XEN_DOMINF_SHUTDOWN) {
            this.shutDown = true;
            return false;
          }
        }
      },
    };
  }

  /** Build a paused PVH domain, lay the guest out in it, start it, and wait until it is ready. */
  static create(o: XenGuestOptions): XenGuest {
    if (o.vcpus < 1 || o.vcpus > XEN_MAX_VCPUS) {
      throw new DriverError(`the xen test guest runs 1..${XEN_MAX_VCPUS} vCPUs, the case asks for ${o.vcpus}`, { code: 'EUNSUPPORTED' });
    }
    const img = loadGuestImage(o.mode);
    if (!img.ok) throw new DriverError(img.reason, { code: 'ENOGUEST' });
    const addon = xenAddon();
    // The name the model's toolstack gives a domain (model/xenstore.ts introduce), which the
    // domain reads back from xenstore; unique as the id is, for as long as the domain lives.
    const name = `domain${o.domid}`;
    const domid = createPaused(name, o);
    let low: XenMapping | undefined;
    try {
      low = new addon.Mapping(domid, 0, LOW_PAGES);
      const g = new XenGuest(domid, name, o.mode, o.vcpus, low, o.timeoutMs ?? 10_000);
      layOutGuest(g.low, img.image, o.mode, o.vcpus);
      addon.pause(domid, false);
      g.waitReady(0);
      for (let i = 1; i < o.vcpus; i++) g.startVcpu(i, o.vendor);
      // The stub and what the domain builder put after it (start_info, its module list)
      // have served: give the case the zeroed RAM a fresh domain has there.
      g.low.write(STUB_BASE, Buffer.alloc(STUB_AREA));
      return g;
    } catch (e) {
      low?.close();
      try {
        xl(['destroy', String(domid)], `destroying ${name}`);
      } catch {
        // the first error is the one to report
      }
      throw e;
    }
  }

  /** The guest runs its empty first batch (generation 0) and publishes it: then it is ready. */
  private waitReady(vcpu: number): void {
    const at = blockAddress(vcpu) + HDR.state;
    if (!this.low.waitU32(at, GUEST_STATE.done, BOOT_TIMEOUT_MS)) {
      const h = this.header(vcpu);
      throw new DriverError(`domain ${this.domid} (${this.name}): vCPU ${vcpu} of the guest did not start within ${BOOT_TIMEOUT_MS / 1000} s ` +
        `(block state ${h.state}${h.state === GUEST_STATE.fatal ? `, fault vector ${h.lastFault.vector}` : ''}; see xl dmesg)`, { code: 'ETIMEDOUT' });
    }
  }

  /**
   * Start vCPU i as a Xen guest does: vCPU 0 calls VCPUOP_initialise with a 32-bit flat
   * vcpu_hvm_context (public/hvm/hvm_vcpu.h) at the stub's AP entry, %edi = vCPU i's
   * block, then VCPUOP_up; the stub enters the guest as it did for vCPU 0.
   */
  private startVcpu(i: number, vendor: 'intel' | 'amd'): void {
    const block = blockAddress(i);
    const c = Buffer.alloc(128); // mode VCPU_HVM_MODE_32B (0), then struct vcpu_hvm_x86_32 at 8
    c.writeUInt32LE(block + GUEST_LAYOUT.kstackTop, 24); // esp
    c.writeUInt32LE(block, 36); // edi
    c.writeUInt32LE(STUB_BASE + AP_ENTRY_OFFSET, 40); // eip
    c.writeUInt32LE(0x2, 44); // eflags
    c.writeUInt32LE(0x11, 48); // cr0: PE | ET
    for (const off of [92, 96, 100, 104]) c.writeUInt32LE(0xffffffff, off); // cs, ds, ss, es limits
    c.writeUInt32LE(block + GUEST_LAYOUT.tss, 88); // tr_base
    c.writeUInt32LE(0x67, 108); // tr_limit
    c.writeUInt16LE(0xc9b, 112); // cs: code, present, 32-bit, 4 KiB granularity
    for (const off of [114, 116, 118]) c.writeUInt16LE(0xc93, off); // ds, ss, es: data, writable
    c.writeUInt16LE(0x8b, 120); // tr: busy 32-bit TSS (check_segment wants it busy)
    const scratch = blockAddress(0) + GUEST_LAYOUT.harnessScratch;
    this.low.write(scratch, c);
    const op = vendor === 'intel' ? 'vmcall' : 'vmmcall';
    const r = this.run(0, [
      { op, rax: BigInt(HYPERVISOR.vcpu_op), args: [BigInt(VCPUOP.initialise), BigInt(i), BigInt(scratch)] },
      { op, rax: BigInt(HYPERVISOR.vcpu_op), args: [BigInt(VCPUOP.up), BigInt(i), 0n] },
    ]);
    const bad = r.results.find((x) => x.status !== 'ok' || x.retSigned !== 0n);
    if (r.status !== 'done' || bad) {
      throw new DriverError(`domain ${this.domid}: starting vCPU ${i} (VCPUOP_initialise, VCPUOP_up) gave ${r.status !== 'done' ? r.status : bad!.status === 'ok' ? bad!.retSigned : `a fault (vector ${bad!.fault?.vector})`}`, { code: 'EIO' });
    }
    this.waitReady(i);
  }

  header(vcpu: number): BlockHeader {
    return readHeader(this.low, vcpu);
  }

  /** Run one batch on one vCPU and decode its results. */
  run(vcpu: number, commands: readonly GuestCommand[], timeoutMs = this.timeoutMs): XenBatch {
    if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= this.vcpus) throw new DriverError(`the guest has no vCPU ${vcpu} (it has ${this.vcpus})`, { code: 'EINVAL' });
    if (this.shutDown) {
      throw new DriverError(`domain ${this.domid} shut down at an earlier step (SCHEDOP_shutdown): Xen paused its vCPUs (xen/common/domain.c domain_shutdown), so no later step runs in it`, { code: 'ESHUTDOWN' });
    }
    const gen = (this.generation[vcpu] = (this.generation[vcpu] + 1) & 0xffffff || 1);
    const r = runBatch(this.batchMemory, this.mode, vcpu, gen, commands, timeoutMs);
    if (r.status !== 'timeout') return r;
    if (this.shutDown) return this.shutDownIn(vcpu, commands, r);
    throw new DriverError(`domain ${this.domid} vCPU ${vcpu} did not finish its command in time (${this.describe(vcpu)})`, { code: 'ETIMEDOUT' });
  }

  /** Where a vCPU's guest is, for an error: its block header and Xen's view of the vCPU. */
  private describe(vcpu: number): string {
    const h = this.header(vcpu);
    let xen = '';
    try {
      const v = xenAddon().vcpuInfo(this.domid, vcpu);
      xen = `; Xen: ${v.blocked ? 'blocked' : v.running ? 'running' : 'runnable'}`;
    } catch {
      // the header says enough
    }
    return `command ${h.cur} of ${h.count}, block state ${h.state}, upcalls taken ${h.upcallCount} (last vector 0x${h.upcallLast.toString(16)}), ` +
      `faults ${h.faults}${h.faults ? ` (last vector ${h.lastFault.vector} at 0x${h.lastFault.rip.toString(16)})` : ''}${xen}`;
  }

  /**
   * The batch's hypercall shut the domain down: Xen completed the call (its return value is
   * in the vCPU's rax) and paused the vCPU before the guest could record it. The result is
   * read from the vCPU's saved registers; commands after it never ran.
   */
  private shutDownIn(vcpu: number, commands: readonly GuestCommand[], r: XenBatch): XenBatch {
    const i = r.results.findIndex((x) => x.status === 'not-run');
    if (i < 0 || !CALL_OPS.has(commands[i].op)) return r;
    const raw = xenAddon().vcpuRax(this.domid, vcpu);
    const width = this.mode === 64 ? 64 : 32;
    const ret = BigInt.asUintN(width, raw);
    const results = r.results.slice();
    results[i] = { ...results[i], status: 'ok', ret, retSigned: BigInt.asIntN(width, ret) };
    return { status: i === commands.length - 1 ? 'done' : 'timeout', results };
  }

  /**
   * Guest memory through a mapping made for this access (a case may have put other
   * frames there since). Frames Xen owns (shared_info, grant frames: Xen heap pages)
   * refuse foreign mappings; those bytes are read by the guest itself, as it sees them.
   */
  read(gpa: number, len: number): Buffer {
    if (len === 0) return Buffer.alloc(0);
    const m = this.mapFor(gpa, len);
    if (!m) return guestRead(this, gpa, len);
    try {
      return m.read(gpa % PAGE, len);
    } finally {
      m.close();
    }
  }

  write(gpa: number, bytes: Buffer): void {
    if (bytes.length === 0) return;
    const m = this.mapFor(gpa, bytes.length);
    if (!m) return guestWrite(this, gpa, bytes);
    try {
      m.write(gpa % PAGE, bytes);
    } finally {
      m.close();
    }
  }

  private mapFor(gpa: number, len: number): XenMapping | undefined {
    const first = Math.floor(gpa / PAGE);
    try {
      return new (xenAddon().Mapping)(this.domid, first, Math.ceil((gpa + len) / PAGE) - first);
    } catch (e) {
      if ((e as { errno?: unknown }).errno === undefined) throw e;
      return undefined;
    }
  }

  setHypercallPage(vcpu: number, gpa: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(gpa), 0);
    this.low.write(blockAddress(vcpu) + HDR.hcallPage, b);
  }

  /** Set the vcpu_info the guest's upcall handler snapshots, and what it then does (UPCALL_FLAG). */
  setUpcallWatch(vcpu: number, watchGpa: number, flags: number): void {
    const b = Buffer.alloc(12);
    b.writeUInt32LE(flags, 0);
    b.writeBigUInt64LE(BigInt(watchGpa), 4);
    this.low.write(blockAddress(vcpu) + HDR.upcallFlags, b);
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.low.close();
    xl(['destroy', String(this.domid)], `destroying domain ${this.domid}`);
  }
}
