// The live KVM target. The native addon drives /dev/kvm and the tiny guest
// (native/guest); this driver maps KVM_CAP_XEN_HVM to xconf capabilities,
// turns Actions into guest command queues (one native crossing per batch),
// and serves the hypercalls KVM leaves to userspace (KVM_EXIT_XEN) with the
// reference model, as a VMM (QEMU) would. Every step records whether the
// kernel or this VMM layer answered.

import { readFileSync } from 'node:fs';
import { DriverError } from '../../errors.js';
import { DOMID_SELF, XenModel, type Vcpu } from '../../model/domain.js';
import { GuestMemory } from '../../model/guest-memory.js';
import { hypercall } from '../../model/hypercall-table.js';
import { HYPERVISOR } from '../../model/hypercall.js';
import { EVTCHNOP, vmmInjectTarget } from '../../model/evtchn.js';
import type { Regs } from '../../model/hypercall.js';
import type { AreaView } from '../../model/areas.js';
import type { Action, Outcome, StepPlacement } from '../../ops/types.js';
import { CAPABILITIES } from '../../suite/vocabulary.js';
import { ops } from '../../ops/index.js';
import { guestSetMask, runUpcall } from '../../ops/evtchn.js';
import { domainSchedOf, schedOf } from '../../model/sched.js';
import { hostOpCapability, hostOpOutCapability } from '../../ops/types.js';
import type { Capabilities, Driver, Session, SessionSetup } from '../driver.js';
import { GuestVm, loadAddon, MP_STATE, probeKvm, XEN_HVM_FLAG, type KvmProbe, type PreparedVm } from './addon.js';
import { GUEST_LAYOUT, type CommandResult, type GuestCommand } from './guest.js';
import { takeUpcallsLive, upcallForwarding, upcallVectors } from './upcall-live.js';
import { kvmRunstate, raceLive, runstateAreas, runstateDataArg, runstateForwarding, runstateOutOf, setRunstateAddr } from './runstate-live.js';
import { KVM_XEN_INVALID_GPA, setKernelWritesRunstate } from '../../model/runstate.js';
import { raceArgs, raceOut } from '../../model/runstate-race.js';
import { kvmLatchWidth, kvmSharedInfoGpa } from '../../model/kvm-shared-info.js';
import { vmAssistEnabled, VMASST_TYPE } from '../../model/vm-assist.js';
import type { KvmXenGetAttr, KvmXenSetAttr } from '../../model/kvm-attr.js';
import { assignTarget, ioctlErrno, kvmGetAttr } from './attr-live.js';
import { applyOffload, offloadSnapshot } from './offload-live.js';
import { kvmEvtchnSetattr } from '../../model/kvm-evtchn.js';
import type { KvmEventfd } from './resources.js';
import { kvmXenSetAttr, kvmXenSetTimer } from '../../model/kvm-attr.js';

/** KVM_CAP_XEN_HVM bits each capability needs (spec/kvm-xen-bugs-and-scope.md). */
const XEN_CAP_BITS: Record<string, Array<keyof typeof XEN_HVM_FLAG>> = {
  'hypercall.intercept': ['INTERCEPT_HCALL'],
  'hypercall.page': ['HYPERCALL_MSR', 'INTERCEPT_HCALL'],
  'hypercall.cpl': ['INTERCEPT_HCALL'],
  shared_info: ['SHARED_INFO'],
  vcpu_info: ['SHARED_INFO'],
  runstate: ['RUNSTATE'],
  'runstate.update_flag': ['RUNSTATE_UPDATE_FLAG'],
  'kvm.shared_info_hva': ['SHARED_INFO_HVA'],
  'evtchn.2l': ['EVTCHN_2LEVEL'],
  'evtchn.send': ['EVTCHN_SEND'],
  'evtchn.host_send': ['EVTCHN_SEND'],
  // KVM_XEN_VCPU_ATTR_TYPE_UPCALL_VECTOR came with EVTCHN_SEND (Documentation/virt/kvm/api.rst;
  // arch/x86/kvm/xen.c has it in 6.1); the VM-wide KVM_XEN_ATTR_TYPE_UPCALL_VECTOR with SHARED_INFO.
  'evtchn.upcall_vector': ['EVTCHN_SEND'],
  'evtchn.callback_vector': ['SHARED_INFO'],
  'sched.poll': ['EVTCHN_SEND'],
  timer: ['EVTCHN_SEND'],
};

/** Capabilities this driver does not provide, whatever the kernel has. */
const NOT_PROVIDED: Record<string, string> = {
  'evtchn.fifo': 'KVM implements only 2-level event channels; FIFO belongs to the VMM and this driver provides none',
  'gnttab.v1': 'grant tables belong to the VMM (KVM has none); this driver provides none',
  'gnttab.v2': 'grant tables belong to the VMM (KVM has none); this driver provides none',
  xenstore: 'xenstore is served by the VMM (QEMU): the kvm target tests the kernel',
  'physdev.pirq': 'PIRQs belong to the VMM (KVM has none); this driver provides none',
  'domains.multi': 'one KVM VM is one Xen domain; multi-domain cases run on the model',
  'time.control': 'time on a live KVM is the host clock, not controlled by the case',
  'flavor.xen': 'KVM documents different behaviour here; the case checks Xen\'s',
  'hypercall.raw_regs': 'the test guest passes arguments by the calling convention only',
  'hypercall.cpl12': 'the test guest runs its calls at CPL 0 or 3 only',
  'hypercall.cpl32': 'the test guest\'s 32-bit ring-3 path is not supported (QEMU TCG aborts on its TSS switch; unverified on hardware)',
};

/** Host- and guest-side actions this driver implements (see KvmSession.host). */
export const KVM_HOST_OPS = [
  'evtchn.host_send', 'evtchn.vmm_inject', 'evtchn.set_mask', 'evtchn.run_upcall', 'evtchn.take_upcalls', 'evtchn.alloc_many', 'sched.status', 'runstate.host_set_addr',
  'runstate.host_set_current', 'runstate.host_set_data', 'runstate.host_adjust', 'runstate.get', 'runstate.race_check',
  'kvm.xen_get_attr', 'kvm.xen_set_upcall_vector', 'kvm.xen_set_vcpu_id', 'kvm.xen_set_timer',
  'kvm.xen_evtchn_assign', 'kvm.xen_evtchn_update', 'kvm.xen_evtchn_deassign', 'kvm.xen_evtchn_reset', 'kvm.memslot_churn', 'kvm.xen_hvm_config', 'kvm.irqfd_send', 'kvm.xen_set_attr',
  'kvm.eventfd_read',
];

