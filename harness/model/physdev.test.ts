import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { hypercall } from './hypercall-table.js';
import { HYPERVISOR } from './hypercall.js';
import { XenModel } from './domain.js';
import { MAP_PIRQ_TYPE, PHYSDEVOP, PhysdevNotModelled } from './physdev.js';
import { XEN_ERRNO } from './errno.js';

const model = (mode: 32 | 64, flavor: 'xen' | 'kvm', privileged = false) => new XenModel({
  flavor, cpu: 'intel', mode, xenVersion: { major: 4, minor: 19, extra: '.0' },
  domains: [{ id: 1, vcpus: 1, memoryBytes: 1 << 24, privileged, limits: {} }],
});

const ARG = 0x100000;
const call = (m: XenModel, cmd: number, arg: number | bigint = ARG) => {
  const v = m.domain(1)!.vcpus[0];
  const regs = v.mode === 64 ? { rax: BigInt(HYPERVISOR.physdev_op), rdi: BigInt(cmd), rsi: BigInt(arg) }
    : { rax: BigInt(HYPERVISOR.physdev_op), rbx: BigInt(cmd), rcx: BigInt(arg) };
  return Number(BigInt.asIntN(64, hypercall(m, v, regs).ret));
};
const e = (n: keyof typeof XEN_ERRNO) => -Number(XEN_ERRNO[n]);

/** struct physdev_map_pirq in the vCPU's layout. */
function mapArg(mode: 32 | 64, f: { domid?: number; type: number; index?: number; pirq?: number; tableBase?: bigint }): Uint8Array {
  const b = new Uint8Array(mode === 64 ? 40 : 36);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, f.domid ?? 0x7ff0, true);
  dv.setInt32(4, f.type, true);
  dv.setInt32(8, f.index ?? 0, true);
  dv.setInt32(12, f.pirq ?? -1, true);
  dv.setBigUint64(mode === 64 ? 32 : 28, f.tableBase ?? 0n, true);
  return b;
}

