// KVM ABI structs as Buffers: registers, segments, CPUID, the Xen HVM config and
// attributes, GSI routing (linux/kvm.h), encoded and decoded with their checks.
import { XEN_ATTR, XEN_VCPU_ATTR, XEN_EVTCHN_FLAG, XEN_EVTCHN_PRIO_2LEVEL, IRQ_ROUTING, STRUCT_SIZES, argErr, checkU32, checkU64, checkU64OrNeg } from './native.js';

export interface Regs {
  rax: bigint; rbx: bigint; rcx: bigint; rdx: bigint; rsi: bigint; rdi: bigint; rsp: bigint; rbp: bigint;
  r8: bigint; r9: bigint; r10: bigint; r11: bigint; r12: bigint; r13: bigint; r14: bigint; r15: bigint;
  rip: bigint; rflags: bigint;
}
export const REG_NAMES = [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags',
] as const;

export function decodeRegs(b: Buffer): Regs {
  const r = {} as Regs;
  REG_NAMES.forEach((n, i) => (r[n] = b.readBigUInt64LE(8 * i)));
  return r;
}

export function encodeRegs(r: Regs): Buffer {
  const b = Buffer.alloc(STRUCT_SIZES.kvm_regs);
  REG_NAMES.forEach((n, i) => b.writeBigUInt64LE(checkU64(r[n], `regs.${n}`), 8 * i));
  return b;
}

export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}
export interface DescriptorTable {
  base: bigint;
  limit: number;
}
export interface Sregs {
  cs: Segment; ds: Segment; es: Segment; fs: Segment; gs: Segment; ss: Segment; tr: Segment; ldt: Segment;
  gdt: DescriptorTable;
  idt: DescriptorTable;
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint; efer: bigint; apicBase: bigint;
  interruptBitmap: bigint[];
}
export const SEG_NAMES = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
export const SEG_BYTES = ['type', 'present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable'] as const;
export const CR_NAMES = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apicBase'] as const;

export function decodeSregs(b: Buffer): Sregs {
  const s = {} as Sregs;
  SEG_NAMES.forEach((n, i) => {
    const o = 24 * i;
    const seg = { base: b.readBigUInt64LE(o), limit: b.readUInt32LE(o + 8), selector: b.readUInt16LE(o + 12) } as Segment;
    SEG_BYTES.forEach((f, j) => (seg[f] = b.readUInt8(o + 14 + j)));
    s[n] = seg;
  });
  s.gdt = { base: b.readBigUInt64LE(192), limit: b.readUInt16LE(200) };
  s.idt = { base: b.readBigUInt64LE(208), limit: b.readUInt16LE(216) };
  CR_NAMES.forEach((n, i) => (s[n] = b.readBigUInt64LE(224 + 8 * i)));
  s.interruptBitmap = [0, 1, 2, 3].map((i) => b.readBigUInt64LE(280 + 8 * i));
  return s;
}

export function encodeSregs(s: Sregs): Buffer {
  const b = Buffer.alloc(STRUCT_SIZES.kvm_sregs);
  SEG_NAMES.forEach((n, i) => {
    const o = 24 * i;
    const seg = s[n];
    b.writeBigUInt64LE(checkU64(seg.base, `sregs.${n}.base`), o);
    b.writeUInt32LE(checkU32(seg.limit, `sregs.${n}.limit`), o + 8);
    b.writeUInt16LE(checkU32(seg.selector, `sregs.${n}.selector`, 0xffff), o + 12);
    SEG_BYTES.forEach((f, j) => b.writeUInt8(checkU32(seg[f], `sregs.${n}.${f}`, 0xff), o + 14 + j));
  });
  b.writeBigUInt64LE(checkU64(s.gdt.base, 'sregs.gdt.base'), 192);
  b.writeUInt16LE(checkU32(s.gdt.limit, 'sregs.gdt.limit', 0xffff), 200);
  b.writeBigUInt64LE(checkU64(s.idt.base, 'sregs.idt.base'), 208);
  b.writeUInt16LE(checkU32(s.idt.limit, 'sregs.idt.limit', 0xffff), 216);
  CR_NAMES.forEach((n, i) => b.writeBigUInt64LE(checkU64(s[n], `sregs.${n}`), 224 + 8 * i));
  (s.interruptBitmap ?? [0n, 0n, 0n, 0n]).forEach((v, i) => b.writeBigUInt64LE(checkU64(v, 'sregs.interruptBitmap'), 280 + 8 * i));
  return b;
}