/**
 * Who answers each host-side op when the step itself does not say: `kernel` where the op
 * is a KVM ioctl or a guest run under KVM_RUN, `vmm` where the host reads or writes the
 * VM's memory itself (as a VMM would) or the VMM layer answers the hypercalls.
 */
export const HOST_OP_SERVER: Record<string, 'kernel' | 'vmm'> = {
  'kvm.guest_log': 'kernel', 'kvm.guest_write': 'kernel', 'kvm.guest_read': 'kernel', 'kvm.guest_cpuid': 'kernel',
  'kvm.guest_wait_upcall': 'kernel', 'evtchn.host_send': 'kernel', 'evtchn.vmm_inject': 'kernel', 'evtchn.take_upcalls': 'kernel', 'sched.status': 'kernel',
  'runstate.host_set_addr': 'kernel', 'runstate.host_set_current': 'kernel', 'runstate.host_set_data': 'kernel',
  'runstate.host_adjust': 'kernel', 'runstate.get': 'kernel', 'runstate.race_check': 'kernel',
  'kvm.xen_get_attr': 'kernel', 'kvm.xen_set_upcall_vector': 'kernel', 'kvm.xen_set_vcpu_id': 'kernel', 'kvm.xen_set_timer': 'kernel',
  'kvm.xen_evtchn_assign': 'kernel', 'kvm.xen_evtchn_update': 'kernel',
  'kvm.xen_evtchn_deassign': 'kernel', 'kvm.xen_evtchn_reset': 'kernel', 'kvm.memslot_churn': 'kernel', 'kvm.xen_hvm_config': 'kernel', 'kvm.irqfd_send': 'kernel', 'kvm.xen_set_attr': 'kernel',
  'evtchn.set_mask': 'vmm', 'evtchn.run_upcall': 'vmm', 'evtchn.alloc_many': 'vmm', 'kvm.eventfd_read': 'vmm',
};

/** The servedBy a step's outcome records on the kvm target when the op did not set one. */
export function defaultServedBy(action: Action): 'kernel' | 'vmm' {
  switch (action.kind) {
    case 'check':
    case 'write':
      return 'vmm'; // the host reads / writes guest memory itself
    case 'host':
      return HOST_OP_SERVER[action.op] ?? 'vmm';
    default:
      return 'kernel'; // the guest ran under KVM_RUN (wrmsr, hypercall)
  }
}

/** OUT values of those ops that a live KVM does not show, and why. */
const KVM_UNOBSERVABLE_OUT: Record<string, string> = {
  'sched.status.yields': 'KVM answers SCHEDOP_yield in-kernel (kvm_vcpu_on_spin) and keeps no count',
  'sched.status.wakeups': 'KVM wakes a polling vCPU in-kernel and keeps no count',
  'sched.status.poll_port': 'KVM keeps the polled port (vcpu->arch.xen.poll_evtchn) to itself',
};

function hostOpCapabilities(has: Set<string>, missing: Map<string, string>): void {
  for (const name of KVM_HOST_OPS) {
    has.add(hostOpCapability(name));
    for (const k of ops.get(name)?.out ?? []) {
      const cap = hostOpOutCapability(name, k);
      const why = KVM_UNOBSERVABLE_OUT[`${name}.${k}`];
      if (why) missing.set(cap, why);
      else has.add(cap);
    }
  }
}

