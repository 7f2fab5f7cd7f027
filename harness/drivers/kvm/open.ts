// Opening /dev/kvm and probing what its KVM offers; never throws for environment
// problems, says why instead ({ ok: false, reason, code }).
import { existsSync, readFileSync } from 'node:fs';
import { KvmSystem } from './resources.js';
import { DriverError } from '../../errors.js';
import { KVM_CAP, describeOpenError, isSysError, loadAddon, xenHvmFlagNames, type NativeSystem, type Unavailable } from './native.js';

/** Open /dev/kvm, or say why not. */
export function openKvm(path = '/dev/kvm'): { ok: true; kvm: KvmSystem } | Unavailable {
  const loaded = loadAddon();
  if (!loaded.ok) return loaded;
  let native: NativeSystem;
  try {
    native = new loaded.addon.System(path);
  } catch (e) {
    if (isSysError(e)) return { ok: false, code: e.code, errno: e.errno, reason: describeOpenError(path, e.code, e.errno) };
    throw e;
  }
  const kvm = new KvmSystem(native, loaded.addon);
  try {
    const v = kvm.apiVersion();
    if (v !== 12) {
      kvm.close();
      return { ok: false, code: 'EPROTO', reason: `KVM API version is ${v}, xconf needs 12` };
    }
  } catch (e) {
    kvm.close();
    if (e instanceof DriverError) return { ok: false, code: e.code, errno: e.errno, reason: e.message };
    throw e;
  }
  return { ok: true, kvm };
}

/** Which vendor module backs /dev/kvm (from /sys/module). PVM runs guests without VMX/SVM. */
export function kvmModule(): 'kvm_intel' | 'kvm_amd' | 'kvm_pvm' | 'unknown' {
  for (const m of ['kvm_intel', 'kvm_amd', 'kvm_pvm'] as const) if (existsSync(`/sys/module/${m}`)) return m;
  return 'unknown';
}

export interface KvmProbe {
  module: ReturnType<typeof kvmModule>;
  apiVersion: number;
  /** KVM_CHECK_EXTENSION(KVM_CAP_XEN_HVM): 0 when the kernel has no Xen support. */
  xenHvm: number;
  xenHvmFlags: string[];
  irqchip: boolean;
  irqRouting: boolean;
  irqfd: boolean;
  immediateExit: boolean;
  maxVcpus: number;
}

/** What this host's KVM offers, or why it cannot be used. */
export function probeKvm(path = '/dev/kvm'): ({ ok: true } & KvmProbe) | Unavailable {
  const o = openKvm(path);
  if (!o.ok) return o;
  using kvm = o.kvm;
  const xenHvm = kvm.checkExtension(KVM_CAP.XEN_HVM);
  return {
    ok: true,
    module: kvmModule(),
    apiVersion: kvm.apiVersion(),
    xenHvm,
    xenHvmFlags: xenHvmFlagNames(xenHvm),
    irqchip: kvm.checkExtension(KVM_CAP.IRQCHIP) > 0,
    irqRouting: kvm.checkExtension(KVM_CAP.IRQ_ROUTING) > 0,
    irqfd: kvm.checkExtension(KVM_CAP.IRQFD) > 0,
    immediateExit: kvm.checkExtension(KVM_CAP.IMMEDIATE_EXIT) > 0,
    maxVcpus: kvm.checkExtension(KVM_CAP.MAX_VCPUS) || kvm.checkExtension(KVM_CAP.NR_VCPUS),
  };
}

// ---------------------------------------------------------- arg checking --
