// The VMM's side of KVM's Xen attributes: reading them back (KVM_XEN_HVM_GET_ATTR,
// KVM_XEN_VCPU_GET_ATTR) and the vCPU attributes only a VMM sets (KVM_XEN_VCPU_SET_ATTR:
// UPCALL_VECTOR, VCPU_ID, TIMER). On the kvm target they are the ioctls; on the model,
// what KVM would hold and answer (harness/model/kvm-attr.ts, from arch/x86/kvm/xen.c).
import { z } from 'zod';
import { defineOp, int, type Action } from './types.js';
import { defineConstants } from './constants.js';
import {
  KVM_XEN_GET_ATTRS, KVM_XEN_PRIO_2LEVEL, KVM_XEN_SET_ATTRS, kvmXenGetAttr, kvmXenSetAttr, kvmXenSetTimer, kvmXenSetUpcallVector, kvmXenSetVcpuId,
} from '../model/kvm-attr.js';
import { EVTCHNSTAT, KVM_XEN_EVTCHN_FLAG, kvmEventfdRead, kvmEvtchnSetattr, kvmIrqRouteSend, kvmMemslotChurn } from '../model/kvm-evtchn.js';
import { kvmSetHvmConfig } from '../model/kvm-config.js';

export const xenGetAttr = defineOp({
  name: 'kvm.xen_get_attr',
  summary:
    'The VMM reads a Xen attribute back from KVM: long_mode, shared_info (gfn), xen_version, callback_vector (VM); ' +
    'vcpu_info (gpa), vcpu_id, upcall_vector, timer_port, timer_priority, timer_expires, vcpu_time_info (the vCPU); ' +
    'shared_info_hva and vcpu_info_hva as the guest page the host address maps (0 = none); runstate_addr, runstate_current (the vCPU), ' +
    'runstate_update_flag (VM); ret 0 with OUT value, or the errno (runstate_addr: -ENOENT without an area)',
  args: z.strictObject({ attr: z.enum(KVM_XEN_GET_ATTRS) }),
  requires: ['shared_info', 'flavor.kvm'],
  out: ['value'],
  encode: (a): Action => ({ kind: 'host', op: 'kvm.xen_get_attr', args: a }),
  model: (_m, a, { dom, vcpu }) => {
    const value = kvmXenGetAttr(dom, vcpu, a.attr);
    return value === null ? { ret: -2n /* ENOENT */ } : { ret: 0n, out: { value } };
  },
});

export const xenSetUpcallVector = defineOp({
  name: 'kvm.xen_set_upcall_vector',
  summary: 'The VMM sets the vCPU\'s upcall vector in KVM (KVM_XEN_VCPU_ATTR_TYPE_UPCALL_VECTOR, 0..255); ret 0 or -EINVAL for 1..0x0f',
  args: z.strictObject({ vector: int() }),
  requires: ['evtchn.upcall_vector', 'flavor.kvm'],
  encode: (a): Action => ({ kind: 'host', op: 'kvm.xen_set_upcall_vector', args: a }),
  model: (_m, a, { vcpu }) => ({ ret: kvmXenSetUpcallVector(vcpu, a.vector) }),
});

export const xenSetVcpuId = defineOp({
  name: 'kvm.xen_set_vcpu_id',
  summary: 'The VMM sets the vCPU\'s Xen vCPU id in KVM (KVM_XEN_VCPU_ATTR_TYPE_VCPU_ID); ret 0 or -EINVAL at KVM_MAX_VCPUS and above',
  args: z.strictObject({ id: int() }),
  requires: ['timer', 'flavor.kvm'],
  encode: (a): Action => ({ kind: 'host', op: 'kvm.xen_set_vcpu_id', args: a }),
  model: (_m, a, { vcpu }) => ({ ret: kvmXenSetVcpuId(vcpu, a.id) }),
});

export const xenSetTimer = defineOp({
  name: 'kvm.xen_set_timer',
  summary:
    'The VMM hands the vCPU\'s Xen timer to KVM (KVM_XEN_VCPU_ATTR_TYPE_TIMER: port, priority, expires_ns; ' +
    'port 0 stops it), as on migration; an expiry already past fires at once; ret 0 or -EINVAL for a port with a priority other than 2-level',
  args: z.strictObject({ port: int(), priority: int().optional(), expires_ns: int() }),
  requires: ['timer', 'flavor.kvm'],
  encode: (a): Action => ({ kind: 'host', op: 'kvm.xen_set_timer', args: { ...a, priority: a.priority ?? KVM_XEN_PRIO_2LEVEL } }),
  model: (m, a, { vcpu }) => ({ ret: kvmXenSetTimer(m, vcpu, a.port, a.priority ?? KVM_XEN_PRIO_2LEVEL, a.expires_ns) }),
});

