// Named constants usable in case files (EINVAL, DOMID_SELF, XENVER_version, ...).
// Each subsystem's op module registers its own with defineConstants().

import { XEN_ERRNO } from '../model/errno.js';
import { DOMID_ANY, DOMID_COW, DOMID_IDLE, DOMID_INVALID, DOMID_IO, DOMID_SELF, DOMID_XEN } from '../model/domain.js';
import { HYPERVISOR, XEN_HYPERCALL_MSR } from '../model/hypercall.js';
import { MAP_PIRQ_TYPE, PHYSDEVOP } from '../model/physdev.js';

export const constants = new Map<string, bigint>();
/** The family (defineConstants prefix, '' for loose names) of every constant. */
export const constantFamily = new Map<string, string>();

export function defineConstants(prefix: string, table: Record<string, number | bigint>): void {
  for (const [k, v] of Object.entries(table)) {
    const name = `${prefix}${k}`;
    const value = BigInt(v);
    const had = constants.get(name);
    if (had !== undefined && had !== value) throw new Error(`constant ${name} defined twice with different values`);
    constants.set(name, value);
    constantFamily.set(name, prefix);
  }
}

defineConstants('', XEN_ERRNO);
defineConstants('', {
  DOMID_SELF, DOMID_IO, DOMID_XEN, DOMID_COW, DOMID_INVALID, DOMID_ANY, DOMID_IDLE,
  XEN_HYPERCALL_MSR, PAGE_SIZE: 4096,
});
defineConstants('HYPERVISOR_', HYPERVISOR);
defineConstants('PHYSDEVOP_', PHYSDEVOP);
defineConstants('MAP_PIRQ_TYPE_', MAP_PIRQ_TYPE);
