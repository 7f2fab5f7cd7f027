// The qemu target's guest machinery on any host: QEMU with TCG (no Xen at all) boots
// the ROM stub into the shared test guest, and the harness drives its command queue
// through the shared RAM file. What QEMU's Xen emulation answers is tested in the live
// VM (ci/live-kvm, XCONF_LIVE_QEMU=1).
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { DriverError } from '../../errors.js';
import { GUEST_LAYOUT, blockAddress } from '../kvm/guest.js';
import { QemuGuest, qemuArgs } from './qemu-guest.js';

const qemu = process.env.XCONF_TEST_QEMU || 'qemu-system-x86_64';
const haveQemu = spawnSync(qemu, ['--version'], { encoding: 'utf8' }).status === 0;
const why = haveQemu ? '' : ` (skipped: no ${qemu} on this host)`;

describe('qemu test guest', () => {
  it('runs QEMU with the ROM, the shared RAM file, and for Xen the emulation and its trace', () => {
    const base = { domid: 1, mode: 64 as const, memoryBytes: 16 << 20, qemu };
    const xen = qemuArgs({ ...base, accel: 'xen', xenVersion: 0x40011 }, '/dev/shm/r', '/tmp/d').join(' ');
    expect(xen).toContain('-accel kvm,xen-version=0x40011,kernel-irqchip=split -xen-domid 1 ');
    expect(xen).toMatch(/-bios \S+native\/build\/guest\/guest\.rom/);
    expect(xen).toContain('-m 16 ');
    expect(xen).toContain('memory-backend-file,id=ram,size=16M,mem-path=/dev/shm/r,share=on');
    expect(xen).toContain('-trace kvm_xen_hypercall,file=/tmp/d/trace.log');
    expect(xen).toContain('-chardev socket,id=qmp,path=/tmp/d/qmp.sock,server=on,wait=off -mon chardev=qmp,mode=control');
    expect(qemuArgs({ ...base, accel: 'xen', gnttabMaxFrames: 8 }, '/dev/shm/r', '/tmp/d').join(' ')).toContain('kernel-irqchip=split,xen-gnttab-max-frames=8 ');
    const tcg = qemuArgs({ ...base, accel: 'tcg', memoryBytes: 200 << 20 }, '/dev/shm/r', '/tmp/d').join(' ');
    expect(tcg).toContain('-accel tcg');
    expect(tcg).toContain('size=200M');
    expect(tcg).not.toContain('kvm_xen_hypercall');
  });

  for (const mode of [64, 32] as const) {
    it.skipIf(!haveQemu)(`boots the ${mode}-bit guest from the ROM and runs its queue through the RAM file${why}`, () => {
      const g = QemuGuest.create({ domid: 1, mode, memoryBytes: 16 << 20, qemu, accel: 'tcg' });
      try {
        expect(g.header(0).mode).toBe(mode);
        const r = g.run(0, [{ op: 'write', addr: 0x300000, size: 4, value: 0xdeadbeefn }, { op: 'read', addr: 0x300000, size: 4 }]);
        expect(r.status).toBe('done');
        expect(r.results.map((x) => x.status)).toEqual(['ok', 'ok']);
        expect(r.results[1].ret).toBe(0xdeadbeefn);
        // Above the guest's own pages the harness reads and writes through the guest.
        expect(g.read(0x300000, 4).readUInt32LE(0)).toBe(0xdeadbeef);
        g.write(0x300002, Buffer.from([0x11, 0x22, 0x33]));
        expect(g.run(0, [{ op: 'read', addr: 0x300000, size: 8 }]).results[0].ret).toBe(0x332211beefn);
        // Below them, through the file: what the guest stores there is what the file holds.
        const scratch = blockAddress(0) + GUEST_LAYOUT.harnessScratch;
        g.write(scratch, Buffer.from('xconf'));
        expect(g.run(0, [{ op: 'read', addr: scratch, size: 4 }]).results[0].ret).toBe(0x6e6f6378n);
        // Outside the guest's own pages a QEMU overlay may hide the RAM (shared_info's default
        // place is 0x80000): those bytes come from the guest, one batch per access.
        const gen = g.header(0).doneGen;
        g.read(0x80000, 8);
        expect(g.header(0).doneGen).toBe(gen + 1);
        g.read(blockAddress(0), 8);
        expect(g.header(0).doneGen).toBe(gen + 1);
        expect(g.takeServed()).toEqual([]); // TCG: no Xen emulation, no trace
        // With a trace, each call gives the hypercall lines QEMU appended since the last one.
        const trace = join((g as unknown as { dir: string }).dir, 'trace.log');
        appendFileSync(trace, 'kvm_xen_hypercall xen_hypercall: cpu 0 cpl 0 input 17\nother_event x\n');
        expect(g.takeServed()).toHaveLength(1);
        expect(g.takeServed()).toEqual([]);
        appendFileSync(trace, 'kvm_xen_hypercall a\nkvm_xen_hypercall b\n');
        expect(g.takeServed()).toEqual(['kvm_xen_hypercall a', 'kvm_xen_hypercall b']);
      } finally {
        g.destroy();
      }
    }, 30_000);
  }

  it.skipIf(!haveQemu)(`answers QMP, and says QEMU exited when it dies under QMP${why}`, async () => {
    const g = QemuGuest.create({ domid: 1, mode: 64, memoryBytes: 16 << 20, qemu, accel: 'tcg' });
    try {
      expect(await g.qmp('query-status')).toMatchObject({ ok: true, value: { status: 'running' } });
      // No Xen emulation under TCG: QEMU refuses the inject (as QEMU 10 does a closed port).
      expect(await g.qmp('xen-event-inject', { port: 1 })).toMatchObject({ ok: false });
      (g as unknown as { child: { kill(s: string): void } }).child.kill('SIGKILL');
      await expect(g.qmp('query-status')).rejects.toMatchObject({ code: 'EIO', message: expect.stringMatching(/^QMP query-status: QEMU exited on SIGKILL/) });
    } finally {
      g.destroy();
    }
  }, 30_000);

  it.skipIf(!haveQemu)(`says QEMU exited when it dies under a batch${why}`, () => {
    const g = QemuGuest.create({ domid: 1, mode: 64, memoryBytes: 16 << 20, qemu, accel: 'tcg' });
    try {
      (g as unknown as { child: { kill(s: string): void } }).child.kill('SIGKILL');
      let err: unknown;
      try {
        g.run(0, [{ op: 'read', addr: 0x300000, size: 4 }], 10_000);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DriverError);
      expect(err).toMatchObject({ code: 'EIO', message: expect.stringMatching(/^QEMU exited/) });
    } finally {
      g.destroy();
    }
  }, 30_000);

  it('names a missing QEMU binary', () => {
    expect(() => QemuGuest.create({ domid: 1, mode: 64, memoryBytes: 16 << 20, qemu: '/nonexistent/qemu', accel: 'tcg', timeoutMs: 1000 }))
      .toThrow(/cannot start QEMU: \/nonexistent\/qemu is not there or not executable/);
  }, 60_000);
});
