// Runs one planned case variant against an open driver: resolves the setup,
// applies each step, checks expectations, carries variables. A Xen error code
// is an outcome to compare; only harness/driver faults become `error`.

import { UNMAPPED_VA } from '../drivers/kvm/guest.js';
import { DriverError } from '../errors.js';
import type { Capabilities, Driver, DomainSetup, SessionSetup } from '../drivers/driver.js';
import { constants } from '../ops/index.js';
import { hostOpCapability, hostOpOutCapability, IntArg, type Outcome, type OutValue, type StepPlacement } from '../ops/types.js';
import { areaDefs } from '../model/areas.js';
import { describeRet } from '../model/errno.js';
import { describeValue } from '../suite/symbols.js';
import { elementSize, fieldOffset, SCALAR_SIZE, type Scalar } from '../model/memory-layout.js';
import { evalExpr, ExprError, type VarValue } from '../suite/expr.js';
import type { Expected, LoadedCase, LoadedStep } from '../suite/loader.js';
import type { MemoryPath } from '../suite/memory-path.js';
import type { PlannedCase } from './plan.js';
import type { CaseResult, StepObservation, StepRecord } from './results.js';

export const DEFAULTS = {
  timeoutSeconds: 30,
  memoryBytes: 16 << 20,
  sharedInfo: 0x80000,
  hypercallPage: 0x81000,
  scratch: 0x100000,
  xenVersion: '4.19',
};

/** A step whose expectation did not hold. */
class Mismatch extends Error {}

type Vars = Map<string, VarValue>;

function evalArg(a: IntArg, vars: Vars): bigint {
  return evalExpr(a.expr, constants, vars);
}

/** Replace IntArgs by values, deeply. */
function resolveArgs(v: unknown, vars: Vars): unknown {
  if (v instanceof IntArg) return evalArg(v, vars);
  if (Array.isArray(v)) return v.map((x) => resolveArgs(x, vars));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolveArgs(x, vars)]));
  return v;
}

/**
 * Whether a real hypervisor's own version satisfies a case's setup.xen_version: the same
 * major.minor, and the same extra version when the case names one ("4.17" takes 4.17.7).
 */
export function versionMatches(want: string, fixed: string): boolean {
  const a = /^(\d+)\.(\d+)(.*)$/.exec(want), b = /^(\d+)\.(\d+)(.*)$/.exec(fixed);
  return !!a && !!b && a[1] === b[1] && a[2] === b[2] && (a[3] === '' || a[3] === b[3]);
}

/** The version a case runs with: a real hypervisor's own (or the differential target's), else its setup's, else the default. */
function versionOf(c: LoadedCase, fixed: string | undefined): string {
  const want = c.setup.xen_version;
  if (fixed !== undefined && (want === undefined || versionMatches(want, fixed))) return fixed;
  return want ?? DEFAULTS.xenVersion;
}

/** A case that asks for another version than a real hypervisor's own cannot run there. */
function versionSkip(c: LoadedCase, caps: Capabilities): string | undefined {
  const want = c.setup.xen_version;
  if (caps.fixedXenVersion === undefined || want === undefined || versionMatches(want, caps.fixedXenVersion)) return undefined;
  return `Requirement not met: setup.xen_version ${want} (the hypervisor is Xen ${caps.fixedXenVersion}; its version is not the case's to choose)`;
}

/** Bind the setup variables (check-case.ts SETUP_VARS) from a resolved setup. */
function setupVars(vars: Vars, setup: SessionSetup): void {
  vars.set('xen_major', BigInt(setup.xenVersion.major));
  vars.set('xen_minor', BigInt(setup.xenVersion.minor));
}

