// The descriptor-owning resources: /dev/kvm, a VM, a vCPU and an eventfd. close()
// them or use `using`; ioctl failures throw DriverError with code, errno and syscall.
import { GUEST_LAYOUT } from './guest.js';
import { KVM_CAP, XEN_EVTCHN_PRIO_2LEVEL, KVM_EXIT, exitReasonName, IRQFD_FLAG, STRUCT_SIZES, NativeRunOutcome, NativeExit, NativeVcpu, NativeVm, NativeSystem, NativeEventfd, NativeAddon, sys, sysAsync, argErr, checkU32, U64_MAX, checkU64, checkU64OrNeg, PAGE, checkGpaLen, checkBytes } from './native.js';
import { Regs, decodeRegs, encodeRegs, Sregs, decodeSregs, encodeSregs, CpuidEntry, decodeCpuid, encodeCpuid, XenHvmConfig, U64Like, encodeXenHvmConfig, XenHvmAttr, XenHvmAttrType, HVM_ATTR_NUM, encodeXenHvmAttr, decodeXenHvmAttr, XenVcpuAttr, XenVcpuAttrType, VCPU_ATTR_NUM, encodeXenVcpuAttr, decodeXenVcpuAttr, GsiRoute, encodeGsiRouting } from './abi.js';

// --------------------------------------------------------------- classes --

/** /dev/kvm. */
export class KvmSystem implements Disposable {
  constructor(
    private readonly native: NativeSystem,
    private readonly addon: NativeAddon,
  ) {}