export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}
/** kvm_cpuid_entry2.flags: the index (sub-leaf) is significant. */
export const CPUID_FLAG_SIGNIFICANT_INDEX = 1;

export function decodeCpuid(b: Buffer): CpuidEntry[] {
  const out: CpuidEntry[] = [];
  for (let o = 0; o + 40 <= b.length; o += 40) {
    out.push({
      function: b.readUInt32LE(o),
      index: b.readUInt32LE(o + 4),
      flags: b.readUInt32LE(o + 8),
      eax: b.readUInt32LE(o + 12),
      ebx: b.readUInt32LE(o + 16),
      ecx: b.readUInt32LE(o + 20),
      edx: b.readUInt32LE(o + 24),
    });
  }
  return out;
}

export function encodeCpuid(entries: readonly CpuidEntry[]): Buffer {
  if (entries.length > 4096) argErr('at most 4096 CPUID entries');
  const b = Buffer.alloc(entries.length * 40);
  entries.forEach((e, i) => {
    const o = i * 40;
    (['function', 'index', 'flags', 'eax', 'ebx', 'ecx', 'edx'] as const).forEach((f, j) =>
      b.writeUInt32LE(checkU32(e[f], `cpuid[${i}].${f}`), o + 4 * j),
    );
  });
  return b;
}

export interface XenHvmConfig {
  /** KVM_XEN_HVM_CONFIG_* bits to set (6.1 accepts INTERCEPT_HCALL and EVTCHN_SEND). */
  flags: number;
  /** Hypercall MSR index; 0 leaves the MSR off. */
  msr: number;
  blobAddr32?: U64Like;
  blobAddr64?: U64Like;
  blobSize32?: number;
  blobSize64?: number;
}
export type U64Like = bigint | number;

export function encodeXenHvmConfig(c: XenHvmConfig): Buffer {
  // Bits this harness does not know still go to the kernel, which answers them
  // (kvm_xen_hvm_config: -EINVAL): a case may ask for exactly that.
  const flags = checkU32(c.flags, 'xen config flags');
  const b = Buffer.alloc(STRUCT_SIZES.kvm_xen_hvm_config);
  b.writeUInt32LE(flags, 0);
  b.writeUInt32LE(checkU32(c.msr, 'xen config msr'), 4);
  b.writeBigUInt64LE(checkU64(c.blobAddr32 ?? 0, 'blobAddr32'), 8);
  b.writeBigUInt64LE(checkU64(c.blobAddr64 ?? 0, 'blobAddr64'), 16);
  b.writeUInt8(checkU32(c.blobSize32 ?? 0, 'blobSize32', 0xff), 24);
  b.writeUInt8(checkU32(c.blobSize64 ?? 0, 'blobSize64', 0xff), 25);
  return b;
}

export type XenEvtchnDeliver =
  | { kind: 'port'; port: number; vcpu: number; priority?: number }
  | { kind: 'eventfd'; fd: number };

/** A per-VM Xen attribute (KVM_XEN_HVM_{GET,SET}_ATTR). */
export type XenHvmAttr =
  | { type: 'long_mode'; longMode: boolean }
  | { type: 'shared_info'; gfn: U64Like }
  | { type: 'upcall_vector'; vector: number }
  | {
      type: 'evtchn';
      sendPort: number;
      evtchnType: number;
      flags?: number;
      deliver?: XenEvtchnDeliver;
    }
  | { type: 'xen_version'; version: number }
  | { type: 'runstate_update_flag'; enabled: boolean }
  | { type: 'shared_info_hva'; hva: U64Like };
export type XenHvmAttrType = XenHvmAttr['type'];

export const HVM_ATTR_NUM: Record<XenHvmAttrType, number> = {
  long_mode: XEN_ATTR.LONG_MODE,
  shared_info: XEN_ATTR.SHARED_INFO,
  upcall_vector: XEN_ATTR.UPCALL_VECTOR,
  evtchn: XEN_ATTR.EVTCHN,
  xen_version: XEN_ATTR.XEN_VERSION,
  runstate_update_flag: XEN_ATTR.RUNSTATE_UPDATE_FLAG,
  shared_info_hva: XEN_ATTR.SHARED_INFO_HVA,
};

