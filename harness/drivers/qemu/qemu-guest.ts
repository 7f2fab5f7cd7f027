// One QEMU process running the xconf test guest with QEMU's Xen HVM emulation
// (-accel kvm,xen-version=...). The guest is the image the kvm and xen targets run,
// entered from a -bios ROM (native/guest/rom.S) instead of a VMM's registers or Xen's
// PVH entry. Guest RAM is a file QEMU maps shared (memory-backend-file, share=on):
// the harness lays the guest out in it before QEMU starts, then writes command queues
// and reads results through it, as dom0 does through a foreign mapping on Xen; the
// guest waits in memory for each batch (host flag WAIT_GEN). QEMU's Xen overlay pages
// (shared_info, grant frames, the xenstore page) are not in that file, so memory
// outside the guest's own low pages is read and written by the guest itself.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, fstatSync, ftruncateSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DriverError } from '../../errors.js';
import { packagePath } from '../../paths.js';
import { blockAddress, GUEST_STATE, HDR, loadGuestImage, type BlockHeader, type GuestCommand, type GuestMode } from '../kvm/guest.js';
import { Qmp, QmpClosed } from './qmp.js';
import { guestRead, guestWrite, layOutGuest, readHeader, runBatch, type GuestBatch, type LowMemory, type TestGuest } from '../test-guest.js';

const BOOT_TIMEOUT_MS = 30_000;
/**
 * What the harness reaches through the RAM file: the guest's own pages (IDT, page tables,
 * image, hypercall page, vCPU 0's block). A case may place QEMU's overlay pages anywhere
 * above (shared_info's default is 0x80000), where the file holds the RAM they hide.
 */
const FILE_LIMIT = blockAddress(1);

export interface QemuGuestOptions {
  /** The domain id cases name the guest by (QEMU's Xen emulation has one domain). */
  domid: number;
  mode: GuestMode;
  memoryBytes: number;
  /** The QEMU binary (10.x with Xen emulation for the qemu target). */
  qemu: string;
  /** -L: QEMU's data files (kvmvapic.bin); none when QEMU finds its own. */
  dataDir?: string;
  /** 'xen': KVM with QEMU's Xen emulation (the target); 'tcg': no Xen at all, for testing the guest and its queue on any host. */
  accel: 'xen' | 'tcg';
  /** XENVER_version QEMU reports, (major << 16) | minor. */
  xenVersion?: number;
  /** Grant frames the domain may have (xen-gnttab-max-frames; QEMU's default is 64). */
  gnttabMaxFrames?: number;
  timeoutMs?: number;
}

/** The command line QEMU gets: no firmware but the ROM stub, no devices beyond the machine's own (and its Xen devices). */
/** Guest RAM in MiB: the case's own size, so its end is where the case expects it. */
const ramMiB = (bytes: number) => Math.max(8, Math.ceil(bytes / (1 << 20)));

export function qemuArgs(o: QemuGuestOptions, ramFile: string, dir: string): string[] {
  const mib = ramMiB(o.memoryBytes);
  const accel = o.accel === 'xen'
    ? ['-accel', `kvm,xen-version=0x${(o.xenVersion ?? 0x40011).toString(16)},kernel-irqchip=split${o.gnttabMaxFrames === undefined ? '' : `,xen-gnttab-max-frames=${o.gnttabMaxFrames}`}`,
      // The guest's own domain id (QEMU's default is 1), which it names itself by and xenstore paths carry.
      '-xen-domid', `${o.domid}`]
    : ['-accel', 'tcg'];
  return [
    '-machine', 'pc', '-m', `${mib}`, '-smp', '1', '-nodefaults', '-display', 'none', '-no-reboot',
    ...accel, '-bios', packagePath('native', 'build', 'guest', 'guest.rom'),
    '-object', `memory-backend-file,id=ram,size=${mib}M,mem-path=${ramFile},share=on`, '-machine', 'memory-backend=ram',
    '-debugcon', `file:${join(dir, 'debugcon.log')}`,
    '-chardev', `socket,id=qmp,path=${join(dir, 'qmp.sock')},server=on,wait=off`, '-mon', 'chardev=qmp,mode=control',
    ...(o.accel === 'xen' ? ['-trace', `kvm_xen_hypercall,file=${join(dir, 'trace.log')}`] : []),
    ...(o.dataDir ? ['-L', o.dataDir] : []),
  ];
}

