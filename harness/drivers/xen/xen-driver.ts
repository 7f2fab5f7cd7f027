// The xen target: a real Xen hypervisor, driven from dom0. Each case gets a
// fresh PVH domain running the xconf test guest (xen-guest.ts); every guest
// step is a hypercall, MSR write or memory access the real Xen answers. Nothing
// here answers for Xen: a shadow of the reference model only follows the
// guest's registrations so memory paths (shared_info.…, runstate[0].…) resolve
// to the addresses the guest chose; the bytes read are Xen's.
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { DriverError } from '../../errors.js';
import { HYPERVISOR } from '../../model/hypercall.js';
import { DOMID_SELF } from '../../model/domain.js';
import { ops } from '../../ops/index.js';
import { FIFO_LAYOUT } from '../../ops/evtchn.js';
import { EVTCHNOP } from '../../model/evtchn.js';
import { hostOpCapability, type Action, type Outcome, type StepPlacement } from '../../ops/types.js';
import { CAPABILITIES } from '../../suite/vocabulary.js';
import type { AreaView } from '../../model/areas.js';
import type { Capabilities, Driver, Session, SessionSetup } from '../driver.js';
import { ModelDriver, type ModelSession } from '../model/model-driver.js';
import type { CommandResult, GuestCommand } from '../kvm/guest.js';
import { GUEST_LAYOUT } from '../kvm/guest.js';
import { XL_LIMITS, XenGuest } from './xen-guest.js';
import { xenAddon } from './native.js';

const XENMEM_add_to_physmap = 7n;
const EVTCHNOP_reset = 10n;
const XENMAPSPACE_shared_info = 0;
const HYPERCALL_MSR = 0x40000000;

/** What the test guest on this target cannot do, whatever Xen can. */
const NOT_PROVIDED: Record<string, string> = {
  'time.control': 'time on real Xen is the hypervisor\'s clock, not controlled by the case',
  'domains.multi': 'the xen driver builds one guest domain per case so far',
  'flavor.kvm': 'the xen target is Xen itself',
  'kvm.plain': 'plain-KVM checks need the kvm target',
  'hypercall.raw_regs': 'the test guest passes arguments by the calling convention only',
  'hypercall.cpl12': 'the test guest runs its calls at CPL 0 or 3 only',
  'hypercall.cpl32': 'the test guest\'s 32-bit ring-3 path is not supported under QEMU TCG (its TSS switch aborts)',
  'version.build_strings': 'real Xen reports its own build (compiler, compile_by, changeset), not the model\'s',
  xenstore: 'the xen driver does not yet keep the toolstack\'s xenstore port through its event-channel reset',
};

/** Host-side ops this driver performs (the guest's own hypercalls, or dom0 through the libraries). */
export const XEN_HOST_OPS = ['evtchn.use_fifo'];

export interface XenInfo {
  version: { major: number; minor: number; extra: string };
  virtCaps: string[];
  vendor: 'intel' | 'amd' | undefined;
}

/** Facts from `xl info` and /proc/cpuinfo. */
export function parseXlInfo(text: string, cpuinfo: string): XenInfo {
  const field = (k: string) => new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm').exec(text)?.[1].trim();
  const major = Number(field('xen_major')), minor = Number(field('xen_minor'));
  if (!Number.isInteger(major) || !Number.isInteger(minor)) throw new DriverError('xl info gave no xen_major / xen_minor: is this a Xen dom0?', { code: 'ENOXEN' });
  const vendor = /^vendor_id\s*:\s*(\S+)/m.exec(cpuinfo)?.[1];
  return {
    version: { major, minor, extra: field('xen_extra') ?? '' },
    virtCaps: (field('virt_caps') ?? '').split(/\s+/).filter(Boolean),
    vendor: vendor === 'AuthenticAMD' || vendor === 'HygonGenuine' ? 'amd' : vendor === 'GenuineIntel' ? 'intel' : undefined,
  };
}

