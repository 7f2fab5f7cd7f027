// Reading KVM's Xen attributes back for kvm.xen_get_attr (KVM_XEN_HVM_GET_ATTR and
// KVM_XEN_VCPU_GET_ATTR), as the values harness/model/kvm-attr.ts predicts.
import type { GuestVm } from './addon.js';
import type { KvmXenGetAttr } from '../../model/kvm-attr.js';

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
