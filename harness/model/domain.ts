// The model's machine: domains, their vCPUs and guest memory, and a
// deterministic clock. Subsystem state (event channels, grant tables, runstate,
// timers) lives beside its subsystem's file, keyed by Domain or Vcpu objects,
// so this file stays the shared core. Xen's equivalents: struct domain and
// struct vcpu in xen/include/xen/sched.h.

import { GuestMemory, PAGE_SIZE } from './guest-memory.js';
import { XEN_LEGACY_MAX_VCPUS, VCPU_INFO_SIZE, type Width } from './memory-layout.js';
import { isIssuedVariant, type ModelVariant } from './variant.js';

/** shared_info's contents before it is first placed (never written to: a store copies from it). */
const ZERO_PAGE = new Uint8Array(PAGE_SIZE);

export const DOMID_SELF = 0x7ff0;
export const DOMID_IO = 0x7ff1;
export const DOMID_XEN = 0x7ff2;
export const DOMID_COW = 0x7ff3;
export const DOMID_INVALID = 0x7ff4;
export const DOMID_ANY = 0x7ff5;
export const DOMID_IDLE = 0x7fff;
export const DOMID_FIRST_RESERVED = 0x7ff0;

/** Which implementation's documented behaviour the model follows where Xen and KVM differ. */
export type Flavor = 'xen' | 'kvm';
export type CpuVendor = 'intel' | 'amd';

export interface DomainConfig {
  id: number;
  vcpus: number;
  memoryBytes: number;
  privileged: boolean;
  /** Free-form per-subsystem limits (max_evtchn_port, max_grant_frames, ...). */
  limits: Record<string, number>;
  /** Guest memory to use instead of the model's own (a live VM's, for the kvm target's VMM layer). */
  memory?: GuestMemory;
}

export interface ModelConfig {
  flavor: Flavor;
  cpu: CpuVendor;
  xenVersion: { major: number; minor: number; extra: string };
  /** Initial guest execution mode of every vCPU. */
  mode: Width;
  domains: DomainConfig[];
  /** A deliberately broken variant (selfcheck only; see variant.ts). */
  variant?: ModelVariant;
}

export class Vcpu {
  /** Current execution mode (64-bit long mode or 32-bit protected mode). */
  mode: Width;
  /** Current privilege level of the code issuing hypercalls. */
  cpl = 0;
  /** vcpu_info registered with VCPUOP_register_vcpu_info, or null for the shared_info slot. */
  vcpuInfoGpa: number | null = null;
  online = true;

  constructor(readonly domain: Domain, readonly id: number, mode: Width) {
    this.mode = mode;
  }

  /** Where this vCPU's vcpu_info lives now, or null if it has none (id >= 32, nothing registered). */
  vcpuInfoAddress(): number | null {
    if (this.vcpuInfoGpa !== null) return this.vcpuInfoGpa;
    const si = this.domain.sharedInfoGpa;
    if (si === null || this.id >= XEN_LEGACY_MAX_VCPUS) return null;
    return si + this.id * VCPU_INFO_SIZE;
  }
}

export class Domain {
  readonly memory: GuestMemory;
  readonly vcpus: Vcpu[];
  /** Latched shared_info format: set on the hypercall MSR write (hvm_latch_shinfo_size). */
  width: Width;
  sharedInfoGpa: number | null = null;
  hypercallPageGpa: number | null = null;
  /** VM-assist bits enabled with vm_assist (bit 5 = runstate_update_flag). */
  vmAssist = 0;
  /** Guest-visible placements of ABI areas: `name` or `name/index` -> gpa. */
  readonly areas = new Map<string, number>();
  dying = false;
  /** xen_domain_handle_t, the toolstack-assigned UUID: 16 bytes, here derived from the domid. */
  readonly handle: Uint8Array;
  /**
   * Set by a driver whose kernel delivers 2-level events for the VMM, as QEMU hands them
   * to KVM with KVM_XEN_HVM_EVTCHN_SEND (hw/i386/kvm/xen_evtchn.c, set_port_pending):
   * the port's pending bit, selector and upcall are then the kernel's to set. It answers
   * false where it cannot take the event (the model then sets the bits itself). Never
   * set on the model's own targets.
   */
  hostDelivery: ((v: Vcpu, port: number) => boolean) | null = null;
  /**
   * Set by a driver whose kernel initialises shared_info itself (KVM's
   * kvm_xen_shared_info_init, run on the VMM's KVM_XEN_ATTR_TYPE_SHARED_INFO): the VMM
   * layer then leaves the wallclock to it. Never set on the model's own targets.
   */
  kernelInitsSharedInfo = false;