function hostVendor(): 'intel' | 'amd' | undefined {
  try {
    const m = /^vendor_id\s*:\s*(\S+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    return m?.[1] === 'AuthenticAMD' || m?.[1] === 'HygonGenuine' ? 'amd' : m?.[1] === 'GenuineIntel' ? 'intel' : undefined;
  } catch {
    return undefined;
  }
}

export function kvmCapabilities(p: KvmProbe, vendor: 'intel' | 'amd' | undefined): Capabilities {
  // xen_version is the VMM layer's (the model's) on KVM, build strings included.
  const has = new Set<string>(['kvm.plain', 'guest.mode64', 'guest.mode32', 'flavor.kvm', 'version.build_strings']);
  const missing = new Map<string, string>();
  hostOpCapabilities(has, missing);
  const xenHex = `0x${p.xenHvm.toString(16)}`;
  for (const [cap, bits] of Object.entries(XEN_CAP_BITS)) {
    const lacking = bits.filter((b) => (p.xenHvm & XEN_HVM_FLAG[b]) === 0);
    if (!lacking.length) has.add(cap);
    else {
      missing.set(cap, p.xenHvm === 0
        ? `KVM_CAP_XEN_HVM = 0: this kernel has no Xen emulation (CONFIG_KVM_XEN); needs ${lacking.join(', ')}`
        : `KVM_CAP_XEN_HVM = ${xenHex} lacks ${lacking.map((b) => `${b} (bit ${Math.log2(XEN_HVM_FLAG[b])})`).join(', ')}`);
    }
  }
  // Both vectors are delivered through the in-kernel LAPIC (kvm_xen_inject_vcpu_vector,
  // kvm_cpu_has_extint -> kvm_xen_has_interrupt).
  for (const cap of ['evtchn.upcall_vector', 'evtchn.callback_vector']) {
    if (has.has(cap) && !p.irqchip) {
      has.delete(cap);
      missing.set(cap, 'upcall vectors need an in-kernel LAPIC (KVM_CREATE_IRQCHIP failed)');
    }
  }
  if (has.has('sched.poll') && !p.irqchip) {
    has.delete('sched.poll');
    missing.set('sched.poll', 'in-kernel SCHEDOP_poll needs an in-kernel LAPIC (KVM_CREATE_IRQCHIP failed)');
  }
  for (const [cap, why] of Object.entries(NOT_PROVIDED)) missing.set(cap, why);
  for (const v of ['intel', 'amd'] as const) {
    if (vendor === v) has.add(`cpu.${v}`);
    else missing.set(`cpu.${v}`, `the host CPU is ${vendor ?? 'unknown'}; KVM writes the host's hypercall instruction`);
  }
  for (const c of Object.keys(CAPABILITIES)) if (!has.has(c) && !missing.has(c)) missing.set(c, 'not provided by the kvm driver');
  return {
    has,
    missing,
    properties: {
      target: 'kvm',
      kvm_module: p.module,
      kvm_api_version: String(p.apiVersion),
      kvm_cap_xen_hvm: xenHex,
      kvm_cap_xen_hvm_flags: p.xenHvmFlags.join(' ') || 'none',
      ...kernelRelease(),
    },
  };
}

function kernelRelease(): Record<string, string> {
  try {
    return { kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim() };
  } catch {
    return {};
  }
}

/** Guest memory of a live VM, seen through the model's GuestMemory interface. */
class VmMemory extends GuestMemory {
  constructor(private readonly guest: GuestVm, size: number) {
    super(size);
  }
  override read(gpa: number, len: number): Uint8Array {
    if (!this.contains(gpa, len)) return super.read(gpa, len); // throws GuestFault
    return this.guest.vm.bytes(gpa, len);
  }
  override write(gpa: number, bytes: Uint8Array): void {
    if (!this.contains(gpa, bytes.length)) return super.write(gpa, bytes);
    this.guest.vm.write(gpa, bytes);
  }
}

/**
 * The VMM layer's view of a timer it handed to KVM (KVM_XEN_VCPU_ATTR_TYPE_TIMER): the port
 * only, expiry 0. Were its model to arm the timer too, one already due would fire there and
 * the VMM would write the event into guest memory itself, beside KVM (or, on 6.1, which
 * defers it to the vCPU's next entry, before KVM).
 */
export function vmmNoteKvmTimer(vmm: XenModel, v: Vcpu, port: bigint, priority: bigint): void {
  kvmXenSetTimer(vmm, v, port, priority, 0n);
}

/** The GSI kvm.irqfd_send routes to an event channel. */
const IRQFD_GSI = 40;
/** A descriptor number no process has open: KVM's eventfd_ctx_fdget answers -EBADF. */
const NOT_A_DESCRIPTOR = 0x7fffffff;
/** The memory slot kvm.memslot_churn adds and removes (the guest's RAM is slot 0). */
const CHURN_SLOT = 7;

const FAULT_NAMES: Record<number, string> = { 0: 'DE', 3: 'BP', 6: 'UD', 13: 'GP', 14: 'PF' };

class KvmSession implements Session {
  /** The VMM layer: the model, answering KVM_EXIT_XEN on the VM's own memory. */
  private readonly vmm: XenModel;
  private readonly areaMap = new Map<string, number>();
  /** The VMM's eventfds that KVM signals for send ports (kvm.xen_evtchn_assign with eventfd). */
  private readonly eventfds = new Map<number, KvmEventfd>();
  /** Events the VMM layer handed to KVM during the current step (deliverByKernel). */
  private kernelDeliveries = 0;
  /**
   * KVM writes its own hypercall page on the MSR write (INTERCEPT_HCALL, as the session
   * starts); after a config without it the write copies the VMM's blob, and the guest
   * keeps calling the page it had (model/hypercall.ts wrmsr alike).
   */
  private kvmWritesHypercallPage = true;

  constructor(
    private readonly guest: GuestVm,
    private readonly setup: SessionSetup,
    private readonly xen: boolean,
    private readonly vendor: 'intel' | 'amd',
    /** KVM_XEN_HVM_CONFIG_EVTCHN_SEND is on: KVM can take IPI ports and the timer. */
    private readonly evtchnSend: boolean,
  ) {
    const d = setup.domains[0];
    this.vmm = new XenModel({
      flavor: 'kvm', cpu: vendor, xenVersion: setup.xenVersion, mode: setup.mode,
      domains: [{ id: d.id, vcpus: d.vcpus, memoryBytes: d.memoryBytes, privileged: d.privileged, limits: d.limits, memory: new VmMemory(guest, d.memoryBytes) }],
    });
  }

  private get domid(): number {
    return this.setup.domains[0].id;
  }

  /** Place shared_info, vcpu_info and the hypercall page as a VMM does at guest start. */
  async start(): Promise<void> {
    const d = this.setup.domains[0];
    // Without Xen support only plain-KVM cases run; they place no Xen areas.
    if (!this.xen) return;
    const dom = this.vmm.domain(d.id)!;
    this.guest.vm.xenSetAttr({ type: 'long_mode', longMode: this.setup.mode === 64 });
    this.guest.vm.xenSetAttr({ type: 'xen_version', version: (this.setup.xenVersion.major << 16) | this.setup.xenVersion.minor });
    // Each vCPU's Xen id is its index, as QEMU sets it (kvm_xen_init_vcpu): KVM's own
    // default is 0 for every vCPU, and in-kernel timers and polls check the id.
    this.guest.vcpus.forEach((v, i) => v.xenSetAttr({ type: 'vcpu_id', vcpuId: i }));
    if (d.sharedInfo !== null) {
      dom.sharedInfoGpa = d.sharedInfo;
      dom.areas.set('shared_info', d.sharedInfo);
      this.placeSharedInfo(d.sharedInfo);
    }
    // Through KVM only while KVM has a shared_info (the VMM may have taken it away: kvm.xen_set_attr).
    if (this.evtchnSend) dom.hostDelivery = (v, port) => this.deliverByKernel(kvmSharedInfoGpa(v.domain), v.id, port);
    // KVM writes the wallclock into each shared_info it is given (kvm_xen_shared_info_init).
    dom.kernelInitsSharedInfo = true;
    // KVM writes the runstate areas the VMM layer hands it (RUNSTATE_ADDR); its model must not.
    setKernelWritesRunstate(dom);
    if (d.hypercallPage !== null) {
      const r = await this.guest.run(0, [{ op: 'wrmsr', msr: 0x40000000, value: d.hypercallPage }]);
      if (r.status !== 'done' || r.results[0]?.status !== 'ok') {
        throw new DriverError(`setup: writing the hypercall MSR failed (${r.status}${r.results[0]?.fault ? `, fault ${r.results[0].fault.vector}` : ''})`, { code: 'EIO' });
      }
      for (let i = 0; i < this.guest.vcpus.length; i++) this.guest.setHypercallPage(i, d.hypercallPage);
      dom.hypercallPageGpa = d.hypercallPage;
      this.areaMap.set('hypercall_page', d.hypercallPage);
    }
  }

  /** KVM_XEN_ATTR_TYPE_SHARED_INFO plus the default vcpu_info slots of vCPUs that registered none. */
  private placeSharedInfo(gpa: number): void {
    this.guest.vm.xenSetAttr({ type: 'shared_info', gfn: BigInt(gpa >> 12) });
    const dom = this.vmm.domain(this.domid)!;
    for (let i = 0; i < Math.min(this.guest.vcpus.length, 32); i++) {
      if (dom.vcpus[i]?.vcpuInfoGpa != null) continue;
      this.guest.vcpus[i].xenSetAttr({ type: 'vcpu_info', gpa: BigInt(gpa + i * 64) });
    }
    this.areaMap.set('shared_info', gpa);
  }

  /**
   * An event the VMM layer raised, handed to KVM as QEMU hands it (set_port_pending ->
   * KVM_XEN_HVM_EVTCHN_SEND): the kernel sets the pending bit, the selector and the upcall,
   * and injects the vector. KVM needs shared_info for that; without one the model keeps it.
   * An event the kernel refuses with -EINVAL (Linux 6.1 for a vCPU without a vcpu_info in
   * KVM) is lost, as under QEMU: xen_evtchn_send_op and xen_evtchn_set_port do not look at
   * set_port_pending's result. The kernel answered, so the model does not set the bits.
   */
  private deliverByKernel(sharedInfo: number | null, vcpu: number, port: number): boolean {
    if (sharedInfo === null || vcpu >= this.guest.vcpus.length) return false;
    try {
      this.guest.vm.xenEvtchnSend(port, vcpu);
    } catch (e) {
      if (!(e instanceof DriverError)) throw e;
      if (e.syscall === undefined || e.code !== 'EINVAL') {
        throw new DriverError(`the VMM layer's KVM_XEN_HVM_EVTCHN_SEND of port ${port} to vCPU ${vcpu} failed: ${e.message}`, { code: e.code });
      }
    }
    this.kernelDeliveries++;
    return true;
  }

  private async runCommands(vcpu: number, cmds: GuestCommand[], timeoutMs?: number): Promise<{ result: CommandResult | undefined; results: CommandResult[]; outcome?: Outcome; logs: number[] }> {
    const r = await this.guest.run(vcpu, cmds, {
      timeoutMs,
      onXen: (exit) => this.serveXen(vcpu, exit.longmode !== 0, exit.cpl, exit.input, exit.params),
    });
    if (r.status === 'timeout') {
      this.guest.resetVcpu(vcpu);
      throw new DriverError(`vCPU ${vcpu}: the guest did not finish its commands in time (stopped with immediate_exit)`, { code: 'ETIMEDOUT' });
    }
    if (r.status === 'exit') {
      return { result: r.results[0], results: r.results, outcome: { fault: `exit:${r.exit?.reasonName ?? 'unknown'}`, out: { exit: r.exit?.reasonName ?? 'unknown' } }, logs: r.logs };
    }
    if (r.status === 'guest-fault') {
      this.guest.resetVcpu(vcpu);
      return { result: undefined, results: r.results, outcome: { fault: `guest-fault vector ${r.fault?.vector ?? '?'}` }, logs: r.logs };
    }
    return { result: r.results[0], results: r.results, logs: r.logs };
  }

  /** The VMM layer: answer a hypercall KVM did not handle, with the model's semantics. */
  private serveXen(vcpu: number, longmode: boolean, cpl: number, input: bigint, p: bigint[]): bigint {
    const dom = this.vmm.domain(this.domid)!;
    const v = dom.vcpu(vcpu)!;
    v.mode = longmode ? 64 : 32;
    v.cpl = cpl;
    const regs: Regs = longmode
      ? { rax: input, rdi: p[0], rsi: p[1], rdx: p[2], r10: p[3], r8: p[4], r9: p[5] }
      : { rax: input, rbx: p[0], rcx: p[1], rdx: p[2], rsi: p[3], rdi: p[4], rbp: p[5] };
    const before = dom.sharedInfoGpa;
    const widthBefore = dom.width;
    const vcpuInfoBefore = dom.vcpus.map((x) => x.vcpuInfoGpa);
    const vectorsBefore = upcallVectors(dom);
    const updateFlagBefore = vmAssistEnabled(dom, VMASST_TYPE.runstate_update_flag);
    const offloadBefore = offloadSnapshot(dom);
    const runstateBefore = runstateAreas(dom);
    try {
      return hypercall(this.vmm, v, regs).ret;
    } finally {
      v.cpl = 0;
      // HVM_PARAM_CALLBACK_IRQ latches the guest's width (Xen's hvm_latch_shinfo_size),
      // which KVM learns from the VMM: QEMU's handle_set_param calls xen_set_long_mode
      // (KVM_XEN_ATTR_TYPE_LONG_MODE) after it. The VMM layer's width follows KVM's
      // (kvm.xen_set_attr, the MSR write), so a change here is one KVM has not been told.
      if (dom.width !== widthBefore) this.guest.vm.xenSetAttr({ type: 'long_mode', longMode: dom.width === 64 });
      // The guest moved shared_info (XENMEM_add_to_physmap): tell KVM, as QEMU does.
      if (dom.sharedInfoGpa !== null && dom.sharedInfoGpa !== before) this.placeSharedInfo(dom.sharedInfoGpa);
      // VCPUOP_register_vcpu_info is the VMM's; KVM delivers to the new place once told
      // (KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO), as QEMU does.
      dom.vcpus.forEach((x, i) => {
        if (x.vcpuInfoGpa !== null && x.vcpuInfoGpa !== vcpuInfoBefore[i] && i < this.guest.vcpus.length) {
          this.guest.vcpus[i].xenSetAttr({ type: 'vcpu_info', gpa: BigInt(x.vcpuInfoGpa) });
        }
      });
      // VMASST_TYPE_runstate_update_flag is the VMM's; KVM follows it once told
      // (KVM_XEN_ATTR_TYPE_RUNSTATE_UPDATE_FLAG, Linux 6.2+), as QEMU tells it. Kernels
      // without the attribute (6.1) refuse it and always write the flag, whole-word.
      const updateFlag = vmAssistEnabled(dom, VMASST_TYPE.runstate_update_flag);
      if (updateFlag !== updateFlagBefore) {
        try {
          this.guest.vm.xenSetAttr({ type: 'runstate_update_flag', enabled: updateFlag });
        } catch (e) {
          if (!(e instanceof DriverError)) throw e;
        }
      }
      // IPI ports and VIRQ_TIMER the guest bound or closed: hand them to KVM or take them
      // back, as QEMU does (offload-live.ts).
      if (this.evtchnSend) applyOffload(this.guest, offloadBefore, offloadSnapshot(dom));
      // VCPUOP_register_runstate_memory_area is the VMM's; KVM writes the area once told
      // (KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADDR), as QEMU tells it (runstate-live.ts).
      for (const f of runstateForwarding(runstateBefore, runstateAreas(dom))) {
        if (f.vcpu < this.guest.vcpus.length) this.placeRunstate(f.vcpu, f.gpa);
      }
      // HVMOP_set_evtchn_upcall_vector and HVM_PARAM_CALLBACK_IRQ (vector type) are the
      // VMM's; KVM injects the vector once told, as QEMU tells it (upcall-live.ts).
      for (const a of upcallForwarding(vectorsBefore, upcallVectors(dom))) {
        try {
          if (a.kind === 'vm') this.guest.vm.xenSetAttr({ type: 'upcall_vector', vector: a.vector });
          else if (a.vcpu < this.guest.vcpus.length) this.guest.vcpus[a.vcpu].xenSetAttr({ type: 'upcall_vector', vector: a.vector });
        } catch (e) {
          // KVM refuses vectors 1..0x0f (-EINVAL); Xen accepted the parameter, so the guest's answer stands.
          if (!(e instanceof DriverError)) throw e;
        }
      }
    }
  }

  /** The guest command for one hypercall: through the hypercall page once there is one, else the CPU's own instruction. */
  private callCommand(nr: bigint, args: readonly bigint[], via: StepPlacement['via'], cpl3 = false): GuestCommand {
    const usePage = via === 'page' || (via === 'auto' && this.areaMap.has('hypercall_page'));
    return usePage
      ? { op: 'hypercall', nr: Number(nr & 0x7fn), args, cpl3 }
      : { op: via === 'vmcall' || (via === 'auto' && this.vendor === 'intel') ? 'vmcall' : 'vmmcall', rax: nr, args, cpl3 };
  }

  /**
   * evtchn.alloc_many: the guest's loop of EVTCHNOP_alloc_unbound, in queues of up to
   * GUEST_LAYOUT.maxCmds calls (one native crossing each). The struct's dom and
   * remote_dom are inputs only and the port is written back on success alone
   * (xen/common/event_channel.c, do_event_channel_op), so one struct serves every call
   * and holds the last port allocated. A queue runs to its end: the calls after a
   * failure fail the same way and change nothing.
   */
  private async allocMany(args: Record<string, unknown>, at: StepPlacement): Promise<Outcome> {
    const count = args.count as bigint;
    const scratch = Number(args.scratch as bigint);
    const remote = args.remote_dom === undefined ? DOMID_SELF : Number(args.remote_dom as bigint);
    const b = Buffer.alloc(8);
    b.writeUInt16LE(DOMID_SELF, 0);
    b.writeUInt16LE(remote & 0xffff, 2);
    this.guest.vm.write(scratch, b);
    // The port field of the struct: the last port allocated (0 before the first).
    const lastPort = () => BigInt(this.guest.vm.read(scratch + 4, 4).readUInt32LE(0));
    const call = this.callCommand(BigInt(HYPERVISOR.event_channel_op), [BigInt(EVTCHNOP.alloc_unbound), BigInt(scratch)], at.via);
    let allocated = 0n;
    while (allocated < count) {
      const { results, outcome } = await this.runCommands(at.vcpu, Array(Math.min(Number(count - allocated), GUEST_LAYOUT.maxCmds)).fill(call));
      if (outcome) return outcome;
      for (const r of results) {
        const fault = KvmSession.faultOf(r);
        if (fault) return { fault };
        if (r.retSigned !== 0n) return { ret: r.retSigned, out: { allocated, last: lastPort() } };
        allocated++;
      }
    }
    return { ret: 0n, out: { allocated, last: lastPort() } };
  }

  private static faultOf(r: CommandResult | undefined): string | undefined {
    if (r?.status !== 'fault') return undefined;
    const vec = r.fault?.vector ?? -1;
    return FAULT_NAMES[vec] ?? `vector ${vec}`;
  }

  async apply(action: Action, at: StepPlacement): Promise<Outcome> {
    this.kernelDeliveries = 0;
    const o = await this.applyAction(action, at);
    const served = o.servedBy ? o : { ...o, servedBy: defaultServedBy(action) };
    return this.kernelDeliveries ? { ...served, kernelDeliveries: this.kernelDeliveries } : served;
  }

  private async applyAction(action: Action, at: StepPlacement): Promise<Outcome> {
    if (at.dom !== this.domid) throw new DriverError(`the kvm target runs one domain (${this.domid}); step names ${at.dom}`, { code: 'EINVAL' });
    if (at.vcpu >= this.guest.vcpus.length) throw new DriverError(`no vCPU ${at.vcpu}`, { code: 'EINVAL' });
    switch (action.kind) {
      case 'check':
        return {};
      case 'write':
        for (const w of action.writes) this.guest.vm.write(w.gpa, Buffer.from(w.bytes));
        return {};
      case 'wrmsr': {
        const { result, outcome } = await this.runCommands(at.vcpu, [{ op: 'wrmsr', msr: action.msr, value: action.value }]);
        if (outcome) return outcome;
        const fault = KvmSession.faultOf(result);
        if (action.msr === 0x40000000) {
          // KVM latched the writer's width (kvm_xen_write_hypercall_page, whatever the page
          // index); the VMM layer lays its areas out by it.
          kvmLatchWidth(this.vmm.domain(this.domid)!, this.setup.mode, false);
          const page = Number(action.value & ~0xfffn);
          if (!fault && this.kvmWritesHypercallPage) {
            this.areaMap.set('hypercall_page', page);
            for (let i = 0; i < this.guest.vcpus.length; i++) this.guest.setHypercallPage(i, page);
          } else if (!fault && this.areaMap.get('hypercall_page') === page) {
            // A blob page copied over the page the guest calls through: its stubs are gone
            // (the blob is the VMM's bytes; in the fuzz, whatever the grants left there).
            // The guest calls with its own instruction from now on, which KVM takes exactly
            // as it takes the stubs' (it intercepts vmcall/vmmcall, not the page).
            this.areaMap.delete('hypercall_page');
          }
        }
        return { fault, servedBy: 'kernel' };
      }
      case 'hypercall': {
        if (action.regs && Object.keys(action.regs).length) {
          throw new DriverError('explicit registers are not supported by the kvm test guest', { code: 'ENOTSUP' });
        }
        for (const w of action.writes) this.guest.vm.write(w.gpa, Buffer.from(w.bytes));
        const cpl3 = at.cpl === 3;
        if (at.cpl !== 0 && !cpl3) throw new DriverError(`the kvm test guest runs at CPL 0 or 3, not ${at.cpl}`, { code: 'ENOTSUP' });
        const cmd = this.callCommand(BigInt(action.nr), action.args, at.via, cpl3);
        const { result, outcome } = await this.runCommands(at.vcpu, [cmd]);
        if (outcome) return outcome;
        const fault = KvmSession.faultOf(result);
        if (fault) return { fault };
        const out = action.out ? action.out.decode(new Uint8Array(this.guest.vm.read(action.out.gpa, action.out.size))) : undefined;
        return { ret: result!.retSigned, out, servedBy: result!.servedBy ?? 'kernel' };
      }
      case 'host':
        return this.host(action.op, action.args, at);
    }
  }

  private async host(op: string, args: Record<string, unknown>, at: StepPlacement): Promise<Outcome> {
    const n = (k: string) => Number(args[k] as bigint);
    switch (op) {
      case 'kvm.guest_log': {
        const { outcome, logs } = await this.runCommands(at.vcpu, [{ op: 'log', value: n('value') }]);
        return outcome ?? { out: { logs: logs.map(BigInt) } };
      }
      case 'kvm.guest_write': {
        const size = n('size') as 1 | 2 | 4 | 8;
        const { result, outcome } = await this.runCommands(at.vcpu, [{ op: 'write', addr: n('gpa'), size, value: args.value as bigint }]);
        return outcome ?? { fault: KvmSession.faultOf(result) };
      }
      case 'kvm.guest_read': {
        const size = n('size') as 1 | 2 | 4 | 8;
        const { result, outcome } = await this.runCommands(at.vcpu, [{ op: 'read', addr: n('gpa'), size }]);
        if (outcome) return outcome;
        const fault = KvmSession.faultOf(result);
        return fault ? { fault } : { out: { value: result!.ret } };
      }
      case 'kvm.guest_cpuid': {
        const { result, outcome } = await this.runCommands(at.vcpu, [{ op: 'cpuid', leaf: n('leaf'), subleaf: n('subleaf') }]);
        if (outcome) return outcome;
        const c = result!.cpuid!;
        return { out: { eax: BigInt(c.eax), ebx: BigInt(c.ebx), ecx: BigInt(c.ecx), edx: BigInt(c.edx) } };
      }
      case 'kvm.guest_wait_upcall': {
        const { outcome } = await this.runCommands(at.vcpu, [{ op: 'wait-upcall', count: n('count') }], n('timeout_ms'));
        return outcome ?? {};
      }
      case 'evtchn.host_send':
        // KVM_XEN_HVM_EVTCHN_SEND: the kernel sets the 2-level bits itself.
        return this.ioctlRet(() => this.guest.vm.xenEvtchnSend(n('port'), n('vcpu'), args.priority === undefined || args.priority === 0n ? undefined : n('priority')));
      case 'evtchn.vmm_inject': {
        // The VMM layer knows which ports are allocated and where each is bound, as QEMU
        // does; the kernel raises the port (KVM_XEN_HVM_EVTCHN_SEND), as under QEMU.
        const t = vmmInjectTarget(this.vmm.domain(this.domid)!, n('port'));
        if (!t) return { ret: -22n, servedBy: 'vmm' };
        return this.ioctlRet(() => this.guest.vm.xenEvtchnSend(t.port, t.vcpu, undefined));
      }
      case 'evtchn.alloc_many':
        return this.allocMany(args, at);
      case 'evtchn.take_upcalls': {
        const vi = this.vmm.domain(this.domid)!.vcpu(at.vcpu)!.vcpuInfoAddress();
        const r = await takeUpcallsLive(this.guest, at.vcpu, vi, n('count'), n('timeout_ms'));
        return { out: { taken: BigInt(r.taken), last_vector: BigInt(r.lastVector) }, servedBy: 'kernel' };
      }
      case 'sched.status': {
        // The kernel's view is the vCPU's mp_state (HALTED while KVM polls or blocks it);
        // SCHEDOP_block and SCHEDOP_shutdown reach the VMM layer, whose model state is the rest.
        const dom = this.vmm.domain(this.domid)!;
        const s = schedOf(dom.vcpu(at.vcpu)!);
        const d = domainSchedOf(dom);
        const halted = this.guest.vcpus[at.vcpu].getMpState() === MP_STATE.HALTED;
        return {
          out: {
            blocked: halted || s.blocked ? 1n : 0n,
            polling: halted || s.pollPort !== null ? 1n : 0n,
            shutdown: d.shuttingDown ? 1n : 0n,
            shutdown_code: BigInt(d.shutdownCode),
          },
        };
      }
      case 'evtchn.set_mask': {
        // A plain guest memory op on the shared_info mask bitmap (KVM has only 2-level channels).
        const dom = this.vmm.domain(this.domid)!;
        return guestSetMask(dom, n('port'), args.masked === undefined || args.masked !== 0n) ? {} : { fault: `port ${n('port')} has no mask bit` };
      }
      case 'evtchn.run_upcall':
        // Linux's 2-level upcall scan (xen_evtchn_handle_events) over the VM's own memory,
        // exactly as the model's guest does it, between two guest runs.
        return { out: { handled: runUpcall(this.vmm.domain(this.domid)!.vcpu(at.vcpu)!).map(BigInt) } };
      case 'runstate.host_set_addr': {
        const ret = this.placeRunstate(at.vcpu, BigInt.asUintN(64, args.gpa as bigint));
        return { ret, servedBy: 'kernel' };
      }
      case 'runstate.host_set_current':
      case 'runstate.host_set_data':
      case 'runstate.host_adjust': {
        const v = this.guest.vcpus[at.vcpu];
        const r = this.ioctlRet(() => v.xenSetAttr(op === 'runstate.host_set_current'
          ? { type: 'runstate_current', state: BigInt.asUintN(64, args.state as bigint) }
          : { type: op === 'runstate.host_set_data' ? 'runstate_data' : 'runstate_adjust', ...runstateDataArg(args) }));
        return { ...r, out: runstateOutOf(kvmRunstate(this.guest, at.vcpu)) };
      }
      case 'kvm.xen_get_attr': {
        let value = 0n;
        const r = this.ioctlRet(() => { value = kvmGetAttr(this.guest, at.vcpu, args.attr as KvmXenGetAttr); });
        return r.ret === 0n ? { ...r, out: { value } } : r;
      }
      case 'kvm.xen_evtchn_assign':
      case 'kvm.xen_evtchn_update':
      case 'kvm.xen_evtchn_deassign':
      case 'kvm.xen_evtchn_reset': {
        const eventfd = (args.eventfd as bigint | undefined) ?? 0n;
        const target = op === 'kvm.xen_evtchn_assign' ? assignTarget({ type: args.type as bigint, port: args.port as bigint, eventfd }) : 'port';
        const r = this.ioctlRet(() => this.guest.vm.xenSetAttr({
          type: 'evtchn', sendPort: n('send_port'), evtchnType: n('type'), flags: n('flags'),
          deliver: target !== 'port'
            ? { kind: 'eventfd', fd: target === 'fresh' ? this.newEventfd(n('send_port')) : NOT_A_DESCRIPTOR }
            : { kind: 'port', port: n('port'), vcpu: n('vcpu'), priority: n('priority') },
        }));
        // The VMM keeps its view of KVM's table, so what it hands over later stays in step.
        if (r.ret === 0n) {
          kvmEvtchnSetattr(this.vmm.domain(this.domid)!, {
            flags: args.flags as bigint, sendPort: args.send_port as bigint, type: args.type as bigint,
            port: args.port as bigint, vcpu: args.vcpu as bigint, priority: args.priority as bigint, eventfd,
          });
        }
        return r;
      }
      case 'kvm.eventfd_read': {
        const e = this.eventfds.get(n('send_port'));
        if (!e) return { fault: `the VMM registered no eventfd for send port ${n('send_port')}` };
        return { out: { count: e.read() ?? 0n }, servedBy: 'vmm' };
      }
      case 'kvm.xen_set_upcall_vector':
        return this.ioctlRet(() => this.guest.vcpus[at.vcpu].xenSetAttr({ type: 'upcall_vector', vector: n('vector') }));
      case 'kvm.xen_set_vcpu_id':
        return this.ioctlRet(() => this.guest.vcpus[at.vcpu].xenSetAttr({ type: 'vcpu_id', vcpuId: n('id') }));
      case 'kvm.xen_set_timer': {
        const r = this.ioctlRet(() => this.guest.vcpus[at.vcpu].xenSetAttr({
          type: 'timer', port: n('port'), priority: n('priority'), expiresNs: BigInt.asUintN(64, args.expires_ns as bigint),
        }));
        if (r.ret === 0n) vmmNoteKvmTimer(this.vmm, this.vmm.domain(this.domid)!.vcpu(at.vcpu)!, args.port as bigint, args.priority as bigint);
        return r;
      }
      case 'runstate.get':
        return { out: runstateOutOf(kvmRunstate(this.guest, at.vcpu)), servedBy: 'kernel' };
      case 'kvm.xen_set_attr': {
        // *_hva values name the guest page whose host mapping is meant (0 = none).
        const value = BigInt.asUintN(64, args.value as bigint);
        const hva = (gpa: bigint) => (gpa === 0n ? 0n : this.guest.vm.hva(0) + gpa);
        const v = this.guest.vcpus[at.vcpu];
        const attr = args.attr as KvmXenSetAttr;
        const r = this.ioctlRet(() => {
          if (attr === 'long_mode') this.guest.vm.xenSetAttr({ type: 'long_mode', longMode: value !== 0n });
          else if (attr === 'shared_info') this.guest.vm.xenSetAttr({ type: 'shared_info', gfn: value });
          else if (attr === 'shared_info_hva') this.guest.vm.xenSetAttr({ type: 'shared_info_hva', hva: hva(value) });
          else if (attr === 'vcpu_info_hva') v.xenSetAttr({ type: 'vcpu_info_hva', hva: hva(value) });
          else v.xenSetAttr({ type: attr, gpa: value });
        });
        // The VMM layer knows what it told KVM, as a VMM does: where KVM now keeps shared_info
        // and each vcpu_info (so where the events it raises land) and the width it latched,
        // by the same rules the reference applies (model/kvm-attr.ts kvmXenSetAttr).
        const vd = this.vmm.domain(this.domid)!;
        kvmXenSetAttr(vd, vd.vcpu(at.vcpu)!, attr, value);
        return r;
      }
      case 'kvm.xen_hvm_config': {
        // The blob is the VMM's memory: here the host mapping of the guest page(s) named.
        const pages = n('blob_pages');
        const hva = pages > 0 ? this.guest.vm.hva(n('blob_gpa')) : 0n;
        const r = this.ioctlRet(() => this.guest.vm.xenHvmConfig({
          flags: n('flags'), msr: n('msr'), blobAddr32: hva, blobAddr64: hva, blobSize32: pages, blobSize64: pages,
        }));
        if (r.ret === 0n) this.kvmWritesHypercallPage = (n('flags') & XEN_HVM_FLAG.INTERCEPT_HCALL) !== 0;
        return r;
      }
      case 'kvm.irqfd_send': {
        const route = { gsi: IRQFD_GSI, type: 'xen_evtchn' as const, port: n('port'), vcpu: n('vcpu'), priority: n('priority') };
        const r = this.ioctlRet(() => this.guest.vm.setGsiRouting([route]));
        if (r.ret !== 0n) return r;
        const efd = this.guest.system.createEventfd();
        try {
          this.guest.vm.irqfd(efd, IRQFD_GSI);
          efd.signal(1);
          // Detaching flushes the irqfd's deferred injection (irqfd_shutdown), so what the
          // signal raised is in guest memory when this returns.
          this.guest.vm.irqfd(efd, IRQFD_GSI, { deassign: true });
        } finally {
          efd.close();
        }
        return r;
      }
      case 'kvm.memslot_churn': {
        // One page just above guest RAM, in a slot of its own, there and gone again.
        const gpa = Math.ceil(this.guest.options.memoryBytes / 0x200000) * 0x200000 + 0x200000;
        this.guest.vm.addMemory(CHURN_SLOT, gpa, 4096);
        this.guest.vm.removeMemory(CHURN_SLOT);
        return { ret: 0n, servedBy: 'kernel' };
      }
      case 'runstate.race_check': {
        const o = raceArgs(args as Parameters<typeof raceArgs>[0]);
        if (typeof o === 'string') return { fault: o };
        const reader = n('reader');
        if (reader === at.vcpu || reader >= this.guest.vcpus.length) return { fault: `reader vCPU ${reader} must be another vCPU of the domain` };
        const area = this.areaMap.get(`runstate/${at.vcpu}`);
        if (area === undefined) return { fault: 'no runstate area registered for this vCPU' };
        const r = await raceLive(this.guest, { ...o, target: at.vcpu, reader, area, width: this.setup.mode });
        return { out: raceOut(r), servedBy: 'kernel' };
      }
    }
    throw new DriverError(`op ${op} is not implemented by the kvm target`, { code: 'ENOSYS' });
  }

  /**
   * RUNSTATE_ADDR for a vCPU, the VMM layer's model kept at KVM's area (a guest
   * registration later is then compared with it); where the area is, for memory paths
   * (runstate[N]) and the race; a failed set deactivates it.
   */
  private placeRunstate(vcpu: number, gpa: bigint): bigint {
    const ret = setRunstateAddr(this.guest, this.vmm.domain(this.domid)!.vcpu(vcpu)!, gpa);
    if (ret === 0n && gpa !== KVM_XEN_INVALID_GPA) this.areaMap.set(`runstate/${vcpu}`, Number(gpa));
    else this.areaMap.delete(`runstate/${vcpu}`);
    return ret;
  }

  /** A host ioctl whose errno is the step's result (as KVM's own checks answer it), not a harness fault. */
  private ioctlRet(fn: () => void): Outcome {
    return { ret: ioctlErrno(fn), servedBy: 'kernel' };
  }

  async read(dom: number, gpa: number, len: number): Promise<Uint8Array> {
    if (dom !== this.domid) throw new DriverError(`no domain ${dom} on the kvm target`, { code: 'EINVAL' });
    return this.guest.vm.bytes(gpa, len);
  }

  areas(dom: number): AreaView {
    if (dom !== this.domid) throw new DriverError(`no domain ${dom} on the kvm target`, { code: 'EINVAL' });
    const d = this.vmm.domain(dom)!;
    // Registrations the VMM layer served (vcpu_info, runstate, ...) are in the model's map.
    return { width: d.width, get: (k) => this.areaMap.get(k) ?? d.areas.get(k) };
  }

  /** A new eventfd of the VMM's for a send port (replacing the last one; KVM keeps its own reference). */
  private newEventfd(sendPort: number): number {
    this.eventfds.get(sendPort)?.close();
    const e = this.guest.system.createEventfd();
    this.eventfds.set(sendPort, e);
    return e.fd;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const e of this.eventfds.values()) e.close();
    // The next case need not wait for the kernel to tear this VM down.
    this.guest.close({ background: true });
  }
}