describe('physdev_op (xen/arch/x86/hvm/hypercall.c hvm_physdev_op, xen/arch/x86/physdev.c)', () => {
  it('is -ENOSYS for every command without PIRQ emulation (the Xen flavour follows PVH domains)', () => {
    fc.assert(fc.property(fc.integer({ min: -1, max: 40 }), fc.constantFrom(32 as const, 64 as const), (cmd, mode) => {
      expect(call(model(mode, 'xen'), cmd)).toBe(e('ENOSYS'));
    }));
  });

  it('with PIRQ emulation serves only the five PIRQ commands; an unreadable argument is -EFAULT in both widths', () => {
    const pirqCmds = new Set<number>([PHYSDEVOP.map_pirq, PHYSDEVOP.unmap_pirq, PHYSDEVOP.eoi, PHYSDEVOP.irq_status_query, PHYSDEVOP.get_free_pirq]);
    for (const mode of [32, 64] as const) {
      for (let cmd = 0; cmd <= 40; cmd++) {
        const want = pirqCmds.has(cmd) ? e('EFAULT') : e('ENOSYS');
        expect(call(model(mode, 'kvm'), cmd, (1 << 24) - 2), `cmd ${cmd} mode ${mode}`).toBe(want);
      }
    }
  });

  it('EOI and irq_status_query of a PIRQ never mapped are -EINVAL; unmapping its own is a no-op', () => {
    const m = model(64, 'kvm');
    const mem = m.domain(1)!.memory;
    mem.write(ARG, new Uint8Array([5, 0, 0, 0, 0xf0, 0x7f, 0, 0]));
    expect(call(m, PHYSDEVOP.eoi)).toBe(e('EINVAL'));
    expect(call(m, PHYSDEVOP.irq_status_query)).toBe(e('EINVAL'));
    mem.write(ARG, new Uint8Array([0xf0, 0x7f, 0, 0, 5, 0, 0, 0]));
    expect(call(m, PHYSDEVOP.unmap_pirq)).toBe(0);
    mem.write(ARG, new Uint8Array([1, 0, 0, 0, 5, 0, 0, 0]));
    expect(call(m, PHYSDEVOP.unmap_pirq)).toBe(e('EPERM'));
    mem.write(ARG, new Uint8Array([9, 0, 0, 0, 5, 0, 0, 0]));
    expect(call(m, PHYSDEVOP.unmap_pirq)).toBe(e('ESRCH'));
  });

  for (const mode of [32, 64] as const) {
    it(`map_pirq (${mode}-bit): refusals before a PIRQ is picked, and what is copied back`, () => {
      const m = model(mode, 'kvm');
      const mem = m.domain(1)!.memory;
      const put = (b: Uint8Array) => mem.write(ARG, b);
      // No vector callback: -EINVAL, the struct copied back unchanged.
      put(mapArg(mode, { type: MAP_PIRQ_TYPE.GSI, index: 5 }));
      expect(call(m, PHYSDEVOP.map_pirq)).toBe(e('EINVAL'));
      expect(mem.read(ARG, mode === 64 ? 40 : 36)).toEqual(mapArg(mode, { type: MAP_PIRQ_TYPE.GSI, index: 5 }));
      // MSI_SEG is written back as MSI even though the call fails.
      put(mapArg(mode, { type: MAP_PIRQ_TYPE.MSI_SEG }));
      expect(call(m, PHYSDEVOP.map_pirq)).toBe(e('EINVAL'));
      expect(new DataView(mem.read(ARG, 8).buffer.slice(0)).getInt32(4, true)).toBe(MAP_PIRQ_TYPE.MSI);
      // A multi-MSI with a table base, read at the layout's own offset (32, or 28 in compat).
      // Checked before the domain: with its own id (not DOMID_SELF) the call would be -EPERM.
      put(mapArg(mode, { domid: 1, type: MAP_PIRQ_TYPE.MULTI_MSI, tableBase: 0x1000n }));
      expect(call(m, PHYSDEVOP.map_pirq)).toBe(e('EINVAL'));
      put(mapArg(mode, { domid: 1, type: MAP_PIRQ_TYPE.MULTI_MSI, tableBase: 0x1000_0000_0000n }));
      expect(call(m, PHYSDEVOP.map_pirq)).toBe(e('EINVAL'));
      put(mapArg(mode, { domid: 1, type: MAP_PIRQ_TYPE.MULTI_MSI }));
      expect(call(m, PHYSDEVOP.map_pirq)).toBe(e('EPERM'));
      // Another domain's id (its own, not DOMID_SELF) needs a device model's rights.
      put(mapArg(mode, { domid: 1, type: MAP_PIRQ_TYPE.GSI, index: 5 }));
      expect(call(m, PHYSDEVOP.map_pirq)).toBe(e('EPERM'));
      put(mapArg(mode, { domid: 7, type: MAP_PIRQ_TYPE.GSI, index: 5 }));
      expect(call(m, PHYSDEVOP.map_pirq)).toBe(e('ESRCH'));
    });
  }

  it('with the vector callback, an emulated GSI past the 48 IO-APIC pins is -EINVAL and a valid one is reported as not modelled', () => {
    const m = model(64, 'kvm');
    const v = m.domain(1)!.vcpus[0];
    m.domain(1)!.memory.write(ARG + 64, new Uint8Array([0xf0, 0x7f, 0, 0, 0, 0, 0, 0, 0xf3, 0, 0, 0, 0, 0, 0, 2]));
    expect(Number(hypercall(m, v, { rax: BigInt(HYPERVISOR.hvm_op), rdi: 0n, rsi: BigInt(ARG + 64) }).ret)).toBe(0);
    for (const index of [48, -1, 1000]) {
      m.domain(1)!.memory.write(ARG, mapArg(64, { type: MAP_PIRQ_TYPE.GSI, index }));
      expect(call(m, PHYSDEVOP.map_pirq)).toBe(e('EINVAL'));
    }
    m.domain(1)!.memory.write(ARG, mapArg(64, { type: MAP_PIRQ_TYPE.MSI }));
    expect(call(m, PHYSDEVOP.map_pirq)).toBe(e('EINVAL'));
    m.domain(1)!.memory.write(ARG, mapArg(64, { type: MAP_PIRQ_TYPE.GSI, index: 47 }));
    expect(() => call(m, PHYSDEVOP.map_pirq)).toThrow(PhysdevNotModelled);
  });
});
