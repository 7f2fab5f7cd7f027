import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DriverError } from '../../errors.js';
import {
  GuestVm,
  PREPARED_MEMORY_BYTES,
  KVM_CAP,
  KVM_EXIT,
  KVM_HC_ERR,
  KvmVcpu,
  KvmVm,
  XEN_HVM_FLAG,
  XEN_HVM_FLAG_NAMES,
  XEN_HYPERCALL_MSR,
  decodeCpuid,
  decodeRegs,
  decodeSregs,
  decodeXenHvmAttr,
  decodeXenVcpuAttr,
  encodeCpuid,
  encodeGsiRouting,
  encodeRegs,
  encodeSregs,
  encodeXenHvmAttr,
  encodeXenHvmConfig,
  encodeXenVcpuAttr,
  kvmModule,
  loadAddon,
  loadAddonFrom,
  openKvm,
  probeKvm,
  runGuestQueue,
  vcpuCpuid,
  xenCpuidLeaves,
  xenHvmFlagNames,
  type CpuidEntry,
  type NativeVcpu,
  type NativeVm,
  type Regs,
  type XenHvmAttr,
  type XenVcpuAttr,
} from './addon.js';
import { GUEST_LAYOUT, type GuestMode } from './guest.js';

// ----------------------------------------------------- without /dev/kvm --

describe('Xen capability flags', () => {
  it('has the KVM_CAP_XEN_HVM bits', () => {
    expect(KVM_CAP.XEN_HVM).toBe(38);
    expect(XEN_HVM_FLAG).toEqual({
      HYPERCALL_MSR: 1, INTERCEPT_HCALL: 2, SHARED_INFO: 4, RUNSTATE: 8, EVTCHN_2LEVEL: 16,
      EVTCHN_SEND: 32, RUNSTATE_UPDATE_FLAG: 64, PVCLOCK_TSC_UNSTABLE: 128, SHARED_INFO_HVA: 256,
    });
    expect(XEN_HVM_FLAG_NAMES).toHaveLength(9);
    expect(xenHvmFlagNames(0x3f)).toEqual(['HYPERCALL_MSR', 'INTERCEPT_HCALL', 'SHARED_INFO', 'RUNSTATE', 'EVTCHN_2LEVEL', 'EVTCHN_SEND']);
    expect(xenHvmFlagNames(0x1ff)).toHaveLength(9);
    expect(xenHvmFlagNames(1 << 12)).toEqual(['bit12']);
    expect(xenHvmFlagNames(0)).toEqual([]);
  });
});