export class KvmDriver implements Driver {
  readonly name = 'kvm';
  private probed?: { caps: Capabilities; probe: KvmProbe; vendor: 'intel' | 'amd' };
  /** Sessions opened so far, and the next VM, made while the current case runs. */
  private sessions = 0;
  private spare?: Promise<PreparedVm | undefined>;

  /**
   * The VM made in advance, if there is one, and the next one started: from the second
   * session on (a driver that opens one session, as an isolated case's process does,
   * makes no VM it will not use). A failed prefetch only means the VM is made in place.
   */
  private nextPrepared(): Promise<PreparedVm | undefined> {
    const ready = this.spare ?? Promise.resolve(undefined);
    this.spare = ++this.sessions >= 2 ? GuestVm.prepare().catch(() => undefined) : undefined;
    return ready;
  }

  async probe(): Promise<Capabilities> {
    if (this.probed) return this.probed.caps;
    const addon = loadAddon();
    if (!addon.ok) throw new DriverError(`kvm target unavailable: ${addon.reason}; the model target still works (--target=model)`, { code: addon.code });
    const p = probeKvm();
    if (!p.ok) throw new DriverError(`kvm target unavailable: ${p.reason}`, { code: p.code, errno: p.errno });
    const vendor = hostVendor();
    const caps = kvmCapabilities(p, vendor);
    this.probed = { caps, probe: p, vendor: vendor ?? 'intel' };
    return caps;
  }

