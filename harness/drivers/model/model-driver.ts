// The reference model as a target. Runs in-process and deterministically.
// `model` follows Xen; `model-kvm` follows KVM where the two document
// different behaviour (spec/kvm-xen-bugs-and-scope.md).

import { DriverError } from '../../errors.js';
import { XenModel, type Flavor } from '../../model/domain.js';
import type { GuestMemory } from '../../model/guest-memory.js';
import { hypercall, wrmsr } from '../../model/hypercall-table.js';
import type { Regs } from '../../model/hypercall.js';
import { ops } from '../../ops/index.js';
import type { Action, Outcome, StepPlacement } from '../../ops/types.js';
import { CAPABILITIES } from '../../suite/vocabulary.js';
import { hostOpCapability, hostOpOutCapability } from '../../ops/types.js';
import type { Capabilities, Driver, Session, SessionSetup } from '../driver.js';
import type { AreaView } from '../../model/areas.js';
import type { ModelVariant } from '../../model/variant.js';

/** Capabilities that only a target with another flavour or CPU has. */
function modelCapabilities(flavor: Flavor): Capabilities {
  const has = new Set(Object.keys(CAPABILITIES));
  for (const op of ops.values()) {
    if (!op.model) continue;
    has.add(hostOpCapability(op.name));
    for (const k of op.out ?? []) has.add(hostOpOutCapability(op.name, k));
  }
  const missing = new Map<string, string>();
  const drop = (c: string, why: string) => { has.delete(c); missing.set(c, why); };
  drop(flavor === 'xen' ? 'flavor.kvm' : 'flavor.xen', `the ${flavor === 'xen' ? 'model' : 'model-kvm'} target follows ${flavor === 'xen' ? 'Xen' : 'KVM'}`);
  if (flavor === 'xen') drop('physdev.pirq', 'the model follows the xen target\'s PVH domains, which have no PIRQ emulation (XEN_X86_EMU_USE_PIRQ)');
  if (flavor === 'kvm') drop('xenstore', 'xenstore is served by the VMM (QEMU): the model-kvm target follows the kernel');
  drop('kvm.plain', 'plain-KVM checks need the kvm target');
  return { has, missing, properties: { target: flavor === 'xen' ? 'model' : 'model-kvm', flavor } };
}

export class ModelSession implements Session {
  constructor(readonly model: XenModel, private readonly setup: SessionSetup) {}

  private at(p: StepPlacement) {
    const dom = this.model.domain(p.dom);
    if (!dom) throw new DriverError(`step names domain ${p.dom}, which the case's setup does not create`, { code: 'EINVAL' });
    const vcpu = dom.vcpu(p.vcpu);
    if (!vcpu) throw new DriverError(`step names vCPU ${p.vcpu} of domain ${p.dom}, which has ${dom.vcpus.length}`, { code: 'EINVAL' });
    return { dom, vcpu };
  }

  async apply(action: Action, p: StepPlacement): Promise<Outcome> {
    return this.applyNow(action, p);
  }

  /** `apply` without the promise: the fuzzer's hot loop calls it directly. */
  applyNow(action: Action, p: StepPlacement): Outcome {
    const { dom, vcpu } = this.at(p);
    switch (action.kind) {
      case 'check':
        return {};
      case 'write':
        for (const w of action.writes) {
          if (!dom.memory.contains(w.gpa, w.bytes.length)) return { fault: `write outside guest RAM at 0x${w.gpa.toString(16)}` };
          dom.memory.write(w.gpa, w.bytes);
        }
        return {};
      case 'wrmsr': {
        const r = wrmsr(this.model, vcpu, action.msr, action.value);
        return r.ok ? { servedBy: 'model' } : { fault: r.fault, servedBy: 'model' };
      }
      case 'host': {
        const op = ops.get(action.op);
        if (!op?.model) throw new DriverError(`op ${action.op} has no model implementation`, { code: 'ENOSYS' });
        return { servedBy: 'model', ...op.model(this.model, action.args as never, { dom, vcpu }) };
      }
      case 'hypercall': {
        for (const w of action.writes) dom.memory.write(w.gpa, w.bytes);
        const regs = this.registers(action, vcpu.mode, p);
        if ('fault' in regs) return { fault: regs.fault, servedBy: 'model' };
        const saved = vcpu.cpl;
        vcpu.cpl = p.cpl;
        let res;
        try {
          res = hypercall(this.model, vcpu, regs);
        } finally {
          vcpu.cpl = saved;
        }
        const out = action.out ? action.out.decode(dom.memory.read(action.out.gpa, action.out.size)) : undefined;
        return { ret: res.ret, out, servedBy: 'model' };
      }
    }
  }

