// The test guest runner: Xen CPUID leaves and GuestVm, a VM with N vCPUs running the
// xconf test guest (guest.ts), one native crossing per batch of guest commands.
import { DriverError } from '../../errors.js';
import { BlockHeader, CommandResult, GUEST_LAYOUT, GUEST_STATE, GuestCommand, GuestImage, GuestMode, HDR, UpcallRecord, CR0, blockAddress, buildGdt, buildIdt, pageTablesFor, buildTss, checkMode, decodeBlockHeader, decodeResults, decodeUpcallRing, encodeBlockHeader, encodeCommands, guestRegs, guestSregs, loadGuestImage } from './guest.js';
import { openKvm } from './open.js';
import { XEN_HVM_FLAG, XEN_HYPERCALL_MSR, MP_STATE, NativeExit, argErr, checkU32, checkU64OrNeg, PAGE } from './native.js';
import { Sregs, CpuidEntry, CPUID_FLAG_SIGNIFICANT_INDEX, U64Like } from './abi.js';
import { KvmSystem, KvmVm, XenHypercallExit, DEFAULT_TIMEOUT_MS, KvmVcpu } from './resources.js';

// ------------------------------------------------------------ Xen CPUID --

export interface XenCpuidOptions {
  /** XENVER_version value for leaf 1 (major << 16 | minor). Default 4.17. */
  version?: number;
  /** Hypercall MSR index reported in leaf 2. */
  msr?: number;
  /** Xen vCPU id reported in leaf 4 EBX. */
  vcpuId?: number;
}

/** Xen's CPUID leaves at 0x40000000..0x40000004 ("XenVMMXenVMM"). */
export function xenCpuidLeaves(o: XenCpuidOptions = {}): CpuidEntry[] {
  const base = 0x40000000;
  const e = (fn: number, eax: number, ebx = 0, ecx = 0, edx = 0, index = 0, flags = 0): CpuidEntry => ({
    function: fn, index, flags, eax, ebx, ecx, edx,
  });
  const HVM_VCPU_ID_PRESENT = 1 << 3;
  const HVM_UPCALL_VECTOR = 1 << 6;
  return [
    e(base, base + 4, 0x566e6558, 0x65584d4d, 0x4d4d566e),
    e(base + 1, checkU32(o.version ?? 0x00040011, 'xen version')),
    e(base + 2, 1, checkU32(o.msr ?? XEN_HYPERCALL_MSR, 'msr')),
    e(base + 3, 0, 0, 0, 0, 0, CPUID_FLAG_SIGNIFICANT_INDEX),
    e(base + 3, 0, 0, 0, 0, 1, CPUID_FLAG_SIGNIFICANT_INDEX),
    e(base + 3, 0, 0, 0, 0, 2, CPUID_FLAG_SIGNIFICANT_INDEX),
    e(base + 4, HVM_VCPU_ID_PRESENT | HVM_UPCALL_VECTOR, checkU32(o.vcpuId ?? 0, 'vcpuId')),
  ];
}

/**
 * The CPUID table for one vCPU: KVM's supported leaves with the APIC id set,
 * and with `xen` the Xen leaves at 0x40000000 (KVM's own moved to 0x40000100).
 */
export function vcpuCpuid(supported: readonly CpuidEntry[], apicId: number, xen?: XenCpuidOptions): CpuidEntry[] {
  checkU32(apicId, 'apicId', 0xff);
  const out: CpuidEntry[] = [];
  for (const s of supported) {
    const e = { ...s };
    if (e.function === 1) e.ebx = ((e.ebx & 0x00ffffff) | (apicId << 24)) >>> 0;
    if (e.function === 0xb || e.function === 0x1f) e.edx = apicId;
    if (xen && e.function >= 0x40000000 && e.function < 0x40000100) {
      e.function += 0x100;
      if (e.function === 0x40000100 && e.eax >= 0x40000000 && e.eax < 0x40000100) e.eax += 0x100;
    }
    out.push(e);
  }
  if (xen) out.push(...xenCpuidLeaves(xen));
  return out;
}