  constructor(readonly model: XenModel, readonly config: DomainConfig) {
    this.handle = new Uint8Array(16);
    this.handle[14] = (config.id >> 8) & 0xff;
    this.handle[15] = config.id & 0xff;
    this.memory = config.memory ?? new GuestMemory(config.memoryBytes);
    this.width = model.config.mode;
    this.vcpus = Array.from({ length: config.vcpus }, (_, i) => new Vcpu(this, i, model.config.mode));
  }

  get id(): number {
    return this.config.id;
  }

  get privileged(): boolean {
    return this.config.privileged;
  }

  limit(name: string, fallback: number): number {
    return this.config.limits[name] ?? fallback;
  }

  vcpu(id: number): Vcpu | undefined {
    return Number.isInteger(id) && id >= 0 ? this.vcpus[id] : undefined;
  }

  /** Place (or move) shared_info at a guest frame, as XENMEM_add_to_physmap(XENMAPSPACE_shared_info) does. */
  placeSharedInfo(gpa: number): void {
    if (gpa % PAGE_SIZE !== 0) throw new RangeError('shared_info must be page aligned');
    const old = this.sharedInfoGpa;
    // The page is Xen's own: moving it keeps its contents. Xen removes the frame it left
    // from the physmap, a hole (xen/arch/x86/mm.c xenmem_add_to_physmap_one: "Unmap from
    // old location"; real Xen 4.17 then reads ~0 there). Under KVM the VMM's overlay
    // page moves and the guest's RAM below shows again (zeroes, as it was never used).
    const contents = old === null ? ZERO_PAGE : this.memory.read(old, PAGE_SIZE);
    if (old !== null && old !== gpa) {
      if (this.model.config.flavor === 'xen') this.memory.unmapFrame(old / PAGE_SIZE);
      else this.memory.fill(old, PAGE_SIZE, 0);
    }
    this.memory.mapFrame(gpa / PAGE_SIZE);
    this.memory.write(gpa, contents);
    this.sharedInfoGpa = gpa;
    this.areas.set('shared_info', gpa);
    for (const h of modelHooks.sharedInfoPlaced) h(this, gpa);
  }
}

/**
 * Subsystem hooks, registered once when a subsystem module is loaded (the
 * hypercall table imports every subsystem), and called for every model.
 */
export const modelHooks = {
  /** After the clock moves; timers fire from here. */
  advance: [] as Array<(model: XenModel, from: bigint, to: bigint) => void>,
  /** When a domain is destroyed; subsystems release what it held. */
  destroy: [] as Array<(model: XenModel, d: Domain) => void>,
  /** Before a vCPU runs guest code (a hypercall, an MSR write): KVM delivers what it held. */
  guestEntry: [] as Array<(v: Vcpu) => void>,
  /** After an exit KVM handled in-kernel, before the vCPU goes back into the guest: KVM delivers what it held. */
  inKernelExit: [] as Array<(v: Vcpu) => void>,
  /** After shared_info is placed or moved (XENMEM_add_to_physmap, or the setup's placement). */
  sharedInfoPlaced: [] as Array<(d: Domain, gpa: number) => void>,
};

/** A vCPU is about to run guest code: what the hypervisor held for it is delivered at this entry. */
export function enterGuest(v: Vcpu): void {
  for (const h of modelHooks.guestEntry) h(v);
}

export class XenModel {
  readonly domains = new Map<number, Domain>();
  /** Xen system time in ns (the clock of vcpu_time_info.system_time); deterministic. */
  now = 0n;

  constructor(readonly config: ModelConfig) {
    if (config.variant !== undefined && !isIssuedVariant(config.variant)) throw new TypeError('model variants are built by the selfcheck only');
    for (const dc of config.domains) {
      if (this.domains.has(dc.id)) throw new RangeError(`duplicate domain id ${dc.id}`);
      this.domains.set(dc.id, new Domain(this, dc));
    }
  }

  get flavor(): Flavor {
    return this.config.flavor;
  }

  domain(id: number): Domain | undefined {
    return this.domains.get(id);
  }

  /** Resolve a domid argument the way rcu_lock_domain_by_any_id does (DOMID_SELF allowed). */
  lookupDomain(caller: Domain, domid: number): Domain | undefined {
    if (domid === DOMID_SELF) return caller;
    return this.domains.get(domid);
  }

  advance(ns: bigint): void {
    if (ns < 0n) throw new RangeError('time cannot go backwards');
    const from = this.now;
    this.now += ns;
    for (const h of modelHooks.advance) h(this, from, this.now);
  }

  destroyDomain(id: number): void {
    const d = this.domains.get(id);
    if (!d) return;
    d.dying = true;
    for (const h of modelHooks.destroy) h(this, d);
    this.domains.delete(id);
  }
}