  get closed(): boolean {
    return this.native.closed;
  }
  apiVersion(): number {
    return sys(() => this.native.apiVersion());
  }
  checkExtension(cap: number): number {
    checkU32(cap, 'cap', 0x7fffffff);
    return sys(() => this.native.checkExtension(cap));
  }
  /** KVM_CAP_XEN_HVM flags (0: no Xen support). */
  xenHvmCaps(): number {
    return this.checkExtension(KVM_CAP.XEN_HVM);
  }
  vcpuMmapSize(): number {
    return sys(() => this.native.vcpuMmapSize());
  }
  supportedCpuid(): CpuidEntry[] {
    return decodeCpuid(sys(() => this.native.supportedCpuid()));
  }
  createVm(type = 0): KvmVm {
    checkU32(type, 'vm type', 0xff);
    return new KvmVm(sys(() => this.native.createVm(type)));
  }
  /**
   * createVm() on a libuv pool thread: KVM_CREATE_VM is slow under emulation, and can
   * overlap other work. With a setup, the VM's first ioctls and its RAM (slot 0 at gpa 0,
   * the first `prefault` bytes already faulted in) are done there too.
   */
  async createVmAsync(type = 0, setup?: VmSetup): Promise<KvmVm> {
    checkU32(type, 'vm type', 0xff);
    if (setup === undefined) return new KvmVm(await sysAsync(() => this.native.createVmAsync(type)));
    const { tssAddr = 0, irqchip = false, memoryBytes = 0, prefault = 0 } = setup;
    checkU32(tssAddr, 'tssAddr');
    if (!Number.isSafeInteger(memoryBytes) || memoryBytes < 0 || memoryBytes > 2 ** 40 || memoryBytes % PAGE !== 0) argErr(`createVmAsync: memoryBytes must be a multiple of 4096 up to 2^40, got ${memoryBytes}`);
    if (!Number.isSafeInteger(prefault) || prefault < 0) argErr(`createVmAsync: prefault must be a non-negative byte count, got ${prefault}`);
    const native = await sysAsync(() => this.native.createVmAsync(type, tssAddr, irqchip, memoryBytes, prefault));
    const slots = memoryBytes > 0 ? [{ slot: 0, gpa: 0, size: memoryBytes, hva: sys(() => native.hva(0)) }] : [];
    return new KvmVm(native, slots);
  }
  createEventfd(initval = 0): KvmEventfd {
    checkU32(initval, 'initval');
    return new KvmEventfd(sys(() => new this.addon.Eventfd(initval)));
  }
  close(): void {
    this.native.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

/** What createVmAsync does to a new VM off the JavaScript thread. */
export interface VmSetup {
  tssAddr?: number;
  irqchip?: boolean;
  /** Slot 0 at gpa 0 of this many bytes. */
  memoryBytes?: number;
  /** Bytes from gpa 0 to fault in before the VM is handed over. */
  prefault?: number;
}

export interface MemorySlot {
  slot: number;
  gpa: number;
  size: number;
  hva: bigint;
}

export class KvmVm implements Disposable {
  private readonly slots = new Map<number, MemorySlot>();
  private readonly vcpuList: KvmVcpu[] = [];

  constructor(private readonly native: NativeVm, slots: readonly MemorySlot[] = []) {
    for (const m of slots) this.slots.set(m.slot, m);
  }

  get closed(): boolean {
    return this.native.closed;
  }
  get fd(): number {
    return this.native.fd;
  }
  get memorySlots(): readonly MemorySlot[] {
    return [...this.slots.values()];
  }
  get vcpus(): readonly KvmVcpu[] {
    return this.vcpuList;
  }

  checkExtension(cap: number): number {
    checkU32(cap, 'cap', 0x7fffffff);
    return sys(() => this.native.checkExtension(cap));
  }
  enableCap(cap: number, args: readonly U64Like[] = [], flags = 0): void {
    checkU32(cap, 'cap');
    checkU32(flags, 'flags');
    if (args.length > 4) argErr('enableCap takes at most four args');
    const b = Buffer.alloc(32);
    args.forEach((a, i) => b.writeBigUInt64LE(checkU64(a, `args[${i}]`), 8 * i));
    sys(() => this.native.enableCap(cap, flags, b));
  }
  setTssAddr(addr: number): void {
    checkU32(addr, 'tss addr');
    sys(() => this.native.setTssAddr(addr));
  }
  createIrqchip(): void {
    sys(() => this.native.createIrqchip());
  }

  /** Map `size` bytes of anonymous memory at `gpa` in `slot`. */
  addMemory(slot: number, gpa: number, size: number, flags = 0): MemorySlot {
    checkU32(slot, 'slot', 0x7fff);
    checkGpaLen(gpa, 0, 'addMemory');
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0 || size > 2 ** 40) argErr(`addMemory: size must be 1..2^40 bytes, got ${size}`);
    if (gpa % PAGE !== 0 || size % PAGE !== 0) argErr('addMemory: gpa and size must be multiples of 4096');
    checkU32(flags, 'flags', 0xff);
    if (this.slots.has(slot)) argErr(`addMemory: slot ${slot} is in use`);
    for (const s of this.slots.values()) {
      if (gpa < s.gpa + s.size && s.gpa < gpa + size) argErr(`addMemory: [0x${gpa.toString(16)}, +0x${size.toString(16)}) overlaps slot ${s.slot}`);
    }
    const hva = sys(() => this.native.setMemory(slot, gpa, size, flags));
    const m = { slot, gpa, size, hva };
    this.slots.set(slot, m);
    return m;
  }
  removeMemory(slot: number): void {
    checkU32(slot, 'slot', 0x7fff);
    if (!this.slots.has(slot)) argErr(`removeMemory: no slot ${slot}`);
    sys(() => this.native.removeMemory(slot));
    this.slots.delete(slot);
  }

  private checkRange(gpa: number, len: number, what: string): void {
    checkGpaLen(gpa, len, what);
    for (const s of this.slots.values()) if (gpa >= s.gpa && gpa + len <= s.gpa + s.size) return;
    argErr(`${what}: [0x${gpa.toString(16)}, +${len}) is not inside one memory slot`);
  }
  /** A copy of guest memory. */
  read(gpa: number, len: number): Buffer {
    this.checkRange(gpa, len, 'read');
    const b = Buffer.allocUnsafe(len);
    sys(() => this.native.readInto(gpa, b));
    return b;
  }
  /** The same copy as a plain Uint8Array (slice() copies, unlike a Buffer's). */
  bytes(gpa: number, len: number): Uint8Array {
    this.checkRange(gpa, len, 'read');
    const b = new Uint8Array(len);
    sys(() => this.native.readInto(gpa, b));
    return b;
  }
  write(gpa: number, data: Uint8Array): void {
    checkBytes(data, 'data');
    this.checkRange(gpa, data.length, 'write');
    sys(() => this.native.write(gpa, data));
  }
  readU32(gpa: number): number {
    return this.read(gpa, 4).readUInt32LE(0);
  }
  readU64(gpa: number): bigint {
    return this.read(gpa, 8).readBigUInt64LE(0);
  }
  writeU32(gpa: number, v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(checkU32(v, 'value'));
    this.write(gpa, b);
  }
  writeU64(gpa: number, v: U64Like): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(checkU64(v, 'value'));
    this.write(gpa, b);
  }
  /** The host virtual address backing `gpa` (for the *_HVA Xen attributes). */
  hva(gpa: number): bigint {
    this.checkRange(gpa, 1, 'hva');
    return sys(() => this.native.hva(gpa));
  }