export function checkVector(v: unknown, what: string): number {
  return checkU32(v, what, 0xff);
}

export function encodeXenHvmAttr(a: XenHvmAttr): Buffer {
  const type = HVM_ATTR_NUM[a?.type as XenHvmAttrType];
  if (type === undefined) throw new TypeError(`unknown Xen VM attribute type ${String(a?.type)}`);
  const b = Buffer.alloc(STRUCT_SIZES.kvm_xen_hvm_attr);
  b.writeUInt16LE(type, 0);
  switch (a.type) {
    case 'long_mode':
      b.writeUInt8(a.longMode ? 1 : 0, 8);
      break;
    case 'shared_info':
      b.writeBigUInt64LE(checkU64(a.gfn, 'shared_info.gfn'), 8);
      break;
    case 'upcall_vector':
      b.writeUInt8(checkVector(a.vector, 'upcall_vector.vector'), 8);
      break;
    case 'evtchn': {
      b.writeUInt32LE(checkU32(a.sendPort, 'evtchn.sendPort'), 8);
      b.writeUInt32LE(checkU32(a.evtchnType, 'evtchn.evtchnType'), 12);
      const flags = checkU32(a.flags ?? 0, 'evtchn.flags', 7);
      b.writeUInt32LE(flags, 16);
      const d = a.deliver;
      if (d?.kind === 'port') {
        b.writeUInt32LE(checkU32(d.port, 'evtchn.deliver.port'), 20);
        b.writeUInt32LE(checkU32(d.vcpu, 'evtchn.deliver.vcpu'), 24);
        b.writeUInt32LE(checkU32(d.priority ?? XEN_EVTCHN_PRIO_2LEVEL, 'evtchn.deliver.priority'), 28);
      } else if (d?.kind === 'eventfd') {
        b.writeUInt32LE(0, 20);
        b.writeInt32LE(checkU32(d.fd, 'evtchn.deliver.fd', 0x7fffffff), 24);
      } else if (d !== undefined) {
        throw new TypeError("evtchn.deliver.kind must be 'port' or 'eventfd'");
      } else if ((flags & (XEN_EVTCHN_FLAG.DEASSIGN | XEN_EVTCHN_FLAG.RESET)) === 0) {
        argErr('evtchn.deliver is required unless flags has DEASSIGN or RESET');
      }
      break;
    }
    case 'xen_version':
      b.writeUInt32LE(checkU32(a.version, 'xen_version.version'), 8);
      break;
    case 'runstate_update_flag':
      b.writeUInt8(a.enabled ? 1 : 0, 8);
      break;
    case 'shared_info_hva':
      b.writeBigUInt64LE(checkU64(a.hva, 'shared_info_hva.hva'), 8);
      break;
  }
  return b;
}

export function decodeXenHvmAttr(b: Buffer): XenHvmAttr {
  const type = b.readUInt16LE(0);
  switch (type) {
    case XEN_ATTR.LONG_MODE:
      return { type: 'long_mode', longMode: b.readUInt8(8) !== 0 };
    case XEN_ATTR.SHARED_INFO:
      return { type: 'shared_info', gfn: b.readBigUInt64LE(8) };
    case XEN_ATTR.UPCALL_VECTOR:
      return { type: 'upcall_vector', vector: b.readUInt8(8) };
    case XEN_ATTR.EVTCHN:
      return {
        type: 'evtchn',
        sendPort: b.readUInt32LE(8),
        evtchnType: b.readUInt32LE(12),
        flags: b.readUInt32LE(16),
        deliver: { kind: 'port', port: b.readUInt32LE(20), vcpu: b.readUInt32LE(24), priority: b.readUInt32LE(28) },
      };
    case XEN_ATTR.XEN_VERSION:
      return { type: 'xen_version', version: b.readUInt32LE(8) };
    case XEN_ATTR.RUNSTATE_UPDATE_FLAG:
      return { type: 'runstate_update_flag', enabled: b.readUInt8(8) !== 0 };
    case XEN_ATTR.SHARED_INFO_HVA:
      return { type: 'shared_info_hva', hva: b.readBigUInt64LE(8) };
    default:
      throw new RangeError(`unknown Xen VM attribute type ${type}`);
  }
}

export interface RunstateData {
  state: U64Like;
  stateEntryTime: U64Like;
  timeRunning: U64Like;
  timeRunnable: U64Like;
  timeBlocked: U64Like;
  timeOffline: U64Like;
}

