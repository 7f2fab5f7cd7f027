// Building a fuzz run's target and reference: the model flavours run in
// process and synchronously; every other target goes through its Driver. The
// op vocabulary is cut to what both can run; a target that can run nothing
// (a kvm without Xen support) is reported as skipped, naming what it lacks.

import { createDriver } from '../drivers/index.js';
import type { Capabilities, Driver } from '../drivers/driver.js';
import { ModelDriver } from '../drivers/model/model-driver.js';
import { ops } from '../ops/index.js';
import { hostOpCapability } from '../ops/types.js';
import type { ModelVariant } from '../model/variant.js';
import type { FuzzTargets } from './engine.js';
import { driverSession, modelSession } from './exec.js';
import { vocabulary } from './steps.js';
import { KVM_FEATURE_CAPS } from './steps-kvm.js';

/** The reference a target is compared with when --against is not given. */
export const DEFAULT_REFERENCE: Record<string, string | undefined> = {
  kvm: 'model-kvm', qemu: 'model-kvm', xen: 'model', model: undefined, 'model-kvm': undefined,
};

/** What the setup of every fuzz sequence needs. */
const SETUP_NEEDS = ['guest.mode64', 'shared_info', 'hypercall.page'];

/** The target cannot run a fuzz session (exit 4: everything skipped). */
export class FuzzSkip extends Error {
  override name = 'FuzzSkip';
}

function runnable(op: string, caps: Capabilities): string | undefined {
  const def = ops.get(op)!;
  const need = [...def.requires, ...(def.model ? [hostOpCapability(op)] : [])];
  return need.find((c) => !caps.has.has(c));
}

/** Ops of the fuzz vocabulary every given target can run. */
export function allowedOps(name: string, caps: Capabilities[]): Set<string> {
  for (const c of caps) {
    const lacks = SETUP_NEEDS.find((n) => !c.has.has(n));
    if (lacks) throw new FuzzSkip(`target ${name} lacks ${lacks} (${c.missing.get(lacks) ?? 'not implemented'}): nothing to fuzz`);
  }
  const vocab = vocabulary();
  const allowed = new Set(vocab.filter((op) => caps.every((c) => runnable(op, c) === undefined)));
  if (allowed.size === 0) {
    const op = vocab[0];
    const c = caps.find((x) => runnable(op, x) !== undefined)!;
    const lack = runnable(op, c)!;
    throw new FuzzSkip(`target ${name} can run none of the fuzz ops (e.g. ${op} needs ${lack}: ${c.missing.get(lack) ?? 'not implemented by this target'})`);
  }
  return allowed;
}

function isModel(name: string): boolean {
  return name === 'model' || name === 'model-kvm';
}

function modelDriver(name: string, variant?: ModelVariant): ModelDriver {
  return new ModelDriver(name === 'model' ? 'xen' : 'kvm', variant);
}

/** Targets for `xconf fuzz`: never a broken variant (only variants.ts passes one). */
export async function buildTargets(target: string, reference: string | undefined, variant?: ModelVariant): Promise<FuzzTargets & { driver: Driver; reference?: Driver }> {
  const t = isModel(target) ? modelDriver(target, variant) : await createDriver(target);
  const r = reference === undefined ? undefined : isModel(reference) ? modelDriver(reference) : await createDriver(reference);
  const caps = [await t.probe(), ...(r ? [await r.probe()] : [])];
  const allowed = allowedOps(target, caps);
  // runstate.check_atomic replays every intermediate memory state of an update (a few ms);
  // only a reference can judge its torn counts (Xen without the update flag accepts torn
  // states by design), so alone the fuzzer moves the runstate with runstate.switch instead.
  if (!r && allowed.size > 1) allowed.delete('runstate.check_atomic');
  const has = (cap: string) => caps.every((c) => c.has.has(cap));
  const onQemu = target === 'qemu' || reference === 'qemu';
  const shape = {
    multi: has('domains.multi'), mode32: has('guest.mode32'),
    // A 32-bit ring-3 call aborts QEMU/TCG under the live kvm target: never generate what the target lacks.
    cpl3: { mode64: has('hypercall.cpl'), mode32: has('hypercall.cpl') && has('hypercall.cpl32') },
    // Real Xen's dom0 exists whatever the setup says: calls naming domain 0 reach it there.
    ownDom0: target === 'xen',
    // The qemu test guest runs one vCPU, and QEMU's Xen emulation has no per-domain limits.
    oneVcpu: onQemu,
    fixedLimits: onQemu,
    kvmFeatures: KVM_FEATURE_CAPS.filter(has),
  };
  const sync = t instanceof ModelDriver && (r === undefined || r instanceof ModelDriver);
  const liveClock = !caps.every((c) => c.has.has('time.control'));
  // A target with its own version (real Xen) sets it for both sides, as `xconf run` does.
  const fixed = caps.map((c) => c.fixedXenVersion).find((x) => x !== undefined);
  const vm = fixed === undefined ? null : /^(\d+)\.(\d+)(.*)$/.exec(fixed);
  const xenVersion = vm ? { major: Number(vm[1]), minor: Number(vm[2]), extra: vm[3] || '.0' } : undefined;
  // On a live clock nothing may hold a vCPU for good: SCHEDOP_block is not generated there
  // (steps.ts), so it is not part of the vocabulary the run's op coverage counts.
  if (liveClock && allowed.size > 1) allowed.delete('sched.block');
  if (sync) {
    const tm = t as ModelDriver;
    const rm = r as ModelDriver | undefined;
    return {
      sync, allowed, shape, liveClock, xenVersion, driver: t, reference: r,
      openTarget: (s) => modelSession(tm.openNow(s)),
      openReference: rm ? (s) => modelSession(rm.openNow(s)) : undefined,
    };
  }
  return {
    sync, allowed, shape, liveClock, xenVersion, driver: t, reference: r,
    openTarget: async (s) => driverSession(await t.open(s)),
    openReference: r ? async (s) => driverSession(await r.open(s)) : undefined,
  };
}