// ------------------------------------------------------- the test guest --

export interface XenSetup {
  /** kvm_xen_hvm_config.flags (default INTERCEPT_HCALL). */
  flags?: number;
  /** Hypercall MSR index (default 0x40000000). */
  msr?: number;
  /** Add the Xen CPUID leaves (default true). */
  cpuid?: boolean;
  version?: number;
}

export interface GuestVmOptions {
  vcpus?: number;
  /** Guest RAM at gpa 0 (default 8 MiB; at least 4 MiB, below 3 GiB). */
  memoryBytes?: number;
  mode?: GuestMode;
  /** Configure Xen HVM emulation (needs KVM_CAP_XEN_HVM). */
  xen?: XenSetup;
  /** In-kernel irqchip with LAPIC (default true). */
  irqchip?: boolean;
  /** Default per-run timeout (ms). */
  timeoutMs?: number;
  /** Device path (default /dev/kvm). */
  path?: string;
  /** An empty VM made in advance (GuestVm.prepare()); the guest owns it and its /dev/kvm handle from here. */
  prepared?: PreparedVm;
}

/** An empty VM and the /dev/kvm handle that made it. */
export interface PreparedVm {
  system: KvmSystem;
  vm: KvmVm;
  /** Done already: KVM_SET_TSS_ADDR, the in-kernel irqchip, and RAM of this size in slot 0. */
  setup?: { irqchip: boolean; memoryBytes: number };
}

/** Guest RAM a prepared VM gets unless told otherwise (a case's default memory size). */
export const PREPARED_MEMORY_BYTES = 16 << 20;
/** Guest memory the test guest writes as it is set up (IDT, page tables, image, vCPU blocks 0-1): faulted in while the VM is prepared. */
const PREFAULT_BYTES = blockAddress(2);

/** The guest image of a mode, its IDT and the page tables: read and built once per process. */
const constants = new Map<GuestMode, ReturnType<typeof loadConstants>>();
function loadConstants(mode: GuestMode) {
  const img = loadGuestImage(mode);
  return img.ok ? { ok: true as const, image: img.image, idt: buildIdt(img.image), pageTables: pageTablesFor(mode) } : img;
}
function guestConstants(mode: GuestMode): ReturnType<typeof loadConstants> {
  let c = constants.get(mode);
  if (c === undefined || !c.ok) constants.set(mode, (c = loadConstants(mode)));
  return c;
}

/**
 * Whether this KVM runs a 32-bit guest with paging. Linux KVM does; a KVM that hands
 * KVM_SET_SREGS's CR0 back without PG in protected mode (some paravirtual hosts' KVM,
 * whose vCPU then no longer runs) gets the 32-bit guest unpaged: the same identity map,
 * but UNMAPPED_VA reads as memory. Probed once per device on a VM of its own.
 */
const paging32 = new WeakMap<KvmSystem, boolean>();
function pages32(system: KvmSystem): boolean {
  let ok = paging32.get(system);
  if (ok === undefined) {
    using vm = system.createVm();
    using v = vm.createVcpu(0);
    v.setSregs(guestSregs(v.getSregs(), 32, 0));
    ok = (v.getSregs().cr0 & CR0.PG) !== 0n;
    paging32.set(system, ok);
  }
  return ok;
}

/** KVM_GET_SUPPORTED_CPUID of the default device: the same for every VM of a process. */
let defaultSupportedCpuid: CpuidEntry[] | undefined;

export interface XenCallContext {
  vcpu: number;
  /** Index of the command that made the call. */
  command: number;
  guest: GuestVm;
}

