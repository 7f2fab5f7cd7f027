// Reading KVM's Xen attributes back for kvm.xen_get_attr (KVM_XEN_HVM_GET_ATTR and
// KVM_XEN_VCPU_GET_ATTR), as the values harness/model/kvm-attr.ts predicts.
import type { GuestVm } from './addon.js';
import type { KvmXenGetAttr } from '../../model/kvm-attr.js';
import { EVTCHNSTAT } from '../../model/kvm-evtchn.js';
import { DriverError } from '../../errors.js';

/** A host ioctl whose errno is the step's result (as KVM's own checks answer it): 0 or -errno; other faults throw. */
export function ioctlErrno(fn: () => void): bigint {
  try {
    fn();
    return 0n;
  } catch (e) {
    if (e instanceof DriverError && typeof e.errno === 'number') return BigInt(-e.errno);
    throw e;
  }
}

export function kvmGetAttr(g: GuestVm, vcpu: number, attr: KvmXenGetAttr): bigint {
  const v = g.vcpus[vcpu];
  switch (attr) {
    case 'long_mode': {
      const a = g.vm.xenGetAttr('long_mode');
      return a.type === 'long_mode' && a.longMode ? 1n : 0n;
    }
    case 'shared_info': {
      const a = g.vm.xenGetAttr('shared_info');
      return a.type === 'shared_info' ? BigInt(a.gfn) : -1n;
    }
    case 'xen_version': {
      const a = g.vm.xenGetAttr('xen_version');
      return a.type === 'xen_version' ? BigInt(a.version >>> 0) : -1n;
    }
    case 'callback_vector': {
      const a = g.vm.xenGetAttr('upcall_vector');
      return a.type === 'upcall_vector' ? BigInt(a.vector) : -1n;
    }
    case 'vcpu_info': {
      const a = v.xenGetAttr('vcpu_info');
      return a.type === 'vcpu_info' ? BigInt(a.gpa) : -1n;
    }
    case 'vcpu_id': {
      const a = v.xenGetAttr('vcpu_id');
      return a.type === 'vcpu_id' ? BigInt(a.vcpuId) : -1n;
    }
    case 'upcall_vector': {
      const a = v.xenGetAttr('upcall_vector');
      return a.type === 'upcall_vector' ? BigInt(a.vector) : -1n;
    }
    case 'shared_info_hva':
    case 'vcpu_info_hva': {
      // The host address back as the guest page it maps (guest RAM is one slot at 0).
      const a = attr === 'shared_info_hva' ? g.vm.xenGetAttr('shared_info_hva') : v.xenGetAttr('vcpu_info_hva');
      const h = 'hva' in a ? BigInt(a.hva) : -1n;
      return h === 0n || h === -1n ? h : h - g.vm.hva(0);
    }
    case 'vcpu_time_info': {
      const a = v.xenGetAttr('vcpu_time_info');
      return 'gpa' in a ? BigInt(a.gpa) : -1n;
    }
    case 'runstate_addr': {
      const a = v.xenGetAttr('runstate_addr');
      return a.type === 'runstate_addr' ? BigInt(a.gpa) : -1n;
    }
    case 'runstate_current': {
      const a = v.xenGetAttr('runstate_current');
      return a.type === 'runstate_current' ? BigInt(a.state) : -1n;
    }
    case 'runstate_update_flag': {
      const a = g.vm.xenGetAttr('runstate_update_flag');
      return a.type === 'runstate_update_flag' && a.enabled ? 1n : 0n;
    }
    case 'timer_port':
    case 'timer_priority':
    case 'timer_expires': {
      const a = v.xenGetAttr('timer');
      if (a.type !== 'timer') return -1n;
      if (attr === 'timer_port') return BigInt(a.port);
      return attr === 'timer_priority' ? BigInt(a.priority ?? 0) : BigInt(a.expiresNs);
    }
  }
}

/**
 * What kvm.xen_evtchn_assign hands KVM_XEN_ATTR_TYPE_EVTCHN as its target. For an
 * interdomain port delivered to port 0, kvm_xen_eventfd_assign (arch/x86/kvm/xen.c, 6.1 and
 * 6.12) reads an eventfd from deliver.eventfd.fd, which overlays deliver.port.vcpu: that
 * target is always an eventfd here, a fresh one of the VMM's for `eventfd` > 0, else one no
 * process has open (the op's "none": -EBADF, as the model answers), never the vcpu field,
 * which would name whatever the harness has open there (fd 0: not an eventfd, -EINVAL).
 */
export function assignTarget(a: { type: bigint; port: bigint; eventfd: bigint }): 'fresh' | 'invalid' | 'port' {
  if (a.eventfd > 0n) return 'fresh';
  if (a.eventfd < 0n || (a.type === EVTCHNSTAT.interdomain && a.port === 0n)) return 'invalid';
  return 'port';
}