export function xenCapabilities(info: XenInfo): Capabilities {
  const has = new Set<string>(['guest.mode64', 'guest.mode32', 'flavor.xen', 'hypercall.intercept', 'hypercall.page', 'hypercall.cpl',
    'shared_info', 'vcpu_info', 'runstate', 'runstate.update_flag', 'evtchn.2l', 'evtchn.fifo', 'evtchn.send',
    'evtchn.upcall_vector', 'evtchn.callback_vector', 'sched.poll', 'timer']);
  const missing = new Map<string, string>(Object.entries(NOT_PROVIDED));
  for (const v of ['gnttab.v1', 'gnttab.v2'] as const) {
    if (info.virtCaps.includes(v.replace('.', '-'))) has.add(v);
    else missing.set(v, `xl info virt_caps (${info.virtCaps.join(' ')}) lacks ${v.replace('.', '-')}`);
  }
  for (const v of ['intel', 'amd'] as const) {
    if (info.vendor === v) has.add(`cpu.${v}`);
    else missing.set(`cpu.${v}`, `the CPU is ${info.vendor ?? 'unknown'}; Xen writes its hypercall instruction`);
  }
  for (const op of ops.values()) {
    if (!op.model) continue;
    if (XEN_HOST_OPS.includes(op.name)) has.add(hostOpCapability(op.name));
    else missing.set(hostOpCapability(op.name), `${op.name} is a host action the xen driver does not perform from dom0 yet`);
  }
  for (const c of Object.keys(CAPABILITIES)) if (!has.has(c) && !missing.has(c)) missing.set(c, 'not provided by the xen driver');
  const v = info.version;
  return {
    has,
    missing,
    fixedXenVersion: `${v.major}.${v.minor}${v.extra}`,
    properties: { target: 'xen', xen_version: `${v.major}.${v.minor}${v.extra}`, xen_virt_caps: info.virtCaps.join(' '), ...dom0Kernel() },
  };
}

function dom0Kernel(): Record<string, string> {
  try {
    return { dom0_kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim() };
  } catch {
    return {};
  }
}

const FAULT_NAMES: Record<number, string> = { 0: 'DE', 3: 'BP', 6: 'UD', 13: 'GP', 14: 'PF' };

function faultOf(r: CommandResult | undefined): string | undefined {
  if (r?.status !== 'fault') return undefined;
  const vec = r.fault?.vector ?? -1;
  return FAULT_NAMES[vec] ?? `vector ${vec}`;
}

class XenSession implements Session {
  constructor(private readonly guest: XenGuest, private readonly setup: SessionSetup, private readonly shadow: ModelSession, private readonly vendor: 'intel' | 'amd') {}

  private get domid(): number {
    return this.setup.domains[0].id;
  }

  /** What the case's setup asks of a fresh domain, done by the guest itself, as a Xen guest does it. */
  async start(): Promise<void> {
    const d = this.setup.domains[0];
    const scratch = GUEST_LAYOUT.blockBase + GUEST_LAYOUT.harnessScratch;
    // The toolstack bound ports 1 and 2 (xenstore, console) to dom0; cases expect a
    // domain with no channels, so close them all as a guest may (EVTCHNOP_reset).
    const reset = Buffer.alloc(2);
    reset.writeUInt16LE(DOMID_SELF, 0);
    this.guest.write(scratch, reset);
    const rr = await this.call(BigInt(HYPERVISOR.event_channel_op), [EVTCHNOP_reset, BigInt(scratch)], 'auto');
    if (rr.fault || rr.ret !== 0n) throw new DriverError(`setup: EVTCHNOP_reset(DOMID_SELF) gave ${rr.fault ?? rr.ret}`, { code: 'EIO' });
    if (d.sharedInfo !== null) {
      const wide = this.setup.mode === 64;
      const b = Buffer.alloc(wide ? 24 : 16);
      b.writeUInt16LE(DOMID_SELF, 0);
      b.writeUInt32LE(XENMAPSPACE_shared_info, 4);
      if (wide) b.writeBigUInt64LE(BigInt(d.sharedInfo / 4096), 16);
      else b.writeUInt32LE(d.sharedInfo / 4096, 12);
      this.guest.write(scratch, b);
      const r = await this.call(BigInt(HYPERVISOR.memory_op), [XENMEM_add_to_physmap, BigInt(scratch)], 'auto');
      if (r.fault || r.ret !== 0n) throw new DriverError(`setup: XENMEM_add_to_physmap(shared_info at 0x${d.sharedInfo.toString(16)}) gave ${r.fault ?? r.ret}`, { code: 'EIO' });
    }
    if (d.hypercallPage !== null) {
      const r = this.guest.run(0, [{ op: 'wrmsr', msr: HYPERCALL_MSR, value: d.hypercallPage }]);
      if (r.status !== 'done' || r.results[0]?.status !== 'ok') throw new DriverError(`setup: writing the hypercall MSR failed (${r.status})`, { code: 'EIO' });
      this.guest.setHypercallPage(0, d.hypercallPage);
    }
  }