/** A per-vCPU Xen attribute (KVM_XEN_VCPU_{GET,SET}_ATTR). */
export type XenVcpuAttr =
  | { type: 'vcpu_info' | 'vcpu_time_info' | 'runstate_addr'; gpa: U64Like }
  | { type: 'vcpu_info_hva'; hva: U64Like }
  | { type: 'runstate_current'; state: U64Like }
  | ({ type: 'runstate_data' | 'runstate_adjust' } & RunstateData)
  | { type: 'vcpu_id'; vcpuId: number }
  | { type: 'timer'; port: number; priority?: number; expiresNs: U64Like }
  | { type: 'upcall_vector'; vector: number };
export type XenVcpuAttrType = XenVcpuAttr['type'];

export const VCPU_ATTR_NUM: Record<XenVcpuAttrType, number> = {
  vcpu_info: XEN_VCPU_ATTR.VCPU_INFO,
  vcpu_time_info: XEN_VCPU_ATTR.VCPU_TIME_INFO,
  runstate_addr: XEN_VCPU_ATTR.RUNSTATE_ADDR,
  runstate_current: XEN_VCPU_ATTR.RUNSTATE_CURRENT,
  runstate_data: XEN_VCPU_ATTR.RUNSTATE_DATA,
  runstate_adjust: XEN_VCPU_ATTR.RUNSTATE_ADJUST,
  vcpu_id: XEN_VCPU_ATTR.VCPU_ID,
  timer: XEN_VCPU_ATTR.TIMER,
  upcall_vector: XEN_VCPU_ATTR.UPCALL_VECTOR,
  vcpu_info_hva: XEN_VCPU_ATTR.VCPU_INFO_HVA,
};

export const RUNSTATE_FIELDS = ['state', 'stateEntryTime', 'timeRunning', 'timeRunnable', 'timeBlocked', 'timeOffline'] as const;

export function encodeXenVcpuAttr(a: XenVcpuAttr): Buffer {
  const type = VCPU_ATTR_NUM[a?.type as XenVcpuAttrType];
  if (type === undefined) throw new TypeError(`unknown Xen vCPU attribute type ${String(a?.type)}`);
  const b = Buffer.alloc(STRUCT_SIZES.kvm_xen_vcpu_attr);
  b.writeUInt16LE(type, 0);
  switch (a.type) {
    case 'vcpu_info':
    case 'vcpu_time_info':
    case 'runstate_addr':
      b.writeBigUInt64LE(checkU64(a.gpa, `${a.type}.gpa`), 8);
      break;
    case 'vcpu_info_hva':
      b.writeBigUInt64LE(checkU64(a.hva, 'vcpu_info_hva.hva'), 8);
      break;
    case 'runstate_current':
      // Any u64 (or a negative two's complement): KVM itself rejects a state
      // above RUNSTATE_offline with -EINVAL (kvm_xen_vcpu_set_attr), and that
      // check is what conformance cases exercise.
      b.writeBigUInt64LE(checkU64OrNeg(a.state, 'runstate_current.state'), 8);
      break;
    case 'runstate_data':
    case 'runstate_adjust':
      RUNSTATE_FIELDS.forEach((f, i) => {
        // ADJUST deltas, "state unchanged" (-1), and DATA times whose u64 sum
        // wraps are two's complement; KVM validates the values itself.
        const v = checkU64OrNeg(a[f], `${a.type}.${f}`);
        b.writeBigUInt64LE(v, 8 + 8 * i);
      });
      break;
    case 'vcpu_id':
      b.writeUInt32LE(checkU32(a.vcpuId, 'vcpu_id.vcpuId'), 8);
      break;
    case 'timer':
      b.writeUInt32LE(checkU32(a.port, 'timer.port'), 8);
      b.writeUInt32LE(checkU32(a.priority ?? XEN_EVTCHN_PRIO_2LEVEL, 'timer.priority'), 12);
      b.writeBigUInt64LE(checkU64(a.expiresNs, 'timer.expiresNs'), 16);
      break;
    case 'upcall_vector':
      b.writeUInt8(checkVector(a.vector, 'upcall_vector.vector'), 8);
      break;
  }
  return b;
}