export function resolveSetup(c: LoadedCase, vars: Vars, xenVersion?: string): SessionSetup {
  const s = c.setup;
  const num = (a: IntArg | undefined, d: number): number => (a === undefined ? d : Number(evalArg(a, vars)));
  const mode = num(s.mode, 64);
  if (mode !== 64 && mode !== 32) throw new ExprError(`setup.mode must be 64 or 32, got ${mode}`);
  const vm = /^(\d+)\.(\d+)(.*)$/.exec(versionOf(c, xenVersion));
  if (!vm) throw new ExprError(`xen_version '${versionOf(c, xenVersion)}' is not MAJOR.MINOR[EXTRA]`);
  const [, maj, minor, extra] = vm;
  const domains: DomainSetup[] = (s.domains ?? [{ id: new IntArg({ k: 'num', v: 1n }, '1') }]).map((d) => ({
    id: num(d.id, 1),
    vcpus: num(d.vcpus, 1),
    privileged: d.privileged ?? false,
    memoryBytes: num(d.memory, DEFAULTS.memoryBytes),
    sharedInfo: d.shared_info === null ? null : num(d.shared_info ?? undefined, DEFAULTS.sharedInfo),
    hypercallPage: d.hypercall_page === null ? null : num(d.hypercall_page ?? undefined, DEFAULTS.hypercallPage),
    limits: Object.fromEntries(Object.entries(d.limits ?? {}).map(([k, v]) => [k, Number(evalArg(v, vars))])),
  }));
  for (const d of domains) {
    if (d.memoryBytes > UNMAPPED_VA.base) {
      throw new ExprError(`domain ${d.id}'s memory 0x${d.memoryBytes.toString(16)} runs past 0x${UNMAPPED_VA.base.toString(16)}, where the test guests keep a range unmapped: at most 0x${UNMAPPED_VA.base.toString(16)} bytes`);
    }
  }
  let cpu = s.cpu;
  if (cpu?.startsWith('$')) {
    const v = vars.get(cpu.slice(1));
    if (v !== 'intel' && v !== 'amd') throw new ExprError(`setup.cpu: ${cpu} must be intel or amd, got ${String(v)}`);
    cpu = v;
  }
  return {
    mode,
    cpu: cpu as 'intel' | 'amd' | undefined,
    xenVersion: { major: Number(maj), minor: Number(minor), extra: extra || '.0' },
    scratch: num(s.scratch, DEFAULTS.scratch),
    domains,
  };
}

/** Whether a step's arguments make it a no-op; a value known only at run time does not. */
function isInert(inert: (args: Record<string, unknown>) => boolean, args: unknown, vars: Vars): boolean {
  try {
    return inert(resolveArgs(args, vars) as Record<string, unknown>);
  } catch {
    return false;
  }
}

/** Capabilities a variant needs: the case's, its ops', and what its setup implies. */
export function requirements(c: LoadedCase, setup: SessionSetup, vars?: Vars): string[] {
  const req = new Set(c.requires);
  for (const s of c.steps) {
    if (s.op.inert && vars && isInert(s.op.inert, s.args, vars)) continue;
    for (const r of s.op.requires) req.add(r);
    // A host- or guest-side action is a capability of its own: a target runs only those it implements.
    if (s.op.model) {
      req.add(hostOpCapability(s.op.name));
      for (const [k] of s.expect.out) req.add(hostOpOutCapability(s.op.name, k));
      for (const [, from] of s.save) if (from !== 'ret') req.add(hostOpOutCapability(s.op.name, from));
    }
    if (s.cpl !== undefined && vars) {
      try {
        const cpl = evalArg(s.cpl, vars);
        if (cpl === 1n || cpl === 2n) req.add('hypercall.cpl12');
      } catch {
        // depends on a value saved at run time: the step itself will tell
      }
    }
  }
  if (setup.domains.length > 1) req.add('domains.multi');
  req.add(setup.mode === 32 ? 'guest.mode32' : 'guest.mode64');
  if (setup.cpu) req.add(`cpu.${setup.cpu}`);
  // A 32-bit guest calling from ring 3 needs more of the target than a 64-bit one
  // (a TSS stack switch on the way back): its own capability.
  if (setup.mode === 32 && c.steps.some((s) => s.cpl !== undefined)) req.add('hypercall.cpl32');
  if (setup.domains.some((d) => d.sharedInfo !== null)) req.add('shared_info');
  if (setup.domains.some((d) => d.hypercallPage !== null)) req.add('hypercall.page');
  return [...req].sort();
}

function fmt(v: OutValue | undefined): string {
  if (v === undefined) return '(nothing)';
  if (typeof v === 'bigint') return describeRet(v);
  if (Array.isArray(v)) return `[${v.map((x) => x.toString()).join(', ')}]`;
  return JSON.stringify(v);
}