  /**
   * The guest command for one hypercall. `auto` is the CPU's own instruction, as the
   * model reads it: Xen's hypercall page has ud2 in some slots (iret), so a call the
   * case did not route through the page must not land there.
   */
  private command(nr: bigint, args: readonly bigint[], via: StepPlacement['via'], cpl3 = false): GuestCommand {
    const usePage = via === 'page';
    return usePage
      ? { op: 'hypercall', nr: Number(nr & 0x7fn), args, cpl3 }
      : { op: via === 'vmcall' || (via === 'auto' && this.vendor === 'intel') ? 'vmcall' : 'vmmcall', rax: nr, args, cpl3 };
  }

  private async call(nr: bigint, args: readonly bigint[], via: StepPlacement['via'], cpl3 = false): Promise<Outcome & { result?: CommandResult }> {
    const r = this.guest.run(0, [this.command(nr, args, via, cpl3)]);
    if (r.status === 'timeout') throw new DriverError('the guest did not finish its command in time', { code: 'ETIMEDOUT' });
    if (r.status === 'guest-fault') return { fault: `guest-fault vector ${r.fault?.vector ?? '?'}` };
    const fault = faultOf(r.results[0]);
    return fault ? { fault } : { ret: r.results[0].retSigned, result: r.results[0] };
  }

  async apply(action: Action, at: StepPlacement): Promise<Outcome> {
    if (at.dom !== this.domid) throw new DriverError(`the xen target runs one domain (${this.domid}); step names ${at.dom}`, { code: 'EINVAL' });
    if (at.vcpu !== 0) throw new DriverError(`the xen test guest starts vCPU 0 only; step names vCPU ${at.vcpu}`, { code: 'EUNSUPPORTED' });
    switch (action.kind) {
      case 'check':
        return {};
      case 'write':
        for (const w of action.writes) this.guest.write(w.gpa, Buffer.from(w.bytes));
        this.shadow.applyNow(action, at);
        return {};
      case 'wrmsr': {
        const r = this.guest.run(at.vcpu, [{ op: 'wrmsr', msr: action.msr, value: action.value }]);
        if (r.status === 'timeout') throw new DriverError('the guest did not finish its MSR write in time', { code: 'ETIMEDOUT' });
        const fault = r.status === 'guest-fault' ? `guest-fault vector ${r.fault?.vector ?? '?'}` : faultOf(r.results[0]);
        if (!fault && action.msr === HYPERCALL_MSR) {
          this.guest.setHypercallPage(at.vcpu, Number(action.value & ~0xfffn));
        }
        this.shadow.applyNow(action, at);
        return { fault };
      }
      case 'hypercall': {
        if (action.regs && Object.keys(action.regs).length) throw new DriverError('explicit registers are not supported by the xen test guest', { code: 'ENOTSUP' });
        if (at.cpl !== 0 && at.cpl !== 3) throw new DriverError(`the xen test guest runs at CPL 0 or 3, not ${at.cpl}`, { code: 'ENOTSUP' });
        for (const w of action.writes) this.guest.write(w.gpa, Buffer.from(w.bytes));
        const o = await this.call(BigInt(action.nr), action.args, at.via, at.cpl === 3);
        // The shadow follows the call only to know where the guest's areas are now.
        this.shadow.applyNow(action, at);
        if (o.fault) return { fault: o.fault };
        const out = action.out ? action.out.decode(new Uint8Array(this.guest.read(action.out.gpa, action.out.size))) : undefined;
        return { ret: o.ret, out };
      }
      case 'host': {
        const o = await this.host(action.op, action.args);
        this.shadow.applyNow(action, at);
        return o;
      }
    }
  }

  private async host(op: string, args: Record<string, unknown>): Promise<Outcome> {
    switch (op) {
      case 'evtchn.use_fifo':
        return (args.enable ?? 1n) === 0n ? { ret: 0n } : this.useFifo(Number(args.scratch as bigint), Number((args.pages as bigint | undefined) ?? 1n), (args.mask_all ?? 0n) !== 0n);
    }
    throw new DriverError(`op ${op} is not implemented by the xen target`, { code: 'ENOSYS' });
  }