/** Sleep without returning to the event loop: a batch is a synchronous call, as on the other targets. */
const pause = (() => {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  return (ms: number) => Atomics.wait(cell, 0, 0, ms);
})();

/**
 * The RAM file as the guest's low memory. A wait polls it (no event loop: a batch is a
 * synchronous call, as on the other targets), asking `gone` now and then whether to stop.
 */
function fileMemory(fd: number, gone: () => boolean): LowMemory {
  const read = (gpa: number, len: number) => {
    const b = Buffer.alloc(len);
    readSync(fd, b, 0, len, gpa);
    return b;
  };
  return {
    read,
    write: (gpa, bytes) => { writeSync(fd, bytes, 0, bytes.length, gpa); },
    waitU32: (gpa, value, timeoutMs) => {
      const end = performance.now() + timeoutMs;
      for (let i = 0; ; i++) {
        if (read(gpa, 4).readUInt32LE(0) === value) return true;
        if (performance.now() > end || (i % 64 === 63 && gone())) return false;
        pause(i < 100 ? 0 : 1);
      }
    },
  };
}

export class QemuGuest implements TestGuest {
  readonly vcpus = 1;
  private generation = 0;
  private closed = false;
  private traced = 0;
  private monitor: Promise<Qmp> | undefined;
  /** The RAM file; its waits give up when QEMU is gone. */
  private readonly low: LowMemory;

  private constructor(
    readonly domid: number,
    readonly mode: GuestMode,
    private readonly child: ChildProcess,
    private readonly fd: number,
    private readonly dir: string,
    private readonly timeoutMs: number,
  ) {
    this.low = fileMemory(fd, () => {
      const why = this.died();
      if (why) throw new DriverError(why, { code: 'EIO' });
      return false;
    });
  }