const evtchnArgs = z.strictObject({
  send_port: int(), type: int().optional(), port: int().optional(), vcpu: int().optional(), priority: int().optional(), eventfd: int().optional(),
});

function evtchnOp(name: string, flags: bigint, summary: string) {
  return defineOp({
    name,
    summary,
    args: name === 'kvm.xen_evtchn_reset' ? z.strictObject({}).optional() : evtchnArgs,
    requires: ['evtchn.send', 'flavor.kvm'],
    encode: (a): Action => {
      const x = (a ?? {}) as Partial<Record<'send_port' | 'type' | 'port' | 'vcpu' | 'priority' | 'eventfd', bigint>>;
      const eventfd = x.eventfd ?? 0n;
      return {
        kind: 'host',
        op: name,
        args: {
          flags, send_port: x.send_port ?? 0n, type: x.type ?? (eventfd ? EVTCHNSTAT.interdomain : EVTCHNSTAT.ipi),
          port: x.port ?? (eventfd ? 0n : x.send_port ?? 0n), vcpu: x.vcpu ?? 0n, priority: x.priority ?? KVM_XEN_PRIO_2LEVEL, eventfd,
        },
      };
    },
    model: (_m, a, { dom }) => {
      const x = a as unknown as Record<'flags' | 'send_port' | 'type' | 'port' | 'vcpu' | 'priority' | 'eventfd', bigint>;
      return { ret: kvmEvtchnSetattr(dom, { flags: x.flags, sendPort: x.send_port, type: x.type, port: x.port, vcpu: x.vcpu, priority: x.priority, eventfd: x.eventfd }) };
    },
  });
}

export const xenEvtchnAssign = evtchnOp('kvm.xen_evtchn_assign', 0n,
  'The VMM registers a send port with KVM (KVM_XEN_ATTR_TYPE_EVTCHN: type EVTCHNSTAT_ipi (default) or _interdomain, ' +
  'delivered to `port` (default send_port) on `vcpu`, or with `eventfd: 1` to an eventfd of the VMM\'s (interdomain, port 0; ' +
  '`eventfd: -1` passes an invalid descriptor)), so the guest\'s EVTCHNOP_send on it is served in-kernel; ret 0 or the errno');

export const eventfdRead = defineOp({
  name: 'kvm.eventfd_read',
  summary: 'The VMM reads (and so resets) the eventfd it registered for `send_port` with kvm.xen_evtchn_assign: OUT count, the signals since the last read',
  args: z.strictObject({ send_port: int() }),
  requires: ['evtchn.send', 'flavor.kvm'],
  out: ['count'],
  encode: (a): Action => ({ kind: 'host', op: 'kvm.eventfd_read', args: a }),
  model: (_m, a, { dom }) => {
    const c = kvmEventfdRead(dom, Number(a.send_port));
    return c === null ? { fault: `the VMM registered no eventfd for send port ${a.send_port}` } : { out: { count: c } };
  },
});
export const xenEvtchnUpdate = evtchnOp('kvm.xen_evtchn_update', KVM_XEN_EVTCHN_FLAG.UPDATE,
  'KVM_XEN_EVTCHN_UPDATE: retarget a registered send port to another vCPU (type and port must match); ret 0 or the errno');
export const xenEvtchnDeassign = evtchnOp('kvm.xen_evtchn_deassign', KVM_XEN_EVTCHN_FLAG.DEASSIGN,
  'KVM_XEN_EVTCHN_DEASSIGN: KVM forgets the send port (EVTCHNOP_send goes to the VMM again); ret 0 or -ENOENT');
export const xenEvtchnReset = evtchnOp('kvm.xen_evtchn_reset', KVM_XEN_EVTCHN_FLAG.RESET,
  'KVM_XEN_EVTCHN_RESET: KVM forgets every send port; ret 0');

export const memslotChurn = defineOp({
  name: 'kvm.memslot_churn',
  summary:
    'The VMM adds a memory slot above guest RAM and removes it again (KVM_SET_USER_MEMORY_REGION): the memslot generation ' +
    'moves, so every cached shared_info / vcpu_info / runstate mapping KVM holds must be revalidated before its next use (the slow paths): ' +
    'an event raised for a vCPU before it next enters sets its pending bit but holds the selector and upcall flag in KVM until that entry ' +
    '(kvm_xen_set_evtchn_fast, kvm_xen_inject_pending_events). ret 0',
  args: z.strictObject({}).optional(),
  requires: ['shared_info', 'flavor.kvm'],
  encode: (): Action => ({ kind: 'host', op: 'kvm.memslot_churn', args: {} }),
  // The vcpu_info caches KVM made from a guest address go stale: events are held until the vCPU's next entry.
  model: (_m, _a, { dom }) => {
    kvmMemslotChurn(dom, (v) => kvmXenGetAttr(dom, v, 'vcpu_info_hva') !== 0n);
    return { ret: 0n };
  },
});

