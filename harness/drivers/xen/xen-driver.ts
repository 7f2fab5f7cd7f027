// The xen target: a real Xen hypervisor, driven from dom0. Each case gets a
// fresh PVH domain running the xconf test guest (xen-guest.ts); the session
// (guest-session.ts) has the real Xen answer every guest step, and reaches a
// domain's xenstore ring through a foreign mapping; host-side ops are
// xen-platform.ts.
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { DriverError } from '../../errors.js';
import { completeCapabilities } from '../caps.js';
import type { Capabilities, Driver, Session, SessionSetup } from '../driver.js';
import { destroyAll, GuestSession, ShadowMemory } from '../guest-session.js';
import { ModelDriver } from '../model/model-driver.js';
import { XEN_MAX_VCPUS, XL_LIMITS, XenGuest } from './xen-guest.js';
import { backendUnsupported, XEN_PLATFORM_OPS, XEN_PLATFORM_UNOBSERVABLE, XenPlatform, type ConsoleCursor } from './xen-platform.js';
import { xenAddon } from './native.js';

/** What the test guest on this target cannot do, whatever Xen can. */
const NOT_PROVIDED: Record<string, string> = {
  'time.control': 'time on real Xen is the hypervisor\'s clock, not controlled by the case',
  'flavor.kvm': 'the xen target is Xen itself',
  'physdev.pirq': 'the xen target\'s domains are PVH, without PIRQ emulation (XEN_X86_EMU_USE_PIRQ)',
  'kvm.plain': 'plain-KVM checks need the kvm target',
  'hypercall.raw_regs': 'the test guest passes arguments by the calling convention only',
  'hypercall.cpl12': 'the test guest runs its calls at CPL 0 or 3 only',
  'hypercall.cpl32': 'the test guest\'s 32-bit ring-3 path is not supported under QEMU TCG (its TSS switch aborts)',
  'evtchn.upcall_held': 'the test guest runs with interrupts on, and Xen injects a callback vector whenever evtchn_upcall_pending is set, whatever evtchn_upcall_mask says (xen/arch/x86/hvm/irq.c hvm_vcpu_has_pending_irq): an upcall set pending by the host is taken before the next call',
  'sched.shutdown_continues': 'Xen pauses every vCPU of a domain that shuts down (xen/common/domain.c domain_shutdown): the guest makes no call after its SCHEDOP_shutdown',
  'version.build_strings': 'real Xen reports its own build (compiler, compile_by, changeset), not the model\'s',
  // Seen twice with Xen 4.17.7, after raw-corrupt-req-prod and after raw-missing-nul-einval:
  // xl destroy, then every later xl create, timed out (60 s each).
  'xenstore.malformed': 'after a case sent xenstored malformed input, the toolstack hung (xl destroy and every later xl create timed out) on Xen 4.17.7 with the domain id reused at once, as the xen target does',
};

/**
 * Host-side ops whose answer is state Xen keeps to itself: no guest and no dom0 tool can
 * read it, so only the model shows it and a case that needs it skips saying so.
 */
const MODEL_ONLY_OPS: Record<string, string> = {
  'runstate.check_atomic': 'replaying every intermediate memory state of the runstate update is something only the model can do',
  'evtchn.upcall_count': 'Xen counts no upcalls a guest or dom0 can read: only the model can show them',
  'timer.status': 'Xen\'s timers are its own: only the model can show their state',
};

/** Host-side ops this driver performs (the guest's own hypercalls, or dom0 through the libraries). */
export const XEN_HOST_OPS = [...XEN_PLATFORM_OPS, 'evtchn.use_fifo', 'evtchn.alloc_many', 'evtchn.run_upcall', 'evtchn.set_mask', 'gnttab.grant', 'gnttab.grant_range', 'gnttab.end_access',
  'xenstore.request', 'xenstore.raw', 'xenstore.event', 'xenstore.params'];
export interface XenInfo {
  version: { major: number; minor: number; extra: string };
  virtCaps: string[];
  vendor: 'intel' | 'amd' | undefined;
}

/** Facts from `xl info` and /proc/cpuinfo. */
export function parseXlInfo(text: string, cpuinfo: string): XenInfo {
  const field = (k: string) => new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm').exec(text)?.[1].trim();
  const major = Number(field('xen_major')), minor = Number(field('xen_minor'));
  if (!Number.isInteger(major) || !Number.isInteger(minor)) throw new DriverError('xl info gave no xen_major / xen_minor: is this a Xen dom0?', { code: 'ENOXEN' });
  const vendor = /^vendor_id\s*:\s*(\S+)/m.exec(cpuinfo)?.[1];
  return {
    version: { major, minor, extra: field('xen_extra') ?? '' },
    virtCaps: (field('virt_caps') ?? '').split(/\s+/).filter(Boolean),
    vendor: vendor === 'AuthenticAMD' || vendor === 'HygonGenuine' ? 'amd' : vendor === 'GenuineIntel' ? 'intel' : undefined,
  };
}

