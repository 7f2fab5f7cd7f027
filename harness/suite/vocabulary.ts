// Closed vocabularies checked by the loader: capabilities (what a target
// implements; cases list what they need in `requires:`) and flags.

export const CAPABILITIES: Record<string, string> = {
  xenstore: 'a xenstore server on the ring and port HVM_PARAM_STORE_PFN / STORE_EVTCHN give',
  'xenstore.malformed': 'a guest may send xenstored malformed input (broken ring indexes, an oversize header, a payload without its NUL) and the next case still gets a working toolstack',
  'hypercall.intercept': 'hypercalls from the guest reach the Xen emulation',
  'hypercall.page': 'writing the Xen hypercall MSR fills the hypercall page',
  'hypercall.cpl': 'hypercalls can be issued from guest CPL > 0',
  'hypercall.cpl12': 'hypercalls can be issued from rings 1 and 2',
  'hypercall.cpl32': 'hypercalls can be issued from CPL > 0 by a 32-bit (compat) guest',
  'hypercall.raw_regs': 'arbitrary register values can be set for a hypercall',
  shared_info: 'the shared_info page can be placed in guest memory',
  vcpu_info: 'vcpu_info areas (shared_info slots or registered) are maintained',
  runstate: 'the vCPU runstate area is updated',
  'runstate.update_flag': 'runstate updates follow the XEN_RUNSTATE_UPDATE protocol',
  'kvm.shared_info_hva': 'KVM takes shared_info and vcpu_info by host virtual address (KVM_XEN_HVM_CONFIG_SHARED_INFO_HVA, Linux 6.9+)',
  'evtchn.2l': '2-level event channels',
  'evtchn.fifo': 'FIFO event channels',
  'evtchn.send': 'EVTCHNOP_send is handled',
  'evtchn.host_send': 'the host can raise an event on a port (KVM_XEN_HVM_EVTCHN_SEND)',
  'evtchn.upcall_vector': 'a per-vCPU upcall vector (HVMOP_set_evtchn_upcall_vector) is injected into the vCPU\'s LAPIC by the event-channel code (KVM_XEN_VCPU_ATTR_TYPE_UPCALL_VECTOR)',
  'evtchn.callback_vector': 'the domain callback vector (HVM_PARAM_CALLBACK_IRQ, vector type) is injected while evtchn_upcall_pending is set (KVM_XEN_ATTR_TYPE_UPCALL_VECTOR)',
  'sched.poll': 'SCHEDOP_poll',
  'physdev.pirq': 'PHYSDEVOP\'s PIRQ commands (map_pirq, unmap_pirq, eoi, irq_status_query, get_free_pirq) are served: an HVM domain with PIRQ emulation (XEN_X86_EMU_USE_PIRQ)',
  'evtchn.upcall_held': 'an upcall made pending between steps stays pending until the next call: the guest takes no interrupt in between (the model; a live guest runs with interrupts on, and takes Xen\'s callback vector as soon as evtchn_upcall_pending is set)',
  'sched.shutdown_continues': 'the guest runs on after its own SCHEDOP_shutdown, so a case can call it again (the model; on Xen domain_shutdown pauses every vCPU of the domain)',
  timer: 'Xen one-shot / periodic timers and VIRQ_TIMER',
  'gnttab.v1': 'grant tables, version 1',
  'gnttab.v2': 'grant tables, version 2',
  'domains.multi': 'more than one guest domain in one case',
  'time.control': 'the case controls the clock (deterministic time)',
  'guest.mode32': '32-bit protected-mode guests (compat layouts)',
  'guest.mode64': '64-bit long-mode guests',
  'flavor.xen': 'the target follows Xen where Xen and KVM document different behaviour',
  'flavor.kvm': 'the target follows KVM where Xen and KVM document different behaviour',
  'cpu.intel': 'the (emulated) CPU is Intel: vmcall',
  'cpu.amd': 'the (emulated) CPU is AMD: vmmcall',
  'kvm.plain': 'plain KVM: VM and vCPU creation and guest execution without Xen',
  'version.build_strings': 'xen_version\'s build strings (compiler, compile_by, changeset, capabilities) are the model\'s, so a case can name them',
};

export const FLAGS: Record<string, string> = {
  slow: 'takes more than a second on the model',
  xsa: 'reproduces a Xen security advisory scenario',
  regression: 'would have caught a bug that shipped',
  destructive: 'may crash or wedge a vulnerable target',
};

export function isCapability(s: string): boolean {
  return Object.hasOwn(CAPABILITIES, s);
}
