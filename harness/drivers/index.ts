// Target registry: name -> driver factory. The kvm driver is loaded lazily so
// the model works on machines where the native addon is absent.
import { UsageError } from '../errors.js';
import type { Driver } from './driver.js';
import { ModelDriver } from './model/model-driver.js';

export const TARGETS = ['model', 'model-kvm', 'kvm'] as const;
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
  }
  throw new UsageError(`unknown target '${name}' (targets: ${TARGETS.join(', ')})`);
}