export interface BatchOptions {
  timeoutMs?: number;
  /** Serve a KVM_EXIT_XEN hypercall: return rax (-38 = -ENOSYS if absent). */
  onXen?: (exit: XenHypercallExit, ctx: XenCallContext) => U64Like | Promise<U64Like>;
  /** Called when the guest yields; the batch continues afterwards. */
  onYield?: (tag: number, ctx: { vcpu: number; command: number; guest: GuestVm }) => void | Promise<void>;
  /** Run on a pool thread (needed when several vCPUs must run at once). */
  concurrent?: boolean;
}

export interface BatchResult {
  /** 'done': every command ran; the others stop the batch early. */
  status: 'done' | 'timeout' | 'guest-fault' | 'exit';
  vcpu: number;
  generation: number;
  results: CommandResult[];
  logs: number[];
  /** KVM_EXIT_XEN hypercalls the VMM layer served during the batch. */
  xenExits: Array<XenHypercallExit & { command: number; result: bigint }>;
  /** Native crossings (run calls) and KVM_RUN calls made. */
  crossings: number;
  kvmRuns: number;
  fault?: BlockHeader['lastFault'];
  exit?: { reason: number; reasonName: string; detail: NativeExit };
  upcallCount: number;
}

export const XEN_ENOSYS = -38n;

/**
 * A VM running the xconf test guest on every vCPU. Build with
 * `GuestVm.create()`; run command queues with run()/runAll(); close() it.
 */
export class GuestVm implements Disposable {
  private generation: number[] = [];
  private stale: boolean[] = [];
  private constructor(
    readonly system: KvmSystem,
    readonly vm: KvmVm,
    readonly vcpus: KvmVcpu[],
    readonly mode: GuestMode,
    readonly image: GuestImage,
    readonly options: Required<Pick<GuestVmOptions, 'irqchip' | 'timeoutMs' | 'memoryBytes'>> & { xen?: XenSetup },
    private readonly initialSregs: Sregs[],
  ) {
    this.generation = vcpus.map(() => 0);
    this.stale = vcpus.map(() => false);
  }

  /**
   * An empty VM made off the JavaScript thread, for a later create({ prepared }): a VMM
   * that runs one guest after another has the next VM made while the current one runs.
   */
  static async prepare(path?: string, memoryBytes = PREPARED_MEMORY_BYTES): Promise<PreparedVm> {
    const opened = openKvm(path);
    if (!opened.ok) throw new DriverError(opened.reason, { code: opened.code, errno: opened.errno, syscall: 'open' });
    try {
      const vm = await opened.kvm.createVmAsync(0, { tssAddr: GUEST_LAYOUT.kvmTssAddr, irqchip: true, memoryBytes, prefault: PREFAULT_BYTES });
      return { system: opened.kvm, vm, setup: { irqchip: true, memoryBytes } };
    } catch (e) {
      opened.kvm.close();
      throw e;
    }
  }

