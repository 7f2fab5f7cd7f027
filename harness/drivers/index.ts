// Target registry: name -> driver factory. The kvm and xen drivers are loaded lazily
// so the model works on machines where the native addons are absent.
import { UsageError } from '../errors.js';
import type { Driver } from './driver.js';
import { ModelDriver } from './model/model-driver.js';

export const TARGETS = ['model', 'model-kvm', 'kvm', 'xen', 'qemu'] as const;
export type TargetName = (typeof TARGETS)[number];

export async function createDriver(name: string): Promise<Driver> {
  switch (name) {
    case 'model':
      return new ModelDriver('xen');
    case 'model-kvm':
      return new ModelDriver('kvm');
    case 'kvm': {
      const { KvmDriver } = await import('./kvm/kvm-driver.js');
      return new KvmDriver();
    }
    case 'xen': {
      const { XenDriver } = await import('./xen/xen-driver.js');
      return new XenDriver();
    }
    case 'qemu': {
      const { QemuDriver } = await import('./qemu/qemu-driver.js');
      return new QemuDriver();
    }
  }
  throw new UsageError(`unknown target '${name}' (targets: ${TARGETS.join(', ')})`);
}
