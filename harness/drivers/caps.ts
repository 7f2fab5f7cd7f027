// Capability sets of the targets that run the test guest on a real hypervisor (xen,
// qemu): what every such target works out the same way from its facts.
import { ops } from '../ops/index.js';
import { hostOpCapability, hostOpOutCapability } from '../ops/types.js';
import { CAPABILITIES } from '../suite/vocabulary.js';

export interface GuestTargetFacts {
  /** The CPU vendor, when known: the cpu.* capabilities follow it. */
  vendor: 'intel' | 'amd' | undefined;
  /** Who writes the hypercall instruction into the page ("Xen", "KVM"). */
  pageWriter: string;
  /** The host-side ops the driver performs. */
  hostOps: readonly string[];
  /** Why the driver cannot perform another host-side op. */
  hostOpMissing: (op: string) => string;
  /** OUT values (`op.field`) of ops the driver performs that it cannot show, and why. */
  unobservableOut?: Record<string, string>;
  /** The driver, in the reason of a capability nothing else accounts for. */
  driver: string;
}

/** Adds the cpu.*, host-op and remaining vocabulary capabilities to `has` or `missing`. */
export function completeCapabilities(has: Set<string>, missing: Map<string, string>, f: GuestTargetFacts): void {
  for (const v of ['intel', 'amd'] as const) {
    if (f.vendor === v) has.add(`cpu.${v}`);
    else missing.set(`cpu.${v}`, `the CPU is ${f.vendor ?? 'unknown'}; ${f.pageWriter} writes its hypercall instruction`);
  }
  for (const op of ops.values()) {
    if (!op.model) continue;
    if (f.hostOps.includes(op.name)) {
      has.add(hostOpCapability(op.name));
      for (const k of op.out ?? []) {
        const why = f.unobservableOut?.[`${op.name}.${k}`];
        if (why) missing.set(hostOpOutCapability(op.name, k), why);
        else has.add(hostOpOutCapability(op.name, k));
      }
    } else missing.set(hostOpCapability(op.name), f.hostOpMissing(op.name));
  }
  for (const c of Object.keys(CAPABILITIES)) if (!has.has(c) && !missing.has(c)) missing.set(c, `not provided by the ${f.driver} driver`);
}