export function decodeXenVcpuAttr(b: Buffer): XenVcpuAttr {
  const type = b.readUInt16LE(0);
  const u64 = (i: number) => b.readBigUInt64LE(8 + 8 * i);
  switch (type) {
    case XEN_VCPU_ATTR.VCPU_INFO:
      return { type: 'vcpu_info', gpa: u64(0) };
    case XEN_VCPU_ATTR.VCPU_TIME_INFO:
      return { type: 'vcpu_time_info', gpa: u64(0) };
    case XEN_VCPU_ATTR.RUNSTATE_ADDR:
      return { type: 'runstate_addr', gpa: u64(0) };
    case XEN_VCPU_ATTR.VCPU_INFO_HVA:
      return { type: 'vcpu_info_hva', hva: u64(0) };
    case XEN_VCPU_ATTR.RUNSTATE_CURRENT:
      return { type: 'runstate_current', state: Number(u64(0)) };
    case XEN_VCPU_ATTR.RUNSTATE_DATA:
    case XEN_VCPU_ATTR.RUNSTATE_ADJUST:
      return {
        type: type === XEN_VCPU_ATTR.RUNSTATE_DATA ? 'runstate_data' : 'runstate_adjust',
        state: u64(0),
        stateEntryTime: u64(1),
        timeRunning: u64(2),
        timeRunnable: u64(3),
        timeBlocked: u64(4),
        timeOffline: u64(5),
      };
    case XEN_VCPU_ATTR.VCPU_ID:
      return { type: 'vcpu_id', vcpuId: b.readUInt32LE(8) };
    case XEN_VCPU_ATTR.TIMER:
      return { type: 'timer', port: b.readUInt32LE(8), priority: b.readUInt32LE(12), expiresNs: b.readBigUInt64LE(16) };
    case XEN_VCPU_ATTR.UPCALL_VECTOR:
      return { type: 'upcall_vector', vector: b.readUInt8(8) };
    default:
      throw new RangeError(`unknown Xen vCPU attribute type ${type}`);
  }
}

export type GsiRoute =
  | { gsi: number; type: 'xen_evtchn'; port: number; vcpu: number; priority?: number }
  | { gsi: number; type: 'irqchip'; irqchip: number; pin: number }
  | { gsi: number; type: 'msi'; addressLo: number; addressHi: number; data: number; flags?: number; devid?: number };

export function encodeGsiRouting(routes: readonly GsiRoute[]): Buffer {
  if (!Array.isArray(routes) || routes.length > 4096) argErr('GSI routing takes an array of at most 4096 entries');
  const b = Buffer.alloc(routes.length * STRUCT_SIZES.kvm_irq_routing_entry);
  routes.forEach((r, i) => {
    const o = i * STRUCT_SIZES.kvm_irq_routing_entry;
    const w = `routes[${i}]`;
    b.writeUInt32LE(checkU32(r.gsi, `${w}.gsi`, 4095), o);
    switch (r.type) {
      case 'xen_evtchn':
        b.writeUInt32LE(IRQ_ROUTING.XEN_EVTCHN, o + 4);
        b.writeUInt32LE(checkU32(r.port, `${w}.port`), o + 16);
        b.writeUInt32LE(checkU32(r.vcpu, `${w}.vcpu`), o + 20);
        b.writeUInt32LE(checkU32(r.priority ?? XEN_EVTCHN_PRIO_2LEVEL, `${w}.priority`), o + 24);
        break;
      case 'irqchip':
        b.writeUInt32LE(IRQ_ROUTING.IRQCHIP, o + 4);
        b.writeUInt32LE(checkU32(r.irqchip, `${w}.irqchip`, 2), o + 16);
        b.writeUInt32LE(checkU32(r.pin, `${w}.pin`, 23), o + 20);
        break;
      case 'msi':
        b.writeUInt32LE(IRQ_ROUTING.MSI, o + 4);
        b.writeUInt32LE(checkU32(r.flags ?? 0, `${w}.flags`), o + 8);
        b.writeUInt32LE(checkU32(r.addressLo, `${w}.addressLo`), o + 16);
        b.writeUInt32LE(checkU32(r.addressHi, `${w}.addressHi`), o + 20);
        b.writeUInt32LE(checkU32(r.data, `${w}.data`), o + 24);
        b.writeUInt32LE(checkU32(r.devid ?? 0, `${w}.devid`), o + 28);
        break;
      default:
        throw new TypeError(`${w}.type must be 'xen_evtchn', 'irqchip' or 'msi'`);
    }
  });
  return b;
}