export function xenCapabilities(info: XenInfo): Capabilities {
  const has = new Set<string>(['guest.mode64', 'guest.mode32', 'flavor.xen', 'domains.multi', 'hypercall.intercept', 'hypercall.page', 'hypercall.cpl',
    'shared_info', 'vcpu_info', 'runstate', 'runstate.update_flag', 'evtchn.2l', 'evtchn.fifo', 'evtchn.send',
    'evtchn.upcall_vector', 'evtchn.callback_vector', 'sched.poll', 'timer', 'xenstore']);
  const missing = new Map<string, string>(Object.entries(NOT_PROVIDED));
  for (const v of ['gnttab.v1', 'gnttab.v2'] as const) {
    if (info.virtCaps.includes(v.replace('.', '-'))) has.add(v);
    else missing.set(v, `xl info virt_caps (${info.virtCaps.join(' ')}) lacks ${v.replace('.', '-')}`);
  }
  completeCapabilities(has, missing, {
    vendor: info.vendor, pageWriter: 'Xen', hostOps: XEN_HOST_OPS, driver: 'xen',
    hostOpMissing: (op) => MODEL_ONLY_OPS[op] ?? `${op} is a host action the xen driver does not perform from dom0 yet`,
    unobservableOut: XEN_PLATFORM_UNOBSERVABLE,
  });
  const v = info.version;
  return {
    has,
    missing,
    fixedXenVersion: `${v.major}.${v.minor}${v.extra}`,
    properties: { target: 'xen', xen_version: `${v.major}.${v.minor}${v.extra}`, xen_virt_caps: info.virtCaps.join(' '), ...dom0Kernel() },
  };
}

function dom0Kernel(): Record<string, string> {
  try {
    return { dom0_kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim() };
  } catch {
    return {};
  }
}

export class XenDriver implements Driver {
  readonly name = 'xen';
  private probed?: { caps: Capabilities; info: XenInfo };
  /** Where this driver's last read of Xen's console ring ended (the dumps of debug keys). */
  private readonly console: ConsoleCursor = { at: 0 };

  async probe(): Promise<Capabilities> {
    if (this.probed) return this.probed.caps;
    xenAddon(); // says what is missing when this is not a dom0
    const r = spawnSync('xl', ['info'], { encoding: 'utf8', timeout: 60_000 });
    if (r.error || r.status !== 0) {
      throw new DriverError(`xen target unavailable: xl info ${r.error ? `failed: ${r.error.message}` : `exited ${r.status}: ${`${r.stderr}`.trim().split('\n').pop()}`}`, { code: 'ENOXEN' });
    }
    let cpuinfo = '';
    try {
      cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      // vendor unknown: both cpu.* capabilities are then missing
    }
    const info = parseXlInfo(r.stdout, cpuinfo);
    this.probed = { caps: xenCapabilities(info), info };
    return this.probed.caps;
  }

  async open(setup: SessionSetup): Promise<Session> {
    await this.probe();
    for (const d of setup.domains) {
      if (d.privileged) throw new DriverError('a domain the toolstack builds is not privileged (dom0 is the only one here)', { code: 'EUNSUPPORTED' });
      if (d.id === 0 || d.id >= 0x7ff0) throw new DriverError(`domain id ${d.id} is not a guest domain id the toolstack can give (1..0x7fef)`, { code: 'EUNSUPPORTED' });
      if (d.vcpus > XEN_MAX_VCPUS) throw new DriverError(`the xen test guest runs at most ${XEN_MAX_VCPUS} vCPUs (their blocks end below the PVH stub); the case asks for ${d.vcpus}`, { code: 'EUNSUPPORTED' });
      // The toolstack binds ports 1 and 2 (xenstore, console) while it builds the domain.
      if (d.limits.max_evtchn_port !== undefined && d.limits.max_evtchn_port < 2) {
        throw new DriverError(`the toolstack binds ports 1 and 2 (xenstore, console) while it builds a domain, so max_evtchn_port ${d.limits.max_evtchn_port} cannot be built`, { code: 'EUNSUPPORTED' });
      }
      // backend_* limits are the backend's, a guest domain's software (xen-platform.ts), not the toolstack's.
      const backend = backendUnsupported(d.limits);
      if (backend) throw new DriverError(backend, { code: 'EUNSUPPORTED' });
      const unsettable = Object.keys(d.limits).filter((k) => !XL_LIMITS[k] && !k.startsWith('backend_'));
      if (unsettable.length) throw new DriverError(`the toolstack cannot set the case's limit ${unsettable.join(', ')} (xl.cfg has ${Object.keys(XL_LIMITS).join(', ')})`, { code: 'EUNSUPPORTED' });
    }
    const shadowMemory = new Map(setup.domains.map((d) => [d.id, new ShadowMemory(d.memoryBytes)]));
    const shadow = new ModelDriver('xen').openNow(setup, (id) => shadowMemory.get(id));
    const vendor = this.probed!.info.vendor ?? 'amd';
    const guests = new Map<number, XenGuest>();
    let s: GuestSession | undefined;
    try {
      for (const d of setup.domains) {
        const limits = Object.fromEntries(Object.entries(d.limits).filter(([k]) => XL_LIMITS[k]));
        guests.set(d.id, XenGuest.create({ domid: d.id, mode: setup.mode, vcpus: d.vcpus, memoryBytes: d.memoryBytes, limits, vendor }));
      }
      s = new GuestSession(guests, setup, shadow, shadowMemory, vendor, new XenPlatform(setup, this.console));
      await s.start();
    } catch (e) {
      try {
        destroyAll([...guests.values()]);
      } catch {
        // the first error is the one to report
      }
      throw e;
    }
    return s;
  }
}