export const xenHvmConfig = defineOp({
  name: 'kvm.xen_hvm_config',
  summary:
    'The VMM re-issues KVM_XEN_HVM_CONFIG: `flags` (KVM_XEN_HVM_CONFIG_*), the hypercall MSR `msr` (default 0x40000000, 0 = none) ' +
    'and optionally a hypercall-page blob of `blob_pages` pages read from guest memory at `blob_gpa` (through the VMM\'s own ' +
    'mapping), which the MSR write then copies instead of KVM writing the page; ret 0 or -EINVAL (unknown flags, a blob with INTERCEPT_HCALL)',
  args: z.strictObject({ flags: int(), msr: int().optional(), blob_gpa: int().optional(), blob_pages: int().optional() }),
  requires: ['hypercall.page', 'flavor.kvm'],
  encode: (a): Action => ({
    kind: 'host', op: 'kvm.xen_hvm_config',
    args: { flags: a.flags, msr: a.msr ?? 0x40000000n, blob_gpa: a.blob_gpa ?? 0n, blob_pages: a.blob_pages ?? 0n },
  }),
  model: (_m, a, { dom }) => ({
    ret: kvmSetHvmConfig(dom, { flags: a.flags, blobGpa: Number(a.blob_gpa ?? 0n), blobPages: Number(a.blob_pages ?? 0n) }),
  }),
});

// KVM_XEN_HVM_CONFIG_* (include/uapi/linux/kvm.h): the capability bits of KVM_CAP_XEN_HVM,
// of which INTERCEPT_HCALL, EVTCHN_SEND (and on 6.2+ PVCLOCK_TSC_UNSTABLE) are also settings.
defineConstants('KVM_XEN_HVM_CONFIG_', {
  HYPERCALL_MSR: 1 << 0, INTERCEPT_HCALL: 1 << 1, SHARED_INFO: 1 << 2, RUNSTATE: 1 << 3, EVTCHN_2LEVEL: 1 << 4,
  EVTCHN_SEND: 1 << 5, RUNSTATE_UPDATE_FLAG: 1 << 6, PVCLOCK_TSC_UNSTABLE: 1 << 7, SHARED_INFO_HVA: 1 << 8,
});

export const irqfdSend = defineOp({
  name: 'kvm.irqfd_send',
  summary:
    'The VMM routes a GSI to an event channel (KVM_SET_GSI_ROUTING, KVM_IRQ_ROUTING_XEN_EVTCHN: `port`, Xen `vcpu`, `priority`), ' +
    'attaches an eventfd to it (KVM_IRQFD), signals it once and detaches it (which waits for a deferred injection); ' +
    'ret 0, or the routing\'s -EINVAL (port past the limit, a priority other than 2-level)',
  args: z.strictObject({ port: int(), vcpu: int().optional(), priority: int().optional() }),
  requires: ['evtchn.host_send', 'flavor.kvm'],
  encode: (a): Action => ({
    kind: 'host', op: 'kvm.irqfd_send', args: { port: a.port, vcpu: a.vcpu ?? 0n, priority: a.priority ?? KVM_XEN_PRIO_2LEVEL },
  }),
  model: (_m, a, { dom }) => ({ ret: kvmIrqRouteSend(dom, a.port, a.vcpu ?? 0n, a.priority ?? KVM_XEN_PRIO_2LEVEL) }),
});

export const xenSetAttr = defineOp({
  name: 'kvm.xen_set_attr',
  summary:
    'The VMM points KVM at an area itself: shared_info (a gfn) or shared_info_hva (VM); vcpu_info, vcpu_info_hva or vcpu_time_info (the vCPU). ' +
    'An *_hva value names the guest page whose host mapping is meant (0 = none); all ones deactivates the others; ' +
    'ret 0, -EINVAL (shared_info_hva not page aligned; an area by guest address crossing a page), -ENXIO (vcpu_info not 4-byte aligned) ' +
    'or -EFAULT (no guest memory behind an area by guest address: KVM keeps it, unusable, and it reads back)',
  args: z.strictObject({ attr: z.enum(KVM_XEN_SET_ATTRS), value: int() }),
  requires: ['shared_info', 'flavor.kvm'],
  encode: (a): Action => ({ kind: 'host', op: 'kvm.xen_set_attr', args: a }),
  model: (_m, a, { dom, vcpu }) => ({ ret: kvmXenSetAttr(dom, vcpu, a.attr, BigInt.asUintN(64, a.value)) }),
});