  /**
   * The guest switches to FIFO as Linux does and as the model's op does (ops/evtchn.ts
   * useFifo): EVTCHNOP_init_control with a zeroed control block per vCPU, then
   * EVTCHNOP_expand_array for each event array page; real hypercalls, answered by Xen.
   */
  private async useFifo(scratch: number, pages: number, maskAll: boolean): Promise<Outcome> {
    const PAGE = 4096;
    for (let vcpu = 0; vcpu < this.setup.domains[0].vcpus; vcpu++) {
      const cb = FIFO_LAYOUT.controlBase + vcpu * PAGE;
      this.guest.write(cb, Buffer.alloc(PAGE));
      const init = Buffer.alloc(24);
      init.writeBigUInt64LE(BigInt(cb / PAGE), 0);
      init.writeUInt32LE(vcpu, 12);
      this.guest.write(scratch, init);
      const r = await this.call(BigInt(HYPERVISOR.event_channel_op), [BigInt(EVTCHNOP.init_control), BigInt(scratch)], 'auto');
      if (r.fault || r.ret !== 0n) return r.fault ? { fault: r.fault } : { ret: r.ret };
    }
    for (let i = 0; i < pages; i++) {
      const page = FIFO_LAYOUT.arrayBase + i * PAGE;
      const init = Buffer.alloc(PAGE);
      if (maskAll) for (let o = 0; o < PAGE; o += 4) init[o + 3] = 0x40; // MASKED (bit 30)
      this.guest.write(page, init);
      const arg = Buffer.alloc(8);
      arg.writeBigUInt64LE(BigInt(page / PAGE), 0);
      this.guest.write(scratch, arg);
      const r = await this.call(BigInt(HYPERVISOR.event_channel_op), [BigInt(EVTCHNOP.expand_array), BigInt(scratch)], 'auto');
      if (r.fault || r.ret !== 0n) return r.fault ? { fault: r.fault } : { ret: r.ret };
    }
    return { ret: 0n };
  }

  async read(dom: number, gpa: number, len: number): Promise<Uint8Array> {
    if (dom !== this.domid) throw new DriverError(`no domain ${dom} on the xen target`, { code: 'EINVAL' });
    return new Uint8Array(this.guest.read(gpa, len));
  }

  areas(dom: number): AreaView {
    return this.shadow.areas(dom);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.guest.destroy();
  }
}

export class XenDriver implements Driver {
  readonly name = 'xen';
  private probed?: { caps: Capabilities; info: XenInfo };

  async probe(): Promise<Capabilities> {
    if (this.probed) return this.probed.caps;
    xenAddon(); // says what is missing when this is not a dom0
    const r = spawnSync('xl', ['info'], { encoding: 'utf8', timeout: 60_000 });
    if (r.error || r.status !== 0) {
      throw new DriverError(`xen target unavailable: xl info ${r.error ? `failed: ${r.error.message}` : `exited ${r.status}: ${`${r.stderr}`.trim().split('\n').pop()}`}`, { code: 'ENOXEN' });
    }
    let cpuinfo = '';
    try {
      cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      // vendor unknown: both cpu.* capabilities are then missing
    }
    const info = parseXlInfo(r.stdout, cpuinfo);
    this.probed = { caps: xenCapabilities(info), info };
    return this.probed.caps;
  }

  async open(setup: SessionSetup): Promise<Session> {
    await this.probe();
    const d = setup.domains[0];
    if (setup.domains.length > 1) throw new DriverError('the xen driver builds one guest domain per case so far', { code: 'EUNSUPPORTED' });
    if (d.privileged) throw new DriverError('a domain the toolstack builds is not privileged (dom0 is the only one here)', { code: 'EUNSUPPORTED' });
    if (d.vcpus > 1) throw new DriverError(`the xen test guest starts vCPU 0 only so far (its other vCPUs need VCPUOP_initialise and VCPUOP_up); the case asks for ${d.vcpus}`, { code: 'EUNSUPPORTED' });
    // The toolstack binds ports 1 and 2 (xenstore, console) while it builds the domain.
    if (d.limits.max_evtchn_port !== undefined && d.limits.max_evtchn_port < 2) {
      throw new DriverError(`the toolstack binds ports 1 and 2 (xenstore, console) while it builds a domain, so max_evtchn_port ${d.limits.max_evtchn_port} cannot be built`, { code: 'EUNSUPPORTED' });
    }
    const unsettable = Object.keys(d.limits).filter((k) => !XL_LIMITS[k]);
    if (unsettable.length) throw new DriverError(`the toolstack cannot set the case's limit ${unsettable.join(', ')} (xl.cfg has ${Object.keys(XL_LIMITS).join(', ')})`, { code: 'EUNSUPPORTED' });
    const shadow = new ModelDriver('xen').openNow(setup);
    const guest = XenGuest.create({ mode: setup.mode, vcpus: d.vcpus, memoryBytes: d.memoryBytes, limits: d.limits });
    const s = new XenSession(guest, setup, shadow, this.probed!.info.vendor ?? 'amd');
    try {
      await s.start();
    } catch (e) {
      guest.destroy();
      throw e;
    }
    return s;
  }
}