  /** Lay the guest out in a fresh RAM file, start QEMU on it, and wait until the guest is ready. */
  static create(o: QemuGuestOptions): QemuGuest {
    const img = loadGuestImage(o.mode);
    if (!img.ok) throw new DriverError(img.reason, { code: 'ENOGUEST' });
    const rom = packagePath('native', 'build', 'guest', 'guest.rom');
    if (!existsSync(rom)) throw new DriverError(`the qemu target's ROM ${rom} is missing: the install step did not build it (see native/build/status.json)`, { code: 'ENOGUEST' });
    const dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'xconf-qemu-'));
    const ramFile = join(dir, 'ram');
    const mib = ramMiB(o.memoryBytes);
    const fd = openSync(ramFile, 'w+');
    let child: ChildProcess | undefined;
    try {
      ftruncateSync(fd, mib << 20);
      layOutGuest(fileMemory(fd, () => false), img.image, o.mode, 1);
      const log = openSync(join(dir, 'qemu.log'), 'w');
      try {
        child = spawn(o.qemu, qemuArgs(o, ramFile, dir), { stdio: ['ignore', log, log], env: { ...process.env, QEMU_MODULE_DIR: dir } });
      } finally {
        closeSync(log);
      }
      child.on('error', () => undefined); // a failed start leaves no pid: reported here
      if (child.pid === undefined) throw new DriverError(`cannot start QEMU: ${o.qemu} is not there or not executable (set XCONF_QEMU)`, { code: 'ENOQEMU' });
      const g = new QemuGuest(o.domid, o.mode, child, fd, dir, o.timeoutMs ?? 10_000);
      g.waitReady();
      return g;
    } catch (e) {
      child?.kill('SIGKILL');
      closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  /** QEMU's own words when it is gone (its log), else undefined. */
  private died(): string | undefined {
    const pid = this.child.pid;
    let gone = pid === undefined || this.child.exitCode !== null || this.child.signalCode !== null;
    if (!gone) {
      try {
        gone = /^\d+ \(.*\) [ZX]/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        gone = true;
      }
    }
    if (!gone) return undefined;
    let log = '';
    try {
      log = readFileSync(join(this.dir, 'qemu.log'), 'utf8').trim().split('\n').slice(-2).join('; ');
    } catch {
      // no log
    }
    const how = this.child.signalCode ? ` on ${this.child.signalCode}` : this.child.exitCode !== null ? ` with status ${this.child.exitCode}` : '';
    return `QEMU exited${how}${log ? `: ${log}` : ''}`;
  }


  /** The guest runs its empty first batch (generation 0) and publishes it: then it is ready. */
  private waitReady(): void {
    if (!this.low.waitU32(blockAddress(0) + HDR.state, GUEST_STATE.done, BOOT_TIMEOUT_MS)) {
      const h = this.header(0);
      throw new DriverError(`QEMU's guest did not start within ${BOOT_TIMEOUT_MS / 1000} s (block state ${h.state}${h.state === GUEST_STATE.fatal ? `, fault vector ${h.lastFault.vector}` : ''})`, { code: 'ETIMEDOUT' });
    }
  }

  header(vcpu: number): BlockHeader {
    return readHeader(this.low, vcpu);
  }

  run(vcpu: number, commands: readonly GuestCommand[], timeoutMs = this.timeoutMs): GuestBatch {
    if (vcpu !== 0) throw new DriverError(`the qemu test guest runs one vCPU, not vCPU ${vcpu}`, { code: 'EINVAL' });
    this.generation = (this.generation + 1) & 0xffffff || 1;
    return runBatch(this.low, this.mode, 0, this.generation, commands, timeoutMs);
  }

  read(gpa: number, len: number): Buffer {
    if (len === 0) return Buffer.alloc(0);
    return gpa + len <= FILE_LIMIT ? this.low.read(gpa, len) : guestRead(this, gpa, len);
  }

  write(gpa: number, bytes: Buffer): void {
    if (bytes.length === 0) return;
    if (gpa + bytes.length <= FILE_LIMIT) this.low.write(gpa, bytes);
    else guestWrite(this, gpa, bytes);
  }

  setHypercallPage(vcpu: number, gpa: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(gpa), 0);
    this.low.write(blockAddress(vcpu) + HDR.hcallPage, b);
  }

  /**
   * The hypercalls QEMU served since the last call: the kvm_xen_hypercall trace lines
   * it appended (QEMU traces each call KVM handed it; a call KVM served leaves none).
   */
  takeServed(): string[] {
    let fd: number;
    try {
      fd = openSync(join(this.dir, 'trace.log'), 'r');
    } catch {
      return [];
    }
    try {
      const added = Buffer.alloc(Math.max(0, fstatSync(fd).size - this.traced));
      this.traced += readSync(fd, added, 0, added.length, this.traced);
      return added.toString('latin1').split('\n').filter((l) => l.includes('kvm_xen_hypercall'));
    } finally {
      closeSync(fd);
    }
  }

  /**
   * One QMP command (the monitor is opened on first use). A QEMU that dies on it, or
   * a monitor that stops answering, is a DriverError carrying QEMU's last words.
   */
  async qmp(command: string, args?: Record<string, unknown>): Promise<{ ok: true; value: unknown } | { ok: false; error: { class: string; desc: string } }> {
    try {
      this.monitor ??= Qmp.open(join(this.dir, 'qmp.sock'));
      return await (await this.monitor).execute(command, args);
    } catch (e) {
      if (!(e instanceof QmpClosed)) throw e;
      // QEMU may still be on its way out: give it a moment to be reaped, so its exit status is known.
      if (this.child.exitCode === null && this.child.signalCode === null) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 1000);
          this.child.once('exit', () => { clearTimeout(t); resolve(); });
        });
      }
      throw new DriverError(`QMP ${command}${args ? ` ${JSON.stringify(args)}` : ''}: ${this.died() ?? e.message}`, { code: 'EIO' });
    }
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    void this.monitor?.then((m) => m.close(), () => undefined);
    this.child.kill('SIGKILL');
    closeSync(this.fd);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