  /** Create the VM. Environment problems throw DriverError with a reason. */
  static create(opts: GuestVmOptions = {}): GuestVm {
    const mode = opts.mode ?? 64;
    checkMode(mode);
    const n = opts.vcpus ?? 1;
    checkU32(n, 'vcpus', GUEST_LAYOUT.maxVcpus);
    if (n < 1) argErr('vcpus must be at least 1');
    const memoryBytes = opts.memoryBytes ?? 8 << 20;
    if (!Number.isSafeInteger(memoryBytes) || memoryBytes < 4 << 20 || memoryBytes > 3 * 2 ** 30 || memoryBytes % PAGE !== 0) {
      argErr('memoryBytes must be a multiple of 4096 in 4 MiB..3 GiB');
    }
    const irqchip = opts.irqchip ?? true;
    const timeoutMs = checkU32(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs', 86_400_000);
    const img = guestConstants(mode);
    if (!img.ok) throw new DriverError(img.reason, { code: 'ENOGUEST' });
    let system: KvmSystem;
    let vm: KvmVm | undefined;
    let done: PreparedVm['setup'];
    if (opts.prepared && (opts.prepared.setup === undefined || opts.prepared.setup.irqchip === irqchip)) {
      ({ system, vm, setup: done } = opts.prepared);
    } else {
      // A prepared VM set up for another irqchip choice is of no use: made afresh.
      if (opts.prepared) {
        opts.prepared.vm.close();
        opts.prepared.system.close();
      }
      const opened = openKvm(opts.path);
      if (!opened.ok) throw new DriverError(opened.reason, { code: opened.code, errno: opened.errno, syscall: 'open' });
      system = opened.kvm;
    }
    try {
      vm ??= system.createVm();
      if (!done) {
        vm.setTssAddr(GUEST_LAYOUT.kvmTssAddr);
        if (irqchip) vm.createIrqchip();
      }
      const xen = opts.xen;
      if (xen && system.xenHvmCaps() === 0) {
        throw new DriverError('KVM_CAP_XEN_HVM is 0: this kernel has no Xen HVM emulation (CONFIG_KVM_XEN), so a Xen guest cannot be set up', {
          code: 'ENOTSUP',
          syscall: 'ioctl(KVM_CHECK_EXTENSION)',
        });
      }
      if (xen) {
        vm.xenHvmConfig({ flags: xen.flags ?? XEN_HVM_FLAG.INTERCEPT_HCALL, msr: xen.msr ?? XEN_HYPERCALL_MSR });
      }
      if (done?.memoryBytes !== memoryBytes) {
        if (done) vm.removeMemory(0);
        vm.addMemory(0, 0, memoryBytes);
      }
      vm.write(GUEST_LAYOUT.pml4, img.pageTables);
      vm.write(GUEST_LAYOUT.idt, img.idt);
      vm.write(GUEST_LAYOUT.imageBase, img.image.bytes);
      // Until a hypercall page is written, calling it hits int3 (#BP), as in
      // Xen's page before its stubs are filled in.
      vm.write(GUEST_LAYOUT.hypercallPage, Buffer.alloc(PAGE, 0xcc));
      const supported = opts.path === undefined ? (defaultSupportedCpuid ??= system.supportedCpuid()) : system.supportedCpuid();
      const vcpus: KvmVcpu[] = [];
      const sregsList: Sregs[] = [];
      for (let i = 0; i < n; i++) {
        const block = blockAddress(i);
        vm.write(block, encodeBlockHeader({ vcpu: i, mode, lapic: irqchip }));
        vm.write(block + GUEST_LAYOUT.gdt, buildGdt(block));
        vm.write(block + GUEST_LAYOUT.tss, buildTss(block, mode));
        const v = vm.createVcpu(i);
        vcpus.push(v);
        const xenCpuid = xen && xen.cpuid !== false ? { version: xen.version, msr: xen.msr ?? XEN_HYPERCALL_MSR, vcpuId: i } : undefined;
        v.setCpuid(vcpuCpuid(supported, i, xenCpuid));
        let s = guestSregs(v.getSregs(), mode, i);
        if (mode === 32 && !pages32(system)) s = { ...s, cr0: s.cr0 & ~(CR0.PG | CR0.WP), cr3: 0n, cr4: 0n };
        v.setSregs(s);
        sregsList.push(s);
        v.setRegs(guestRegs(img.image, i));
        if (irqchip && i > 0) v.setMpState(MP_STATE.RUNNABLE);
      }
      return new GuestVm(system, vm, vcpus, mode, img.image, { irqchip, timeoutMs, memoryBytes, xen }, sregsList);
    } catch (e) {
      vm?.close();
      system.close();
      throw e;
    }
  }

  private blockBuf(i: number, off: number, len: number): Buffer {
    return this.vm.read(blockAddress(i) + off, len);
  }

  header(vcpu: number): BlockHeader {
    this.checkVcpu(vcpu);
    return decodeBlockHeader(this.blockBuf(vcpu, 0, HDR.size));
  }

  /** Upcalls recorded by vCPU `vcpu`'s handler (the last 64), oldest first. */
  upcalls(vcpu: number): UpcallRecord[] {
    const h = this.header(vcpu);
    const ring = this.blockBuf(vcpu, GUEST_LAYOUT.upcallRing, GUEST_LAYOUT.upcallRingEntries * GUEST_LAYOUT.upcallRecordSize);
    return decodeUpcallRing(ring, h.upcallCount);
  }

  /** Set the vcpu_info the upcall handler snapshots, and what it then does. */
  setUpcallWatch(vcpu: number, watchGpa: number, flags?: number): void {
    this.checkVcpu(vcpu);
    const b = Buffer.alloc(12);
    b.writeUInt32LE(checkU32(flags ?? 5, 'flags', 7), 0);
    b.writeBigUInt64LE(BigInt(checkU32(watchGpa, 'watch gpa')), 4);
    const base = blockAddress(vcpu);
    this.vm.write(base + HDR.upcallFlags, b.subarray(0, 4));
    this.vm.write(base + HDR.upcallWatch, b.subarray(4, 12));
  }

  /** Where the guest calls the hypercall page (default GUEST_LAYOUT.hypercallPage). */
  setHypercallPage(vcpu: number, gpa: number): void {
    this.checkVcpu(vcpu);
    if (!Number.isInteger(gpa) || gpa <= 0 || gpa % PAGE !== 0 || gpa + PAGE > this.options.memoryBytes) {
      argErr(`hypercall page 0x${gpa.toString(16)} must be a page inside guest RAM`);
    }
    this.vm.writeU64(blockAddress(vcpu) + HDR.hcallPage, gpa);
  }

  private checkVcpu(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.vcpus.length) argErr(`vCPU ${i} does not exist (this VM has ${this.vcpus.length})`);
  }