  async open(setup: SessionSetup): Promise<Session> {
    await this.probe();
    const { probe, vendor } = this.probed!;
    const d = setup.domains[0];
    if (setup.domains.length > 1) throw new DriverError('the kvm target runs one domain per case', { code: 'EUNSUPPORTED' });
    if (d.vcpus > GUEST_LAYOUT.maxVcpus) throw new DriverError(`the kvm test guest runs at most ${GUEST_LAYOUT.maxVcpus} vCPUs, the case asks for ${d.vcpus}`, { code: 'EUNSUPPORTED' });
    // The test guest owns low memory: its blocks end at this address.
    const reservedEnd = GUEST_LAYOUT.blockBase + d.vcpus * GUEST_LAYOUT.blockSize;
    for (const [what, gpa] of [['shared_info', d.sharedInfo], ['hypercall_page', d.hypercallPage], ['scratch', setup.scratch]] as const) {
      if (gpa !== null && gpa < reservedEnd) {
        throw new DriverError(`setup.${what} at 0x${gpa.toString(16)} overlaps the kvm test guest's ${d.vcpus} vCPU blocks (below 0x${reservedEnd.toString(16)})`, { code: 'EUNSUPPORTED' });
      }
    }
    const xen = probe.xenHvm !== 0;
    const prepared = await this.nextPrepared();
    const guest = GuestVm.create({
      prepared,
      vcpus: d.vcpus,
      memoryBytes: Math.max(d.memoryBytes, 8 << 20),
      mode: setup.mode,
      xen: xen ? { flags: XEN_HVM_FLAG.INTERCEPT_HCALL | (probe.xenHvm & XEN_HVM_FLAG.EVTCHN_SEND) } : undefined,
    });
    const s = new KvmSession(guest, setup, xen, vendor, xen && (probe.xenHvm & XEN_HVM_FLAG.EVTCHN_SEND) !== 0);
    try {
      await s.start();
    } catch (e) {
      guest.close();
      throw e;
    }
    return s;
  }
}