  xenHvmConfig(c: XenHvmConfig): void {
    const b = encodeXenHvmConfig(c);
    sys(() => this.native.xenHvmConfig(b));
  }
  xenGetAttr(type: XenHvmAttrType): XenHvmAttr {
    const num = HVM_ATTR_NUM[type];
    if (num === undefined) throw new TypeError(`unknown Xen VM attribute type ${String(type)}`);
    const b = Buffer.alloc(STRUCT_SIZES.kvm_xen_hvm_attr);
    b.writeUInt16LE(num, 0);
    return decodeXenHvmAttr(sys(() => this.native.xenGetAttr(b)));
  }
  xenSetAttr(a: XenHvmAttr): void {
    const b = encodeXenHvmAttr(a);
    sys(() => this.native.xenSetAttr(b));
  }
  /** KVM_XEN_HVM_EVTCHN_SEND: deliver a 2-level event to `vcpu` (Xen vCPU id). */
  xenEvtchnSend(port: number, vcpu: number, priority = XEN_EVTCHN_PRIO_2LEVEL): void {
    checkU32(port, 'port');
    checkU32(vcpu, 'vcpu');
    checkU32(priority, 'priority');
    sys(() => this.native.xenEvtchnSend(port, vcpu, priority));
  }
  setGsiRouting(routes: readonly GsiRoute[]): void {
    const b = encodeGsiRouting(routes);
    sys(() => this.native.setGsiRouting(b));
  }
  /** Attach (or with deassign, detach) an eventfd to a GSI. */
  irqfd(eventfd: KvmEventfd, gsi: number, opts: { deassign?: boolean; resample?: KvmEventfd } = {}): void {
    if (!(eventfd instanceof KvmEventfd)) throw new TypeError('irqfd needs a KvmEventfd');
    checkU32(gsi, 'gsi', 4095);
    const flags = (opts.deassign ? IRQFD_FLAG.DEASSIGN : 0) | (opts.resample ? IRQFD_FLAG.RESAMPLE : 0);
    const fd = eventfd.fd;
    const rfd = opts.resample ? opts.resample.fd : 0;
    sys(() => this.native.irqfd(fd, gsi, flags, rfd));
  }
  createVcpu(id: number): KvmVcpu {
    checkU32(id, 'vcpu id', 4095);
    const v = new KvmVcpu(sys(() => this.native.createVcpu(id)));
    this.vcpuList.push(v);
    return v;
  }
  /** Closes the VM's vCPUs, unmaps its memory and closes it. */
  close(): void {
    sys(() => this.native.close());
    this.slots.clear();
  }
  /**
   * The same, except that the kernel's teardown of the VM (on the last close, milliseconds;
   * a fifth of a live run under emulation) goes on in the background: the VM reads as
   * closed at once, its descriptors are released a moment later.
   */
  closeInBackground(): void {
    sys(() => this.native.closeInBackground());
    this.slots.clear();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

export interface XenHypercallExit {
  type: number;
  longmode: number;
  cpl: number;
  input: bigint;
  params: bigint[];
}

/** Why run() returned. */
export type RunExit =
  | { kind: 'done'; generation: number; runs: number; logs: number[] }
  | { kind: 'yield'; tag: number; runs: number; logs: number[] }
  | { kind: 'guest-fault'; vector: number; runs: number; logs: number[] }
  | { kind: 'timeout'; runs: number; logs: number[] }
  | { kind: 'xen'; xen: XenHypercallExit; runs: number; logs: number[] }
  | { kind: 'exit'; reason: number; reasonName: string; detail: NativeExit; runs: number; logs: number[] };

export interface RunOptions {
  /** Stop the guest after this long (ms); 0 = never. Default 10 s. */
  timeoutMs?: number;
  /** Guest port protocol base (GUEST_LAYOUT.portBase); 0 = every I/O exit returns. */
  portBase?: number;
}

export function toRunExit(o: NativeRunOutcome): RunExit {
  const common = { runs: o.runs, logs: o.logs };
  switch (o.kind) {
    case 'done':
      return { kind: 'done', generation: o.value, ...common };
    case 'yield':
      return { kind: 'yield', tag: o.value, ...common };
    case 'fault':
      return { kind: 'guest-fault', vector: o.value, ...common };
    case 'timeout':
      return { kind: 'timeout', ...common };
    default: {
      const d = o.exit ?? { reason: KVM_EXIT.UNKNOWN };
      if (d.reason === KVM_EXIT.XEN && d.xen) {
        const { type, longmode, cpl, input, params } = d.xen;
        return { kind: 'xen', xen: { type, longmode, cpl, input, params }, ...common };
      }
      return { kind: 'exit', reason: d.reason, reasonName: exitReasonName(d.reason), detail: d, ...common };
    }
  }
}

export const DEFAULT_TIMEOUT_MS = 10_000;

export function runArgs(opts: RunOptions): [number, number] {
  const timeout = checkU32(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs', 86_400_000);
  const port = checkU32(opts.portBase ?? 0, 'portBase', 0xfffc);
  return [timeout, port];
}

export class KvmVcpu implements Disposable {
  constructor(private readonly native: NativeVcpu) {}

  get id(): number {
    return this.native.id;
  }
  get closed(): boolean {
    return this.native.closed;
  }
  get busy(): boolean {
    return this.native.busy;
  }
  getRegs(): Regs {
    return decodeRegs(sys(() => this.native.getRegs()));
  }
  setRegs(r: Regs): void {
    const b = encodeRegs(r);
    sys(() => this.native.setRegs(b));
  }
  getSregs(): Sregs {
    return decodeSregs(sys(() => this.native.getSregs()));
  }
  setSregs(s: Sregs): void {
    const b = encodeSregs(s);
    sys(() => this.native.setSregs(b));
  }
  setCpuid(entries: readonly CpuidEntry[]): void {
    const b = encodeCpuid(entries);
    sys(() => this.native.setCpuid(b));
  }
  getMpState(): number {
    return sys(() => this.native.getMpState());
  }
  setMpState(state: number): void {
    checkU32(state, 'mp state', 8);
    sys(() => this.native.setMpState(state));
  }
  xenGetAttr(type: XenVcpuAttrType): XenVcpuAttr {
    const num = VCPU_ATTR_NUM[type];
    if (num === undefined) throw new TypeError(`unknown Xen vCPU attribute type ${String(type)}`);
    const b = Buffer.alloc(STRUCT_SIZES.kvm_xen_vcpu_attr);
    b.writeUInt16LE(num, 0);
    return decodeXenVcpuAttr(sys(() => this.native.xenGetAttr(b)));
  }
  xenSetAttr(a: XenVcpuAttr): void {
    const b = encodeXenVcpuAttr(a);
    sys(() => this.native.xenSetAttr(b));
  }
  /** Run on this thread until the guest needs JavaScript (blocks the event loop). */
  run(opts: RunOptions = {}): RunExit {
    const [t, p] = runArgs(opts);
    return toRunExit(sys(() => this.native.run(t, p)));
  }
  /** The same on a libuv pool thread (UV_THREADPOOL_SIZE bounds how many run at once). */
  async runAsync(opts: RunOptions = {}): Promise<RunExit> {
    const [t, p] = runArgs(opts);
    return toRunExit(await sysAsync(() => this.native.runAsync(t, p)));
  }
  /** One KVM_RUN without timer or port protocol; returns the exit reason. */
  runOnce(): number {
    return sys(() => this.native.runOnce());
  }
  /** The decoded kvm_run exit data of the last exit. */
  exitInfo(): NativeExit {
    return sys(() => this.native.exitInfo());
  }
  /** Answer the pending KVM_EXIT_XEN hypercall (negative = -errno). */
  setXenResult(result: U64Like): void {
    const v = checkU64OrNeg(result, 'result');
    sys(() => this.native.setXenResult(v));
  }
  close(): void {
    sys(() => this.native.close());
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

export class KvmEventfd implements Disposable {
  constructor(private readonly native: NativeEventfd) {}
  get fd(): number {
    return this.native.fd;
  }
  get closed(): boolean {
    return this.native.closed;
  }
  signal(value: U64Like = 1): void {
    const v = checkU64(value, 'value');
    if (v === 0n || v === U64_MAX) argErr('eventfd value must be 1..2^64-2');
    sys(() => this.native.signal(v));
  }
  /** The counter (and reset it), or null if it is zero. */
  read(): bigint | null {
    return sys(() => this.native.read());
  }
  close(): void {
    this.native.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