function checkValue(what: string, expected: Expected, actual: OutValue | Uint8Array | undefined, vars: Vars): void {
  if (actual instanceof Uint8Array) {
    const want = 'bytes' in expected && expected.bytes ? expected.bytes : undefined;
    if (!want) throw new Mismatch(`${what}: expected value is not a byte pattern`);
    const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
    if (want.length !== actual.length || want.some((b, i) => b !== actual[i])) {
      throw new Mismatch(`${what}: expected ${hex(want)}, got ${hex(actual)}`);
    }
    return;
  }
  if ('list' in expected) {
    const want = expected.list.map((a) => evalArg(a, vars));
    const ok = Array.isArray(actual) && actual.length === want.length && actual.every((x, i) => x === want[i]);
    if (!ok) throw new Mismatch(`${what}: expected [${want.join(', ')}], got ${fmt(actual)}`);
    return;
  }
  if (typeof actual === 'string' || expected.int === undefined) {
    if (actual !== expected.src) throw new Mismatch(`${what}: expected ${JSON.stringify(expected.src)}, got ${fmt(actual)}`);
    return;
  }
  const want = evalArg(expected.int, vars);
  const hint = expected.int.expr;
  if (actual !== want) throw new Mismatch(`${what}: expected ${describeValue(want, hint)}, got ${typeof actual === 'bigint' ? describeValue(actual, hint) : fmt(actual)}`);
}

async function readPath(session: Awaited<ReturnType<Driver['open']>>, p: MemoryPath, dom: number, vars: Vars): Promise<bigint | Uint8Array> {
  const d = p.dom ?? dom;
  const ev = (e: Parameters<typeof evalExpr>[0]) => evalExpr(e, constants, vars);
  if (p.kind === 'raw') return readScalar(await session.read(d, Number(ev(p.addr)), p.size), 'u' + p.size * 8 as Scalar);
  if (p.kind === 'bytes') return session.read(d, Number(ev(p.addr)), p.len);
  const view = session.areas(d);
  const def = areaDefs.get(p.area)!;
  const idx = p.areaIndex ? Number(ev(p.areaIndex)) : 0;
  const base = def.locate(view, idx);
  if (base === undefined) throw new Mismatch(`${p.text}: ${p.area}${def.indexed ? `[${idx}]` : ''} is not placed in guest memory`);
  const layout = def.layout(view.width);
  const f = layout.fields[p.field];
  if (!f) throw new Mismatch(`${p.text}: field ${p.field} does not exist in the ${view.width}-bit layout`);
  const fi = p.fieldIndex ? Number(ev(p.fieldIndex)) : 0;
  let loc;
  try {
    loc = fieldOffset(f, fi);
  } catch (e) {
    throw new Mismatch(`${p.text}: ${(e as Error).message} in the ${view.width}-bit layout`);
  }
  const bytes = await session.read(d, base + loc.offset, elementSize(f));
  if (f.type === 'bytes') return bytes;
  if (f.type === 'bits') {
    const word = readScalar(bytes, f.wordBits === 32 ? 'u32' : 'u64');
    return (word >> BigInt(loc.bit!)) & 1n;
  }
  return readScalar(bytes, f.type);
}

function readScalar(b: Uint8Array, t: Scalar): bigint {
  const size = SCALAR_SIZE[t];
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  return t.startsWith('i') ? BigInt.asIntN(size * 8, v) : v;
}

export interface RunCaseOptions {
  timeoutSeconds?: number;
  /** The version cases without setup.xen_version run with (a differential reference follows its target's). */
  xenVersion?: string;
  /** Called as each step starts (isolated runs report progress to the parent with it). */
  onStep?: (index: number, label: string) => void;
  /** Called with each step's resolved arguments and placement before it runs (the fuzzer's seed corpus). */
  onResolved?: (step: ResolvedStep) => void;
}

/** A step as it runs: its op, its arguments with every variable and saved value resolved, where it runs. */
export interface ResolvedStep {
  index: number;
  op: string;
  args: unknown;
  place: StepPlacement;
  setup: SessionSetup;
}

export function caseTimeoutMs(c: LoadedCase, opts: RunCaseOptions): number {
  return (c.timeout ?? opts.timeoutSeconds ?? DEFAULTS.timeoutSeconds) * 1000;
}

/** Whether a variant can run on a target, and if not, the skip message. */
export function skipReason(pc: PlannedCase, caps: Capabilities): string | undefined {
  try {
    const vars: Vars = new Map(pc.variant.bindings);
    for (const [k, a] of pc.case.vars) vars.set(k, evalArg(a, vars));
    const vskip = versionSkip(pc.case, caps);
    if (vskip) return vskip;
    const missing = requirements(pc.case, resolveSetup(pc.case, vars, caps.fixedXenVersion), vars).filter((r) => !caps.has.has(r));
    if (!missing.length) return undefined;
    return `Requirement not met: ${missing.map((m) => `${m} (${caps.missing.get(m) ?? 'not implemented by this target'})`).join(', ')}`;
  } catch {
    return undefined; // the case itself reports setup errors when it runs
  }
}

