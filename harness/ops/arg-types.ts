// Integer argument types: how wide each op argument (and each step and setup
// field) is, checked at load time, and which constant family names its values
// (shown by `xconf list --ops`). An argument not named here is a 64-bit
// register value: -2^63 .. 2^64-1, negative values meaning two's complement.

export interface IntType {
  /** Shown in listings: u16, u32, u64, int64, ... */
  name: string;
  min: bigint;
  max: bigint;
  /** What the field is, for messages ("guest-physical address"). */
  what?: string;
}

const unsigned = (bits: number, what?: string): IntType => ({ name: `u${bits}`, min: 0n, max: (1n << BigInt(bits)) - 1n, what });

export const INT64: IntType = { name: 'int64', min: -(1n << 63n), max: (1n << 64n) - 1n, what: '64-bit register value' };
export const U8 = unsigned(8);
export const U16 = unsigned(16);
export const U32 = unsigned(32);
export const U64 = unsigned(64);
export const ADDRESS = unsigned(64, 'guest address');
export const FRAME = unsigned(64, 'guest frame number');
export const DOMID = unsigned(16, 'domain id');
export const VCPU_ID = unsigned(32, 'vCPU id');
export const PORT = unsigned(32, 'event-channel port');
export const GRANT_REF = unsigned(32, 'grant reference');
export const CPL: IntType = { name: '0..3', min: 0n, max: 3n, what: 'privilege level' };

/** Types by argument name, for every op. */
const BY_NAME: Record<string, IntType> = {
  gpa: ADDRESS, addr: ADDRESS, host_addr: ADDRESS, ports_addr: ADDRESS, dev_bus_addr: ADDRESS,
  gpfn: FRAME, gfn: FRAME, mfn: FRAME, frame: FRAME, first_frame: FRAME, control_gfn: FRAME, array_gfn: FRAME,
  dom: DOMID, domid: DOMID, remote_dom: DOMID, frontend: DOMID,
  vcpu: VCPU_ID, vcpuid: VCPU_ID,
  port: PORT, remote_port: PORT, ports: PORT,
  ref: GRANT_REF, first_ref: GRANT_REF, ref_a: GRANT_REF, ref_b: GRANT_REF,
  nr_frames: U32, priority: U32, virq: U32, pirq: U32, vector: U8,
};

/** Types that hold for one op's argument only (`op.arg`). */
const BY_OP: Record<string, IntType> = {
  'memory.add_to_physmap.size': U16,
  'msr.write.msr': U32,
};

/** Constant families that name an argument's values: by `op.arg`, then by argument name. */
const CONSTS_BY_OP: Record<string, string> = {
  'hypercall.raw.nr': 'HYPERVISOR_',
  'xen.version.cmd': 'XENVER_',
  'xen.vm_assist.cmd': 'VMASST_CMD_',
  'xen.vm_assist.type': 'VMASST_TYPE_',
  'memory.op.cmd': 'XENMEM_',
  'vcpu.op.cmd': 'VCPUOP_',
  'evtchn.op.cmd': 'EVTCHNOP_',
  'sched.op.cmd': 'SCHEDOP_',
  'gnttab.raw.cmd': 'GNTTABOP_',
  'gnttab.set_version.version': '',
  'hvm.set_param.index': 'HVM_PARAM_',
  'hvm.get_param.index': 'HVM_PARAM_',
};
const CONSTS_BY_NAME: Record<string, string> = {
  state: 'RUNSTATE_', space: 'XENMAPSPACE_', virq: 'VIRQ_', reason: 'SHUTDOWN_',
  dom: 'DOMID_', domid: 'DOMID_', remote_dom: 'DOMID_',
};

/** The integer type of argument `key` of op `op` (for list elements: the list's key). */
export function argType(op: string, key: string): IntType {
  return BY_OP[`${op}.${key}`] ?? BY_NAME[key] ?? INT64;
}

/** The constant family (prefix such as RUNSTATE_) whose names are the argument's usual values. */
export function argConstants(op: string, key: string): string | undefined {
  const own = CONSTS_BY_OP[`${op}.${key}`];
  if (own !== undefined) return own || undefined;
  return CONSTS_BY_NAME[key];
}

const hex = (v: bigint) => (v < 0n ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`);

/** Why `v` does not fit `t`, or undefined when it does. */
export function rangeProblem(v: bigint, t: IntType): string | undefined {
  if (v >= t.min && v <= t.max) return undefined;
  const range = t === INT64 ? `${hex(t.min)}..${hex(t.max)}` : `${t.min}..${t.max < 1000n ? t.max : hex(t.max)}`;
  const shown = v > 9999n || v < -9999n ? `${v} (${hex(v)})` : `${v}`;
  const kind = t.what ? `a ${t.what} (${t.name})` : t.name;
  const hint = v < 0n && t.min === 0n ? `; it cannot be negative${t.max === U64.max ? ' (write 0xffffffffffffffff for all ones)' : ''}` : '';
  return `${shown} does not fit ${kind}: ${range}${hint}`;
}

/**
 * The type of a `value` stored in `size` bytes (memory.write, kvm.guest_write):
 * any bit pattern of that width, written as unsigned or as a negative number.
 */
export function sizedValue(size: bigint): IntType {
  const bits = size * 8n;
  return { name: `${bits}-bit value`, min: -(1n << (bits - 1n)), max: (1n << bits) - 1n, what: `value of size ${size}` };
}