  /** Put vCPU `vcpu` back at the guest's entry (after a timeout or exit left a batch unfinished). */
  resetVcpu(vcpu: number): void {
    this.checkVcpu(vcpu);
    const v = this.vcpus[vcpu];
    v.setSregs(this.initialSregs[vcpu]);
    v.setRegs(guestRegs(this.image, vcpu));
    // A vCPU stopped in HLT is still halted in the in-kernel LAPIC's view.
    if (this.options.irqchip) v.setMpState(MP_STATE.RUNNABLE);
    this.stale[vcpu] = false;
  }

  /** Run one batch of commands on one vCPU and decode the results. */
  async run(vcpu: number, commands: readonly GuestCommand[], opts: BatchOptions = {}): Promise<BatchResult> {
    this.checkVcpu(vcpu);
    if (this.stale[vcpu]) {
      throw new DriverError(`vCPU ${vcpu} stopped in the middle of a batch; call resetVcpu(${vcpu}) first`, { code: 'ESTALE' });
    }
    const records = encodeCommands(commands, this.mode);
    const timeoutMs = checkU32(opts.timeoutMs ?? this.options.timeoutMs, 'timeoutMs', 86_400_000);
    const base = blockAddress(vcpu);
    const gen = (this.generation[vcpu] = (this.generation[vcpu] + 1) & 0xffffff || 1);
    this.vm.write(base + GUEST_LAYOUT.cmds, records);
    this.vm.write(base + GUEST_LAYOUT.results, Buffer.alloc(commands.length * GUEST_LAYOUT.resultSize));
    const hdr = Buffer.alloc(8);
    hdr.writeUInt32LE(commands.length, 0);
    hdr.writeUInt32LE(gen, 4);
    this.vm.write(base + HDR.count, hdr);

    const v = this.vcpus[vcpu];
    const runOpts = { timeoutMs, portBase: GUEST_LAYOUT.portBase };
    const logs: number[] = [];
    const xenExits: BatchResult['xenExits'] = [];
    const vmmServed = new Set<number>();
    let crossings = 0;
    let kvmRuns = 0;
    let status: BatchResult['status'];
    let exitInfo: BatchResult['exit'];
    for (;;) {
      const r = opts.concurrent ? await v.runAsync(runOpts) : v.run(runOpts);
      crossings++;
      kvmRuns += r.runs;
      logs.push(...r.logs);
      if (r.kind === 'done') {
        status = 'done';
        break;
      }
      if (r.kind === 'yield') {
        if (opts.onYield) await opts.onYield(r.tag, { vcpu, command: this.vm.readU32(base + HDR.cur), guest: this });
        continue;
      }
      if (r.kind === 'xen') {
        const command = this.vm.readU32(base + HDR.cur);
        vmmServed.add(command);
        const answer = opts.onXen ? opts.onXen(r.xen, { vcpu, command, guest: this }) : XEN_ENOSYS;
        // A synchronous answer goes straight back in: no microtask turn per exit.
        const result = checkU64OrNeg(answer instanceof Promise ? await answer : answer, 'onXen result');
        xenExits.push({ ...r.xen, command, result });
        v.setXenResult(result);
        continue;
      }
      if (r.kind === 'guest-fault') {
        status = 'guest-fault';
        break;
      }
      if (r.kind === 'timeout') {
        status = 'timeout';
        this.stale[vcpu] = true;
        break;
      }
      status = 'exit';
      exitInfo = { reason: r.reason, reasonName: r.reasonName, detail: r.detail };
      this.stale[vcpu] = true;
      break;
    }
    const h = this.header(vcpu);
    const results = decodeResults(
      this.vm.read(base + GUEST_LAYOUT.results, commands.length * GUEST_LAYOUT.resultSize),
      commands,
      this.mode,
      gen,
    );
    for (const res of results) {
      if ((res.op === 'hypercall' || res.op === 'vmcall' || res.op === 'vmmcall') && res.status !== 'not-run') {
        res.servedBy = vmmServed.has(res.index) ? 'vmm' : 'kernel';
      }
    }
    const out: BatchResult = {
      status,
      vcpu,
      generation: gen,
      results,
      logs,
      xenExits,
      crossings,
      kvmRuns,
      upcallCount: h.upcallCount,
    };
    if (status === 'guest-fault' || h.state === GUEST_STATE.fatal) out.fault = h.lastFault;
    if (exitInfo) out.exit = exitInfo;
    return out;
  }