describe('struct codecs', () => {
  it('round-trips kvm_regs and kvm_sregs', () => {
    const regs = {} as Regs;
    ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags']
      .forEach((n, i) => ((regs as unknown as Record<string, bigint>)[n] = BigInt(i) * 0x1111_1111_1111n + 1n));
    const b = encodeRegs(regs);
    expect(b.length).toBe(144);
    expect(b.readBigUInt64LE(16 * 8)).toBe(regs.rip);
    expect(decodeRegs(b)).toEqual(regs);

    const raw = Buffer.alloc(312);
    for (let i = 0; i < 312; i++) raw[i] = (i * 7) & 0xff;
    raw.fill(0, 202, 208); // gdt padding
    raw.fill(0, 218, 224); // idt padding
    for (let s = 0; s < 8; s++) raw[24 * s + 23] = 0; // segment padding
    const s = decodeSregs(raw);
    expect(encodeSregs(s).equals(raw)).toBe(true);
    expect(() => encodeRegs({ ...regs, rip: -1n })).toThrow(/regs.rip/);
  });

  it('lays out the Xen VM attributes as KVM reads them', () => {
    const attrs: XenHvmAttr[] = [
      { type: 'long_mode', longMode: true },
      { type: 'shared_info', gfn: 0x1234n },
      { type: 'upcall_vector', vector: 0xf3 },
      { type: 'evtchn', sendPort: 3, evtchnType: 5, flags: 0, deliver: { kind: 'port', port: 3, vcpu: 1, priority: 0xffffffff } },
      { type: 'xen_version', version: 0x40011 },
      { type: 'runstate_update_flag', enabled: true },
      { type: 'shared_info_hva', hva: 0x7f0000001000n },
    ];
    for (const a of attrs) {
      const b = encodeXenHvmAttr(a);
      expect(b.length).toBe(72);
      expect(decodeXenHvmAttr(b)).toEqual(a);
    }
    const ev = encodeXenHvmAttr({ type: 'evtchn', sendPort: 7, evtchnType: 2, deliver: { kind: 'eventfd', fd: 42 } });
    expect([ev.readUInt16LE(0), ev.readUInt32LE(8), ev.readUInt32LE(12), ev.readUInt32LE(20), ev.readInt32LE(24)]).toEqual([3, 7, 2, 0, 42]);
    expect(encodeXenHvmAttr({ type: 'shared_info', gfn: 0xabcn }).readBigUInt64LE(8)).toBe(0xabcn);
    expect(() => encodeXenHvmAttr({ type: 'upcall_vector', vector: 256 })).toThrow(RangeError);
    expect(() => encodeXenHvmAttr({ type: 'evtchn', sendPort: 1, evtchnType: 5 })).toThrow(/deliver is required/);
    expect(() => encodeXenHvmAttr({ type: 'bogus' } as unknown as XenHvmAttr)).toThrow(TypeError);
  });

  it('lays out the Xen vCPU attributes as KVM reads them', () => {
    const attrs: XenVcpuAttr[] = [
      { type: 'vcpu_info', gpa: 0x200040n },
      { type: 'vcpu_time_info', gpa: 0x201000n },
      { type: 'runstate_addr', gpa: 0x202ff8n },
      { type: 'runstate_current', state: 2 },
      { type: 'runstate_data', state: 1n, stateEntryTime: 100n, timeRunning: 40n, timeRunnable: 30n, timeBlocked: 20n, timeOffline: 10n },
      { type: 'vcpu_id', vcpuId: 5 },
      { type: 'timer', port: 9, priority: 0xffffffff, expiresNs: 123456789n },
      { type: 'upcall_vector', vector: 0x22 },
      { type: 'vcpu_info_hva', hva: 0x7f00_0000_2040n },
    ];
    for (const a of attrs) expect(decodeXenVcpuAttr(encodeXenVcpuAttr(a))).toEqual(a);
    const adj = encodeXenVcpuAttr({ type: 'runstate_adjust', state: -1, stateEntryTime: 10, timeRunning: -5, timeRunnable: 15, timeBlocked: 0, timeOffline: 0 });
    expect(adj.readUInt16LE(0)).toBe(5);
    expect(adj.readBigUInt64LE(8)).toBe((1n << 64n) - 1n);
    expect(adj.readBigInt64LE(24)).toBe(-5n);
    // Out-of-range states and wrapping times reach KVM, which answers -EINVAL itself.
    const data = encodeXenVcpuAttr({ type: 'runstate_data', state: -1, stateEntryTime: 0, timeRunning: -5, timeRunnable: 5, timeBlocked: 0, timeOffline: 0 });
    expect(data.readBigUInt64LE(8)).toBe((1n << 64n) - 1n);
    expect(data.readBigUInt64LE(24)).toBe((1n << 64n) - 5n);
    expect(encodeXenVcpuAttr({ type: 'runstate_current', state: 4 }).readBigUInt64LE(8)).toBe(4n);
    expect(encodeXenVcpuAttr({ type: 'runstate_current', state: 0xffffffffn }).readBigUInt64LE(8)).toBe(0xffffffffn);
    expect(encodeXenVcpuAttr({ type: 'runstate_current', state: -1 }).readBigUInt64LE(8)).toBe((1n << 64n) - 1n);
    expect(() => encodeXenVcpuAttr({ type: 'runstate_current', state: 1n << 64n })).toThrow(RangeError);
    expect(() => encodeXenVcpuAttr({ type: 'runstate_data', state: 0, stateEntryTime: -(1n << 64n), timeRunning: 0, timeRunnable: 0, timeBlocked: 0, timeOffline: 0 })).toThrow(RangeError);
  });

  it('encodes kvm_xen_hvm_config and GSI routes', () => {
    const c = encodeXenHvmConfig({ flags: XEN_HVM_FLAG.INTERCEPT_HCALL | XEN_HVM_FLAG.EVTCHN_SEND, msr: XEN_HYPERCALL_MSR });
    expect(c.length).toBe(56);
    expect([c.readUInt32LE(0), c.readUInt32LE(4)]).toEqual([0x22, 0x40000000]);
    expect(encodeXenHvmConfig({ flags: 1 << 20, msr: 0 }).readUInt32LE(0)).toBe(1 << 20); // the kernel judges unknown bits
    expect(() => encodeXenHvmConfig({ flags: 2 ** 32, msr: 0 })).toThrow(/xen config flags/);
    const r = encodeGsiRouting([
      { gsi: 1, type: 'xen_evtchn', port: 5, vcpu: 2 },
      { gsi: 2, type: 'msi', addressLo: 0xfee00000, addressHi: 0, data: 0x31 },
    ]);
    expect(r.length).toBe(96);
    expect([r.readUInt32LE(0), r.readUInt32LE(4), r.readUInt32LE(16), r.readUInt32LE(20), r.readUInt32LE(24)]).toEqual([1, 5, 5, 2, 0xffffffff]);
    expect([r.readUInt32LE(48), r.readUInt32LE(52), r.readUInt32LE(64), r.readUInt32LE(72)]).toEqual([2, 2, 0xfee00000, 0x31]);
    expect(() => encodeGsiRouting([{ gsi: 5000, type: 'irqchip', irqchip: 0, pin: 1 }])).toThrow(RangeError);
  });

  it('builds per-vCPU CPUID with the Xen leaves first and KVM moved up', () => {
    const supported: CpuidEntry[] = [
      { function: 1, index: 0, flags: 0, eax: 0x800f12, ebx: 0xff000800, ecx: 0, edx: 0 },
      { function: 0x40000000, index: 0, flags: 0, eax: 0x40000001, ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x4d },
      { function: 0x40000001, index: 0, flags: 0, eax: 0x1234, ebx: 0, ecx: 0, edx: 0 },
    ];
    expect(decodeCpuid(encodeCpuid(supported))).toEqual(supported);
    const plain = vcpuCpuid(supported, 3);
    expect(plain[0].ebx >>> 24).toBe(3);
    expect(plain.map((e) => e.function)).toEqual([1, 0x40000000, 0x40000001]);
    const xen = vcpuCpuid(supported, 2, { msr: XEN_HYPERCALL_MSR, vcpuId: 2 });
    const leaf = (fn: number, index = 0) => xen.find((e) => e.function === fn && e.index === index)!;
    expect(leaf(0x40000100).eax).toBe(0x40000101);
    expect(leaf(0x40000101).eax).toBe(0x1234);
    const sig = Buffer.alloc(12);
    sig.writeUInt32LE(leaf(0x40000000).ebx, 0);
    sig.writeUInt32LE(leaf(0x40000000).ecx, 4);
    sig.writeUInt32LE(leaf(0x40000000).edx, 8);
    expect(sig.toString('latin1')).toBe('XenVMMXenVMM');
    expect(leaf(0x40000002)).toMatchObject({ eax: 1, ebx: 0x40000000 });
    expect(leaf(0x40000004).ebx).toBe(2);
    expect(xenCpuidLeaves().filter((e) => e.function === 0x40000003)).toHaveLength(3);
  });
});

