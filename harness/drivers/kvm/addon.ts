// Typed wrapper over the native KVM addon (native/src/addon.cc), one module per concern:
// native.ts (constants, the addon's interface, loading, argument checks), open.ts (opening
// and probing /dev/kvm), abi.ts (KVM ABI structs), resources.ts (descriptor-owning
// KvmSystem / KvmVm / KvmVcpu / KvmEventfd), guest-vm.ts (Xen CPUID and the guest runner).
//
// - loadAddon() / openKvm() / probeKvm() never throw for environment
//   problems: they return { ok: false, reason, code } saying exactly why
//   (addon not built, /dev/kvm missing, permission denied, ...).
// - KvmSystem, KvmVm, KvmVcpu, KvmEventfd own descriptors; close() them or
//   use `using`. Every argument is checked here before the native call (and
//   again in C++). ioctl failures throw DriverError with code/errno/syscall.
// - GuestVm is the high-level helper: a VM with N vCPUs running the xconf
//   test guest (guest.ts) in 64- or 32-bit mode, one native crossing per batch
//   of guest commands, with a callback for KVM_EXIT_XEN.
export * from './native.js';
export * from './abi.js';
export * from './resources.js';
export * from './open.js';
export * from './guest-vm.js';
export type { GuestCommand, CommandResult, GuestMode } from './guest.js';