  /** Run one queue per vCPU at the same time (each on a pool thread). */
  async runAll(queues: ReadonlyArray<readonly GuestCommand[]>, opts: BatchOptions = {}): Promise<BatchResult[]> {
    if (queues.length > this.vcpus.length) argErr(`${queues.length} queues for ${this.vcpus.length} vCPUs`);
    const pool = Number(process.env.UV_THREADPOOL_SIZE ?? 4) || 4;
    if (queues.length > pool) {
      argErr(`runAll of ${queues.length} vCPUs needs UV_THREADPOOL_SIZE >= ${queues.length} (it is ${pool})`);
    }
    return Promise.all(queues.map((q, i) => this.run(i, q, { ...opts, concurrent: true })));
  }

  /** Close the VM (`background`: let the kernel's teardown finish on a thread of its own, KvmVm.closeInBackground). */
  close(opts: { background?: boolean } = {}): void {
    try {
      if (!this.vm.closed) {
        if (opts.background) this.vm.closeInBackground();
        else this.vm.close();
      }
    } finally {
      this.system.close();
    }
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Create a guest VM, run one queue on vCPU 0, close it, and return the results. */
export async function runGuestQueue(
  commands: readonly GuestCommand[],
  opts: GuestVmOptions & BatchOptions = {},
): Promise<BatchResult> {
  using g = GuestVm.create(opts);
  return await g.run(0, commands, opts);
}