describe('arguments are checked before the native call', () => {
  // A recording stand-in for the native objects: a rejected call must not reach it.
  function recorder<T extends object>(): { obj: T; calls: string[] } {
    const calls: string[] = [];
    const obj = new Proxy({} as T, {
      get: (_t, prop) => {
        if (prop === 'closed') return false;
        if (prop === 'then') return undefined;
        return (...args: unknown[]) => {
          calls.push(String(prop));
          if (prop === 'setMemory') return 0x7f0000000000n;
          if (prop === 'read') return Buffer.alloc(args[1] as number);
          return undefined;
        };
      },
    });
    return { obj, calls };
  }

  it('KvmVm checks memory ranges, alignment and attribute values', () => {
    const { obj, calls } = recorder<NativeVm>();
    const vm = new KvmVm(obj);
    expect(() => vm.addMemory(0, 0x1001, 0x1000)).toThrow(/multiples of 4096/);
    expect(() => vm.addMemory(0, 0, 0)).toThrow(/size/);
    expect(() => vm.addMemory(70000, 0, 0x1000)).toThrow(/slot/);
    expect(calls).toEqual([]);
    vm.addMemory(0, 0, 0x10000);
    expect(() => vm.addMemory(1, 0x8000, 0x10000)).toThrow(/overlaps slot 0/);
    expect(() => vm.addMemory(0, 0x100000, 0x1000)).toThrow(/in use/);
    expect(() => vm.read(0xf000, 0x2000)).toThrow(/not inside one memory slot/);
    expect(() => vm.read(-1, 1)).toThrow(/gpa/);
    expect(() => vm.read(0, 2 ** 31)).toThrow(/length/);
    expect(() => vm.write(0xfffc, Buffer.alloc(8))).toThrow(/not inside/);
    expect(() => vm.write(0, 'abc' as unknown as Buffer)).toThrow(TypeError);
    expect(() => vm.xenSetAttr({ type: 'upcall_vector', vector: -1 })).toThrow(RangeError);
    expect(() => vm.xenGetAttr('nope' as 'long_mode')).toThrow(TypeError);
    expect(() => vm.xenEvtchnSend(1.5, 0)).toThrow(RangeError);
    expect(() => vm.createVcpu(5000)).toThrow(RangeError);
    expect(() => vm.enableCap(1, [1, 2, 3, 4, 5])).toThrow(/four args/);
    expect(() => vm.removeMemory(3)).toThrow(/no slot 3/);
    expect(calls).toEqual(['setMemory']);
    vm.read(0xff00, 0x100);
    vm.bytes(0xff00, 0x100);
    expect(calls).toEqual(['setMemory', 'readInto', 'readInto']);
  });

  it('KvmVcpu checks run options, results and attributes', () => {
    const { obj, calls } = recorder<NativeVcpu>();
    const v = new KvmVcpu(obj);
    expect(() => v.run({ timeoutMs: -1 })).toThrow(/timeoutMs/);
    expect(() => v.run({ portBase: 0x10000 })).toThrow(/portBase/);
    expect(() => v.setXenResult(1n << 64n)).toThrow(RangeError);
    expect(() => v.setXenResult(-(1n << 64n))).toThrow(RangeError);
    expect(() => v.setMpState(99)).toThrow(RangeError);
    expect(() => v.xenSetAttr({ type: 'timer', port: -1, expiresNs: 0 })).toThrow(RangeError);
    expect(() => v.setCpuid([{ function: -1, index: 0, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0 }])).toThrow(RangeError);
    expect(calls).toEqual([]);
    v.setXenResult(-38);
    expect(calls).toEqual(['setXenResult']);
  });
});

describe('loading the addon', () => {
  it('says why when the build is missing or failed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-native-'));
    const missing = loadAddonFrom(dir);
    expect(missing).toMatchObject({ ok: false, code: 'ENOADDON' });
    if (!missing.ok) expect(missing.reason).toMatch(/never built/);
    writeFileSync(join(dir, 'status.json'), JSON.stringify({ ok: false, reason: 'node-gyp rebuild failed (exit 1): no g++' }));
    const failed = loadAddonFrom(dir);
    if (failed.ok) throw new Error('expected failure');
    expect(failed.reason).toContain('no g++');
    writeFileSync(join(dir, 'status.json'), JSON.stringify({ ok: true }));
    const noFile = loadAddonFrom(dir);
    if (noFile.ok) throw new Error('expected failure');
    expect(noFile.reason).toMatch(/xconf_kvm.node is missing/);
  });
});