  /** Registers at the instruction, per the calling convention; `via: page` executes the stub. */
  private registers(action: Action & { kind: 'hypercall' }, mode: 32 | 64, p: StepPlacement): Regs | { fault: string } {
    const nr = BigInt(action.nr);
    const regs: Regs = { rax: nr };
    const names = mode === 64 ? ARG_REGS_64 : ARG_REGS_32;
    const r = regs as unknown as Record<string, bigint>;
    for (let i = 0; i < action.args.length; i++) r[names[i]] = action.args[i];
    if (action.regs) for (const k in action.regs) r[k] = (action.regs as Record<string, bigint>)[k];
    if (p.via === 'page') {
      const dom = this.model.domain(p.dom)!;
      if (dom.hypercallPageGpa === null) return { fault: 'no hypercall page: write the hypercall MSR first' };
      // Execute the stub as the CPU would: mov eax, imm32; vmcall/vmmcall.
      const at = dom.hypercallPageGpa + Number(nr & 0x7fn) * 32;
      const b = (i: number) => dom.memory.u8(at + i);
      if (b(0) === 0x0f && b(1) === 0x0b) return { fault: 'UD' };
      if (b(0) !== 0xb8 || b(5) !== 0x0f || b(6) !== 0x01) return { fault: b(0) === 0xcc ? 'BP' : 'UD' };
      regs.rax = BigInt(b(1) | (b(2) << 8) | (b(3) << 16) | (b(4) << 24)) | (regs.rax & ~0xffffffffn);
      if (mode === 32) regs.rax &= 0xffffffffn;
    }
    return regs;
  }

  async read(domid: number, gpa: number, len: number): Promise<Uint8Array> {
    const dom = this.model.domain(domid);
    if (!dom) throw new DriverError(`no domain ${domid}`, { code: 'EINVAL' });
    if (!dom.memory.contains(gpa, len)) throw new DriverError(`read outside guest RAM: 0x${gpa.toString(16)}+${len}`, { code: 'EFAULT' });
    return dom.memory.read(gpa, len);
  }

  areas(domid: number): AreaView {
    const dom = this.model.domain(domid);
    if (!dom) throw new DriverError(`no domain ${domid}`, { code: 'EINVAL' });
    return { width: dom.width, get: (k) => dom.areas.get(k) };
  }

  async [Symbol.asyncDispose](): Promise<void> {}
}

/** The argument registers of the hypercall convention, 64-bit and 32-bit. */
const ARG_REGS_64 = ['rdi', 'rsi', 'rdx', 'r10', 'r8', 'r9'] as const;
const ARG_REGS_32 = ['rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp'] as const;

export class ModelDriver implements Driver {
  readonly name: string;
  /** `variant`: a deliberately broken model, built only by the selfcheck (harness/fuzz/variants.ts). */
  constructor(readonly flavor: Flavor = 'xen', private readonly variant?: ModelVariant) {
    this.name = flavor === 'xen' ? 'model' : 'model-kvm';
  }

  async probe(): Promise<Capabilities> {
    return modelCapabilities(this.flavor);
  }

  /** Build the model for a setup; exposed for tests and the fuzzer. */
  /** `memory`: a domain's guest memory when not the model's own (a live target's shadow model). */
  build(setup: SessionSetup, memory?: (domid: number) => GuestMemory | undefined): XenModel {
    const model = new XenModel({
      flavor: this.flavor,
      cpu: setup.cpu ?? 'intel',
      xenVersion: setup.xenVersion,
      mode: setup.mode,
      domains: setup.domains.map((d) => ({ id: d.id, vcpus: d.vcpus, memoryBytes: d.memoryBytes, privileged: d.privileged, limits: d.limits, memory: memory?.(d.id) })),
      variant: this.variant,
    });
    for (const d of setup.domains) {
      const dom = model.domain(d.id)!;
      if (d.sharedInfo !== null) dom.placeSharedInfo(d.sharedInfo);
      if (d.hypercallPage !== null) {
        const r = wrmsr(model, dom.vcpus[0], 0x40000000, BigInt(d.hypercallPage));
        if (!r.ok) throw new DriverError(`setup: hypercall page at 0x${d.hypercallPage.toString(16)} rejected`, { code: 'EINVAL' });
      }
    }
    return model;
  }

  async open(setup: SessionSetup): Promise<Session> {
    return this.openNow(setup);
  }

  openNow(setup: SessionSetup, memory?: (domid: number) => GuestMemory | undefined): ModelSession {
    return new ModelSession(this.build(setup, memory), setup);
  }
}