export async function runCase(pc: PlannedCase, driver: Driver, caps: Capabilities, opts: RunCaseOptions = {}): Promise<CaseResult> {
  const c = pc.case;
  const t0 = performance.now();
  const steps: StepRecord[] = c.steps.map((s) => ({ index: s.index, label: s.label, line: s.line, status: 'not-run' }));
  const result = (status: CaseResult['status'], message?: string, detail?: string): CaseResult => ({
    id: c.id, variant: pc.variant.name, name: pc.name, file: c.file, description: c.description, spec: c.spec,
    status, message, detail, durationMs: performance.now() - t0, steps,
  });
  const vars: Vars = new Map(pc.variant.bindings);
  let setup: SessionSetup;
  try {
    for (const [k, a] of c.vars) vars.set(k, evalArg(a, vars));
    setup = resolveSetup(c, vars, caps.fixedXenVersion ?? opts.xenVersion);
    setupVars(vars, setup);
  } catch (e) {
    return result('error', `setup: ${(e as Error).message}`);
  }
  const vskip = versionSkip(c, caps);
  if (vskip) return result('skip', vskip);
  const missing = requirements(c, setup, vars).filter((r) => !caps.has.has(r));
  if (missing.length) {
    const why = missing.map((m) => `${m} (${caps.missing.get(m) ?? 'not implemented by this target'})`).join(', ');
    return { ...result('skip', `Requirement not met: ${why}`), missing };
  }
  const limit = caseTimeoutMs(c, opts);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<CaseResult>((res) => {
    timer = setTimeout(() => res(result('error', `timeout: case did not finish within ${limit / 1000}s`)), limit);
  });
  try {
    return await Promise.race([execute(c, setup, vars, driver, steps, result, opts.onStep, opts.onResolved), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function execute(
  c: LoadedCase, setup: SessionSetup, vars: Vars, driver: Driver, steps: StepRecord[],
  result: (s: CaseResult['status'], m?: string, d?: string) => CaseResult,
  onStep?: (index: number, label: string) => void,
  onResolved?: (step: ResolvedStep) => void,
): Promise<CaseResult> {
  const savedNames = savedVariables(c);
  let session;
  try {
    session = await driver.open(setup);
  } catch (e) {
    // A setup the target cannot build (e.g. more vCPUs than its test guest has room for) is a skip.
    if (e instanceof DriverError && e.code === 'EUNSUPPORTED') return result('skip', `Requirement not met: ${e.message}`);
    return result('error', `open: ${(e as Error).message}`);
  }
  const firstDom = setup.domains[0].id;
  try {
    for (const s of c.steps) {
      const rec = steps[s.index];
      const where = `step ${s.index + 1} (${s.label}, line ${s.line})`;
      onStep?.(s.index, s.label);
      let outcome: Outcome;
      let place: StepPlacement;
      try {
        place = {
          dom: s.dom ? Number(evalArg(s.dom, vars)) : firstDom,
          vcpu: s.vcpu ? Number(evalArg(s.vcpu, vars)) : 0,
          cpl: s.cpl ? Number(evalArg(s.cpl, vars)) : 0,
          via: s.via ?? 'auto',
        };
        const args = resolveArgs(s.args, vars);
        onResolved?.({ index: s.index, op: s.op.name, args, place, setup });
        const action = s.op.encode(args as never, {
          width: setup.mode, scratch: setup.scratch + place.vcpu * 4096, dom: place.dom, vcpu: place.vcpu,
        });
        // A step its arguments make a no-op needs nothing of the target (requirements()): it is not sent.
        outcome = s.op.inert?.(args as Record<string, unknown>) ? { ret: 0n } : await session.apply(action, place);
        rec.servedBy = outcome.servedBy;
        if (outcome.kernelDeliveries) rec.kernelDeliveries = outcome.kernelDeliveries;
        rec.kind = action.kind;
      } catch (e) {
        if (e instanceof ExprError) {
          rec.status = 'error';
          rec.message = e.message;
          return result('error', `${where}: ${e.message}`);
        }
        rec.status = 'error';
        rec.message = (e as Error).message;
        const code = e instanceof DriverError ? ` [${e.code}${e.syscall ? ` ${e.syscall}` : ''}]` : '';
        return result('error', `${where}: ${(e as Error).message}${code}`);
      }
      rec.observed = observe(s, outcome, savedNames);
      try {
        await checkStep(s, outcome, vars, session, place.dom);
        rec.status = 'pass';
      } catch (e) {
        if (!(e instanceof Mismatch) && !(e instanceof ExprError)) throw e;
        rec.status = 'fail';
        rec.message = e.message;
        const trace = steps.filter((r) => r.status !== 'not-run').map((r) => `  ${r.index + 1}. ${r.label}: ${r.status}${r.servedBy ? ` (${r.servedBy})` : ''}${r.message ? `: ${r.message}` : ''}`).join('\n');
        return result('fail', `${where}: ${e.message}`, `${c.file}:${s.line}\n${trace}`);
      }
      for (const [name, from] of s.save) {
        const v = from === 'ret' ? outcome.ret : outcome.out?.[from];
        if (v === undefined) {
          rec.status = 'error';
          return result('error', `${where}: cannot save $${name}: the step gave no ${from}`);
        }
        vars.set(name, v);
      }
      for (const [expr, want] of s.expect.values) {
        const got = evalArg(expr, vars);
        const w = evalArg(want, vars);
        if (got !== w) {
          rec.status = 'fail';
          rec.message = `${expr.src}: expected ${describeValue(w, want.expr)}, got ${describeValue(got, want.expr)}`;
          return result('fail', `${where}: ${rec.message}`, `${c.file}:${s.line}`);
        }
      }
    }
    return result('pass');
  } finally {
    await session[Symbol.asyncDispose]();
  }
}

function observedValue(v: OutValue): string {
  return Array.isArray(v) ? `[${v.map((x) => x.toString()).join(', ')}]` : v.toString();
}

/** Names the case saves from its steps' results: values a target observed at run time. */
export function savedVariables(c: LoadedCase): Set<string> {
  return new Set(c.steps.flatMap((s) => s.save.map(([name]) => name)));
}

function refersTo(src: string, names: ReadonlySet<string>): boolean {
  for (const m of src.matchAll(/\$([A-Za-z_][A-Za-z0-9_]*)/g)) if (names.has(m[1])) return true;
  return false;
}

/**
 * What a step observed, for differential runs: ret, fault, and the OUT keys its
 * expectation names with a value fixed by the case. A key expected relative to a
 * value saved at run time (a live clock, say) is left out: two targets agree on
 * the relation, not on the number, and the step's status already compares that.
 */
export function observe(s: LoadedStep, o: Outcome, saved: ReadonlySet<string> = new Set()): StepObservation {
  const obs: StepObservation = {};
  if (o.ret !== undefined) obs.ret = o.ret.toString();
  if (o.fault !== undefined) obs.fault = o.fault;
  const fixed = s.expect.out.filter(([, want]) => !refersTo(want.src, saved));
  if (fixed.length) {
    obs.out = {};
    for (const [k] of fixed) {
      const v = o.out?.[k];
      if (v !== undefined) obs.out[k] = observedValue(v);
    }
  }
  return obs;
}

async function checkStep(s: LoadedStep, o: Outcome, vars: Vars, session: Awaited<ReturnType<Driver['open']>>, dom: number): Promise<void> {
  const e = s.expect;
  // An unexpected fault is a mismatch whatever else was expected.
  if (o.fault !== undefined && e.fault === undefined) throw new Mismatch(`unexpected fault ${o.fault}`);
  if (e.fault !== undefined) {
    const want = e.fault ?? undefined;
    if (o.fault !== want) throw new Mismatch(`fault: expected ${want ?? 'none'}, got ${o.fault ?? 'none'}`);
  }
  if (e.ret !== undefined) {
    const want = evalArg(e.ret, vars);
    if (o.ret === undefined) throw new Mismatch(`ret: expected ${describeValue(want, e.ret.expr)}, but the step returned nothing`);
    if (o.ret !== want) throw new Mismatch(`ret: expected ${describeValue(want, e.ret.expr)}, got ${describeValue(o.ret, e.ret.expr)}`);
  }
  for (const [k, want] of e.out) checkValue(`out.${k}`, want, o.out?.[k], vars);
  if (e.servedBy && o.servedBy && e.servedBy !== o.servedBy && o.servedBy !== 'model') {
    throw new Mismatch(`served_by: expected ${e.servedBy}, got ${o.servedBy}`);
  }
  for (const { path, expected } of e.memory) {
    const actual = await readPath(session, path, dom, vars);
    checkValue(path.text, expected, actual, vars);
  }
}