// ------------------------------------------------------------- live KVM --

const addon = loadAddon();
const probe = probeKvm();
const live = probe.ok;
const why = probe.ok ? '' : ` (skipped: ${probe.reason})`;
const xenCaps = probe.ok ? probe.xenHvm : 0;
const isPvm = kvmModule() === 'kvm_pvm';
const pvmWhy = isPvm ? ' (skipped: /dev/kvm is PVM, see the PVM tests)' : '';
const noXenWhy = xenCaps === 0 ? ' (skipped: KVM_CAP_XEN_HVM is 0 on this host)' : '';
if (!live) console.warn(`KVM live tests skipped: ${probe.ok ? '' : probe.reason}`);

describe('opening /dev/kvm', () => {
  it.skipIf(!addon.ok)('reports ENOENT for a missing device', () => {
    const r = openKvm('/nonexistent/kvm');
    expect(r).toMatchObject({ ok: false, code: 'ENOENT' });
    if (!r.ok) expect(r.reason).toMatch(/does not exist/);
  });

  it.skipIf(!addon.ok)('reports a file that is not KVM', () => {
    const r = openKvm('/dev/null');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.code).toBe('ENOTTY');
  });
});

function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

describe('live KVM', () => {
  it.skipIf(!live)(`creates a VM and vCPU with memory, registers and errors${why}`, () => {
    const o = openKvm();
    if (!o.ok) throw new Error(o.reason);
    using kvm = o.kvm;
    expect(kvm.apiVersion()).toBe(12);
    expect(kvm.xenHvmCaps()).toBe(xenCaps);
    expect(kvm.supportedCpuid().some((e) => e.function === 0)).toBe(true);
    using vm = kvm.createVm();
    vm.addMemory(0, 0, 0x100000);
    vm.write(0x1000, Buffer.from('hello'));
    expect(vm.read(0x1000, 5).toString()).toBe('hello');
    vm.writeU64(0x2000, 0x1122334455667788n);
    expect(vm.readU64(0x2000)).toBe(0x1122334455667788n);
    // readInto and the addon's allocating read see the same bytes
    expect((vm as unknown as { native: NativeVm }).native.read(0x2000, 8).readBigUInt64LE(0)).toBe(0x1122334455667788n);
    const copy = vm.bytes(0x1000, 5);
    copy[0] = 0;
    expect(vm.read(0x1000, 5).toString()).toBe('hello');
    vm.addMemory(1, 0x200000, 0x1000);
    vm.writeU32(0x200000, 7);
    vm.removeMemory(1);
    expect(() => vm.read(0x200000, 4)).toThrow(/not inside one memory slot/);
    expect(typeof vm.hva(0x1000)).toBe('bigint');
    const v = vm.createVcpu(0);
    const regs = v.getRegs();
    v.setRegs({ ...regs, rip: 0x1234n, rax: 42n });
    expect(v.getRegs()).toMatchObject({ rip: 0x1234n, rax: 42n });
    const sregs = v.getSregs();
    v.setSregs(sregs);
    // errors carry code, errno and syscall
    const dup = (() => {
      try {
        vm.createVcpu(0);
      } catch (e) {
        return e;
      }
    })();
    expect(dup).toBeInstanceOf(DriverError);
    expect(dup).toMatchObject({ code: 'EEXIST', errno: 17, syscall: 'ioctl(KVM_CREATE_VCPU)' });
    expect(() => v.setXenResult(0)).toThrow(/not KVM_EXIT_XEN/);
    vm.close();
    expect(v.closed).toBe(true);
    expect(() => vm.read(0x1000, 1)).toThrow();
  });

  it.skipIf(!live || !addon.ok)(`checks arguments again in C++${why}`, () => {
    if (!addon.ok) return;
    const sys = new addon.addon.System('/dev/kvm');
    try {
      const vm = sys.createVm(0);
      vm.setMemory(0, 0, 0x10000, 0);
      expect(() => vm.read(0xff00, 0x200)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(() => vm.write(0x10000, Buffer.alloc(1))).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(() => vm.read(-1 as number, 1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(() => vm.xenSetAttr(Buffer.alloc(10))).toThrow(/exactly 72 bytes/);
      expect(() => vm.setMemory(1, 0x10001, 0x1000, 0)).toThrow(/page aligned/);
      const v = vm.createVcpu(0);
      expect(() => v.setRegs(Buffer.alloc(143))).toThrow(/exactly 144 bytes/);
      expect(() => v.run(1.5, 0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(() => v.setXenResult('x' as unknown as bigint)).toThrow(TypeError);
      vm.close();
      expect(() => v.getRegs()).toThrow(expect.objectContaining({ code: 'EBADF' }));
    } finally {
      sys.close();
    }
  });

  it.skipIf(!live)(`rejects KVM_XEN_HVM_CONFIG when the kernel has no Xen support${why}`, () => {
    if (xenCaps !== 0) return;
    let err: unknown;
    try {
      GuestVm.create({ xen: {} });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DriverError);
    expect(err).toMatchObject({ code: 'ENOTSUP', syscall: 'ioctl(KVM_CHECK_EXTENSION)' });
    expect((err as Error).message).toMatch(/KVM_CAP_XEN_HVM is 0/);
    // and the ioctl itself fails with an errno
    const o = openKvm();
    if (!o.ok) throw new Error(o.reason);
    using kvm = o.kvm;
    using vm = kvm.createVm();
    expect(() => vm.xenHvmConfig({ flags: XEN_HVM_FLAG.INTERCEPT_HCALL, msr: XEN_HYPERCALL_MSR })).toThrow(
      expect.objectContaining({ syscall: 'ioctl(KVM_XEN_HVM_CONFIG)' }),
    );
  });

  for (const mode of [64, 32] as GuestMode[]) {
    it.skipIf(!live)(`runs the guest's command queue to completion in ${mode}-bit mode${why}`, async () => {
      using g = GuestVm.create({ mode, timeoutMs: 5000 });
      // A hypercall page the harness writes itself: stub n = mov $n,%eax; ret
      // (stub 1 = mov %cs,%eax; ret, to see the privilege level).
      const page = Buffer.alloc(4096, 0xcc);
      for (let n = 0; n < 128; n++) {
        page[n * 32] = 0xb8;
        page.writeUInt32LE(n + 0x100, n * 32 + 1);
        page[n * 32 + 5] = 0xc3;
      }
      page.set([0x8c, 0xc8, 0xc3], 32);
      g.vm.write(GUEST_LAYOUT.hypercallPage, page);
      const data = GUEST_LAYOUT.freeBase;
      const yields: number[] = [];
      const r = await g.run(
        0,
        [
          { op: 'log', value: 0xabc },
          { op: 'hypercall', nr: 7, args: [1, 2, 3, 4, 5, 6] },
          { op: 'hypercall', nr: 1 },
          { op: 'cpuid', leaf: 0 },
          { op: 'wrmsr', msr: 0x7fff_ffff, value: 1 },
          { op: 'write', addr: data, size: 8, value: 0x1122334455667788n },
          { op: 'read', addr: data, size: 4 },
          { op: 'read-loop', src: data, len: 16, iterations: 4, dst: data + 0x100 },
          { op: 'runstate-check', src: data + 0x1000, layout: mode === 64 ? 'native' : 'compat', iterations: 50 },
          { op: 'yield', tag: 77 },
          { op: 'wait-upcall', count: 1, spins: 10 },
          { op: 'log', value: 0xdef },
        ],
        { onYield: (tag) => void yields.push(tag) },
      );
      expect(r.status).toBe('done');
      expect(r.logs).toEqual([0xabc, 0xdef]);
      expect(yields).toEqual([77]);
      expect(r.crossings).toBe(2); // one for the batch, one back from the yield
      const s = r.results;
      expect(s.map((x) => x.status)).toEqual(['ok', 'ok', 'ok', 'ok', 'fault', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok']);
      expect(s[1].ret).toBe(0x107n);
      expect(s[1].argsAfter).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
      expect(s[1].servedBy).toBe('kernel');
      expect(s[2].ret).toBe(BigInt(mode === 64 ? 0x08 : 0x18)); // CPL 0 code selector
      expect(s[3].cpuid!.eax).toBeGreaterThan(0);
      expect(s[4].fault?.vector).toBe(13); // #GP from an unknown MSR, recovered
      expect(s[6].ret).toBe(0x55667788n);
      expect(s[7].readLoop).toEqual({ changes: 0n, iterations: 4n });
      expect(g.vm.read(data + 0x100 + 48, 8).readBigUInt64LE(0)).toBe(0x1122334455667788n);
      expect(s[8].runstate).toEqual({ ok: 50n, busy: 0n, raced: 0n, torn: 0n, changes: 0n, iterations: 50n });
      expect(s[10].waitUpcall).toEqual({ count: 0, reached: false });
      // the vCPU takes the next batch
      const again = await g.run(0, [{ op: 'hypercall', nr: 9 }, { op: 'end' }, { op: 'log', value: 1 }]);
      expect(again.status).toBe('done');
      expect(again.results.map((x) => x.status)).toEqual(['ok', 'ok', 'not-run']);
      // an unwritten hypercall page is int3: #BP, recovered (PVM cannot
      // emulate int3 at CPL 0 and stops with an emulation failure)
      g.vm.write(GUEST_LAYOUT.hypercallPage, Buffer.alloc(4096, 0xcc));
      const bp = await g.run(0, [{ op: 'hypercall', nr: 3 }]);
      if (isPvm && bp.status === 'exit') expect(bp.exit?.reason).toBe(KVM_EXIT.INTERNAL_ERROR);
      else expect(bp.results[0].fault?.vector).toBe(3);
    });

    const cpl3Skip = mode === 32 && isPvm;
    it.skipIf(!live || cpl3Skip)(
      `makes a call from CPL 3 in ${mode}-bit mode${why}${cpl3Skip ? ' (skipped: PVM cannot emulate a 32-bit iret to ring 3)' : ''}`,
      async () => {
        using g = GuestVm.create({ mode, timeoutMs: 5000 });
        const page = Buffer.alloc(4096, 0xcc);
        page.set([0x8c, 0xc8, 0xc3], 32); // stub 1: mov %cs,%eax; ret
        page.set([0x89, 0xf8, 0xc3], 64); // stub 2: mov %edi,%eax; ret
        g.vm.write(GUEST_LAYOUT.hypercallPage, page);
        const r = await g.run(0, [
          { op: 'hypercall', nr: 1, cpl3: true },
          { op: 'hypercall', nr: 2, cpl3: true, args: [0x55] },
          { op: 'hypercall', nr: 1 },
        ]);
        expect(r.status).toBe('done');
        expect(r.results[0].ret & 3n).toBe(3n);
        expect(r.results[0].ret).toBe(BigInt(mode === 64 ? 0x33 : 0x23));
        expect(r.results[2].ret & 3n).toBe(0n);
        if (mode === 64) expect(r.results[1].ret).toBe(0x55n);
      },
    );

    it.skipIf(!live)(`delivers an upcall vector through irqfd + MSI routing in ${mode}-bit mode${why}`, async () => {
      using g = GuestVm.create({ mode, timeoutMs: 5000 });
      using efd = g.system.createEventfd();
      g.vm.setGsiRouting([{ gsi: 10, type: 'msi', addressLo: 0xfee00000, addressHi: 0, data: 0xf3 }]);
      g.vm.irqfd(efd, 10);
      const vcpuInfo = GUEST_LAYOUT.freeBase + 0x40;
      g.vm.write(vcpuInfo, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0]));
      const r = await g.run(
        0,
        [
          { op: 'set-upcall', watch: vcpuInfo, flags: 5 },
          { op: 'yield', tag: 1 },
          { op: 'wait-upcall', count: 1 },
        ],
        { onYield: () => efd.signal() },
      );
      expect(r.status).toBe('done');
      expect(r.results[2].waitUpcall).toEqual({ count: 1, reached: true });
      const ups = g.upcalls(0);
      expect(ups).toHaveLength(1);
      expect(ups[0]).toMatchObject({ vector: 0xf3, seq: 1 });
      expect(ups[0].vcpuInfo[0]).toBe(1); // snapshot taken before clearing
      expect(g.vm.read(vcpuInfo, 1)[0]).toBe(0); // evtchn_upcall_pending cleared
      g.vm.irqfd(efd, 10, { deassign: true });
    });
  }

  it.skipIf(!live || isPvm)(`returns -KVM_ENOSYS for a raw vmcall/vmmcall without Xen${why}${pvmWhy}`, async () => {
    for (const mode of [64, 32] as GuestMode[]) {
      using g = GuestVm.create({ mode, timeoutMs: 5000 });
      const r = await g.run(0, [
        { op: 'vmmcall', rax: 0x12345 },
        { op: 'vmcall', rax: 0x12345 },
      ]);
      expect(r.status).toBe('done');
      // AMD executes vmmcall natively and emulates vmcall (or the reverse on Intel)
      for (const x of r.results) expect(x.retSigned).toBe(KVM_HC_ERR.ENOSYS);
    }
  });

  it.skipIf(!live || !isPvm)(`PVM: a raw vmmcall never completes, and the timeout stops it${why}`, async () => {
    using g = GuestVm.create({ mode: 64, timeoutMs: 200 });
    const t0 = performance.now();
    const r = await g.run(0, [{ op: 'vmmcall', rax: 0x12345 }]);
    const ms = performance.now() - t0;
    expect(r.status).toBe('timeout');
    expect(r.results[0].status).toBe('not-run');
    expect(ms).toBeGreaterThanOrEqual(190);
    expect(ms).toBeLessThan(2000);
    // Still at the call; KVM's "fix hypercall" quirk may have rewritten the
    // vmmcall into the instruction it prefers (vmcall, 0f 01 c1).
    const rip = g.vcpus[0].getRegs().rip;
    const insn = [...g.vm.read(Number(rip), 3)];
    expect(insn.slice(0, 2)).toEqual([0x0f, 0x01]);
    expect([0xc1, 0xd9]).toContain(insn[2]);
  });

  it.skipIf(!live)(`stops a spinning or halted guest with the timeout and can go on${why}`, async () => {
    using g = GuestVm.create({ mode: 64, timeoutMs: 150 });
    const spin = performance.now();
    const r1 = await g.run(0, [{ op: 'read-loop', src: GUEST_LAYOUT.freeBase, len: 256, iterations: 0xffffffff }]);
    const spinMs = performance.now() - spin;
    expect(r1.status).toBe('timeout');
    expect(spinMs).toBeLessThan(2000);
    await expect(g.run(0, [{ op: 'log', value: 1 }])).rejects.toMatchObject({ code: 'ESTALE' });
    g.resetVcpu(0);
    const halt = performance.now();
    const r2 = await g.run(0, [{ op: 'wait-upcall', count: 1 }]); // HLT with no interrupt coming
    expect(r2.status).toBe('timeout');
    expect(performance.now() - halt).toBeLessThan(2000);
    g.resetVcpu(0);
    const r3 = await g.run(0, [{ op: 'log', value: 5 }]);
    expect(r3).toMatchObject({ status: 'done', logs: [5] });
    // the raw run loop reports the timeout too
    g.resetVcpu(0);
    const async = await g.run(0, [{ op: 'read-loop', src: GUEST_LAYOUT.freeBase, len: 256, iterations: 0xffffffff }], { concurrent: true });
    expect(async.status).toBe('timeout');
  });

  it.skipIf(!live)(`reports unexpected exits with their data${why}`, async () => {
    using g = GuestVm.create({ mode: 64, timeoutMs: 2000, memoryBytes: 4 << 20 });
    const r = await g.run(0, [{ op: 'read', addr: 0x1000_0000, size: 4 }]); // no RAM there: MMIO
    expect(r.status).toBe('exit');
    expect(r.exit).toMatchObject({ reason: KVM_EXIT.MMIO, reasonName: 'KVM_EXIT_MMIO' });
    expect(r.exit!.detail.mmio).toMatchObject({ physAddr: 0x1000_0000n, len: 4, isWrite: false });
  });

  it.skipIf(!live)(`runs two vCPUs at once: one halts until the other's IPI wakes it${why}`, async () => {
    using g = GuestVm.create({ mode: 64, vcpus: 2, timeoutMs: 5000 });
    const ICR_HIGH = 0xfee00310;
    const ICR_LOW = 0xfee00300;
    // vCPU 0 runs once first so its guest code has enabled its local APIC: an IPI
    // sent to a software-disabled APIC is dropped, and the wait below would never end.
    expect((await g.run(0, [{ op: 'cpuid', leaf: 1 }])).status).toBe('done');
    const [a, b] = await g.runAll([
      [{ op: 'wait-upcall', count: 1 }, { op: 'cpuid', leaf: 1 }],
      [
        { op: 'write', addr: ICR_HIGH, size: 4, value: 0 << 24 }, // to APIC id 0
        { op: 'write', addr: ICR_LOW, size: 4, value: 0xe5 }, // fixed, vector 0xe5
        { op: 'cpuid', leaf: 1 },
      ],
    ]);
    expect(a.status).toBe('done');
    expect(b.status).toBe('done');
    expect(a.results[0].waitUpcall).toEqual({ count: 1, reached: true });
    expect(g.upcalls(0).map((u) => u.vector)).toEqual([0xe5]);
    expect(a.results[1].cpuid!.ebx >>> 24).toBe(0); // APIC ids from the per-vCPU CPUID
    expect(b.results[2].cpuid!.ebx >>> 24).toBe(1);
    expect(g.header(1).vcpu).toBe(1);
  });

  it.skipIf(!live)(`refuses to close a running vCPU${why}`, async () => {
    using g = GuestVm.create({ mode: 64, timeoutMs: 300 });
    const p = g.run(0, [{ op: 'read-loop', src: GUEST_LAYOUT.freeBase, len: 256, iterations: 0xffffffff }], { concurrent: true });
    await new Promise((r) => setTimeout(r, 20));
    expect(g.vcpus[0].busy).toBe(true);
    expect(() => g.vcpus[0].close()).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    expect(() => g.vm.close()).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    expect((await p).status).toBe('timeout');
  });

  it.skipIf(!live)(`runs a one-off queue with runGuestQueue and closes the VM${why}`, async () => {
    const before = fdCount();
    const r = await runGuestQueue([{ op: 'cpuid', leaf: 0x40000000 }, { op: 'log', value: 9 }], { mode: 32 });
    expect(r).toMatchObject({ status: 'done', logs: [9], crossings: 1 });
    expect(r.results[0].status).toBe('ok');
    expect(fdCount()).toBe(before);
  });

  it.skipIf(!live)(`signals and reads eventfds${why}`, () => {
    const o = openKvm();
    if (!o.ok) throw new Error(o.reason);
    using kvm = o.kvm;
    using e = kvm.createEventfd();
    expect(e.read()).toBe(null);
    e.signal(3);
    e.signal();
    expect(e.read()).toBe(4n);
    e.close();
    expect(e.closed).toBe(true);
  });

  it.skipIf(!live)(`releases every descriptor over 200 VM create/close cycles${why}`, () => {
    const o = openKvm();
    if (!o.ok) throw new Error(o.reason);
    using kvm = o.kvm;
    const before = fdCount();
    for (let i = 0; i < 200; i++) {
      const vm = kvm.createVm();
      vm.addMemory(0, 0, 0x200000);
      vm.createIrqchip();
      vm.createVcpu(0);
      vm.createVcpu(1);
      kvm.createEventfd().close();
      vm.close();
    }
    expect(fdCount()).toBe(before);
    for (let i = 0; i < 5; i++) GuestVm.create({ vcpus: 2 }).close();
    expect(fdCount()).toBe(before + 0);
  });

  it.skipIf(!live)(`closeInBackground reads as closed at once and releases every descriptor soon after${why}`, async () => {
    const before = fdCount();
    for (let i = 0; i < 20; i++) {
      const g = GuestVm.create({ vcpus: 2 });
      const vm = g.vm;
      g.close({ background: true });
      expect(vm.closed).toBe(true);
      expect(() => vm.read(0, 1)).toThrow(/not inside one memory slot/);
    }
    // The thread unmaps before it closes, so the descriptors coming back means both happened.
    for (let i = 0; i < 200 && fdCount() > before; i++) await new Promise((r) => setTimeout(r, 10));
    expect(fdCount()).toBe(before);
  });

  it.skipIf(!live)(`a VM made off the JavaScript thread (prepare) runs the guest as one made in place, and gives its descriptors back${why}`, async () => {
    const before = fdCount();
    for (let i = 0; i < 3; i++) {
      const prepared = await GuestVm.prepare();
      expect(prepared.vm.closed).toBe(false);
      const g = GuestVm.create({ vcpus: 2, prepared });
      expect(g.vm).toBe(prepared.vm);
      const r = await g.run(1, [{ op: 'write', addr: 0x300000, size: 8, value: 0x1122334455667788n }, { op: 'read', addr: 0x300000, size: 8 }]);
      expect(r.status).toBe('done');
      expect(r.results[1].ret).toBe(0x1122334455667788n);
      g.close();
    }
    expect(fdCount()).toBe(before);
    // Prepared with its RAM: a guest of that size keeps the slot; another size gets its own.
    for (const memoryBytes of [PREPARED_MEMORY_BYTES, 8 << 20]) {
      const prepared = await GuestVm.prepare();
      const g = GuestVm.create({ prepared, memoryBytes });
      expect(g.vm).toBe(prepared.vm);
      const r = await g.run(0, [{ op: 'write', addr: memoryBytes - 8, size: 8, value: 42n }, { op: 'read', addr: memoryBytes - 8, size: 8 }]);
      expect(r.results[1].ret).toBe(42n);
      expect(g.vm.readU64(memoryBytes - 8)).toBe(42n);
      if (memoryBytes < PREPARED_MEMORY_BYTES) expect(() => g.vm.read(memoryBytes, 8)).toThrow(/not inside one memory slot/);
      g.close();
    }
    // The in-kernel irqchip cannot be taken back: a guest without one gets a fresh VM and the prepared one is closed.
    {
      const prepared = await GuestVm.prepare();
      const g = GuestVm.create({ prepared, irqchip: false });
      expect(g.vm).not.toBe(prepared.vm);
      expect(prepared.vm.closed).toBe(true);
      expect((await g.run(0, [{ op: 'read', addr: 0x300000, size: 8 }])).status).toBe('done');
      g.close();
    }
    expect(fdCount()).toBe(before);
    // create() refuses bad options before it takes the VM: it stays the caller's to close.
    const p = await GuestVm.prepare();
    expect(() => GuestVm.create({ vcpus: 0, prepared: p })).toThrow(/vcpus must be at least 1/);
    p.vm.close();
    p.system.close();
    expect(fdCount()).toBe(before);
    // A failed KVM_CREATE_VM (an unknown machine type) rejects with the syscall named.
    const o = openKvm();
    if (!o.ok) throw new Error(o.reason);
    await expect(o.kvm.createVmAsync(0xfe)).rejects.toMatchObject({ syscall: 'ioctl(KVM_CREATE_VM)' });
    await expect(o.kvm.createVmAsync(0, { memoryBytes: 4097 })).rejects.toThrow(/multiple of 4096/);
    o.kvm.close();
    expect(fdCount()).toBe(before);
  });

  it.skipIf(!live)(`releases descriptors of VMs that are only garbage-collected${why}`, async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const o = openKvm();
    if (!o.ok) throw new Error(o.reason);
    using kvm = o.kvm;
    const before = fdCount();
    (() => {
      for (let i = 0; i < 20; i++) {
        const vm = kvm.createVm();
        vm.addMemory(0, 0, 0x10000);
        vm.createVcpu(0);
      }
    })();
    expect(fdCount()).toBeGreaterThanOrEqual(before + 40);
    for (let i = 0; i < 10 && fdCount() > before; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(fdCount()).toBe(before);
  });

  it.skipIf(!live || xenCaps === 0)(`serves KVM_EXIT_XEN hypercalls in the VMM layer${why}${noXenWhy}`, async () => {
    for (const mode of [64, 32] as GuestMode[]) {
      using g = GuestVm.create({ mode, xen: { flags: XEN_HVM_FLAG.INTERCEPT_HCALL } });
      const seen: Array<{ input: bigint; cpl: number; longmode: number; params: bigint[] }> = [];
      const r = await g.run(
        0,
        [
          { op: 'wrmsr', msr: XEN_HYPERCALL_MSR, value: GUEST_LAYOUT.hypercallPage },
          { op: 'hypercall', nr: 17, args: [0, 0] },
          { op: 'vmcall', rax: 40, args: [1, 2, 3, 4, 5, 6] },
          { op: 'hypercall', nr: 17, cpl3: !(mode === 32 && isPvm) },
        ],
        {
          onXen: (x) => {
            seen.push(x);
            return x.input === 17n ? 0x40011 : -38;
          },
        },
      );
      expect(r.status).toBe('done');
      const page = g.vm.read(GUEST_LAYOUT.hypercallPage + 17 * 32, 5);
      expect(page[0]).toBe(0xb8);
      expect(page.readUInt32LE(1)).toBe(17);
      expect(r.results[1]).toMatchObject({ retSigned: 0x40011n, servedBy: 'vmm' });
      expect(r.results[2].retSigned).toBe(-38n);
      expect(seen[1]).toMatchObject({ input: 40n, longmode: mode === 64 ? 1 : 0, cpl: 0, params: [1n, 2n, 3n, 4n, 5n, 6n] });
      if (!(mode === 32 && isPvm)) expect(seen[2].cpl).toBe(3);
    }
  });
});
