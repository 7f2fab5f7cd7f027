// The qemu target: Xen-on-KVM as it is deployed, the kernel (arch/x86/kvm/xen.c) plus
// QEMU's Xen emulation (QEMU >= 8.0: hw/i386/kvm/xen_*.c, target/i386/kvm/xen-emu.c).
// Each case gets a QEMU process running the xconf test guest (qemu-guest.ts) with the
// case's Xen version; the session (guest-session.ts) has KVM and QEMU answer every
// guest step. Who answered is read from QEMU's kvm_xen_hypercall trace: a hypercall
// QEMU traced was served by the VMM, one it did not by the kernel.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { DriverError } from '../../errors.js';
import type { Action, Outcome, StepPlacement } from '../../ops/types.js';
import { completeCapabilities } from '../caps.js';
import type { AreaView } from '../../model/areas.js';
import type { Capabilities, Driver, Session, SessionSetup } from '../driver.js';
import { ModelDriver } from '../model/model-driver.js';
import { destroyAll, GuestSession, ShadowMemory, type SessionPlatform } from '../guest-session.js';
import { probeKvm } from '../kvm/open.js';
import { guestRead, guestWrite } from '../test-guest.js';
import { QemuGuest } from './qemu-guest.js';

/** QEMU's Xen emulation needs these KVM_CAP_XEN_HVM bits: HYPERCALL_MSR, INTERCEPT_HCALL, SHARED_INFO. */
const XEN_HVM_NEEDED = 0x1 | 0x2 | 0x4;

/** What QEMU's Xen emulation or this driver's test guest lacks (docs: ../shared/spec/qemu-xen.md, QEMU 10.0.2's source). */
const NOT_PROVIDED: Record<string, string> = {
  'time.control': 'time under QEMU is the host\'s clock, not controlled by the case',
  'flavor.xen': 'the qemu target is Xen emulated by KVM and QEMU',
  'kvm.plain': 'plain-KVM checks need the kvm target',
  'evtchn.fifo': 'QEMU emulates 2-level event channels only (EVTCHNOP_init_control is -ENOSYS in hw/i386/kvm/xen_evtchn.c)',
  'gnttab.v2': 'QEMU emulates grant table v1 only (hw/i386/kvm/xen_gnttab.c)',
  'domains.multi': 'QEMU emulates one Xen domain per process',
  'hypercall.raw_regs': 'the test guest passes arguments by the calling convention only',
  'hypercall.cpl12': 'the test guest runs its calls at CPL 0 or 3 only',
  'hypercall.cpl32': 'the test guest\'s 32-bit ring-3 path is not supported under QEMU TCG (its TSS switch aborts)',
  'version.build_strings': 'QEMU reports its own build strings, not the model\'s',
  'runstate.update_flag': 'HYPERVISOR_vm_assist is -ENOSYS in QEMU 10 (target/i386/kvm/xen-emu.c), so a guest cannot turn VMASST_TYPE_runstate_update_flag on',
  'evtchn.host_send': 'KVM_XEN_HVM_EVTCHN_SEND is an ioctl on QEMU\'s own VM, which only QEMU makes (evtchn.vmm_inject goes in through QMP instead)',
};

/** Host-side ops that are KVM ioctls on QEMU's VM, or state only the model shows. */
function qemuHostOpMissing(op: string): string {
  if (/^(kvm\.|runstate\.host_|runstate\.get$|runstate\.race_check$|evtchn\.host_send$|evtchn\.take_upcalls$|sched\.status$)/.test(op)) {
    return `${op} works through KVM ioctls on QEMU's own VM and vCPUs, which only QEMU makes`;
  }
  if (/^(gnttab\.active|gnttab\.maptrack|runstate\.check_atomic|evtchn\.upcall_count|timer\.status)$/.test(op)) {
    return `${op} reads the emulation's internal state, which QEMU does not show (only the model can)`;
  }
  return `${op} is a host action the qemu driver does not perform`;
}

/** Host-side ops this driver performs: the guest's own hypercalls and memory operations. */
export const QEMU_HOST_OPS = ['evtchn.vmm_inject', 'evtchn.alloc_many', 'evtchn.run_upcall', 'evtchn.set_mask', 'gnttab.grant', 'gnttab.grant_range', 'gnttab.end_access',
  'xenstore.request', 'xenstore.raw', 'xenstore.event', 'xenstore.params'];

/**
 * The limit QEMU 10's Xen emulation is fixed at, so a case asking for exactly it runs:
 * grant table v1 only (hw/i386/kvm/xen_gnttab.c). max_grant_frames is a setting
 * (-accel kvm,xen-gnttab-max-frames=N).
 */
const QEMU_FIXED_LIMITS: Record<string, number | undefined> = { max_grant_version: 1 };

export interface QemuInfo {
  qemu: string;
  version: string;
  xenHvm: number;
  /** The KVM host's kernel release: its known divergences apply to qemu runs too. */
  kernel: string;
  vendor: 'intel' | 'amd' | undefined;
  dataDir?: string;
}

export function qemuCapabilities(info: QemuInfo): Capabilities {
  const has = new Set<string>(['guest.mode64', 'guest.mode32', 'flavor.kvm', 'hypercall.intercept', 'hypercall.page', 'hypercall.cpl',
    'shared_info', 'vcpu_info', 'runstate', 'evtchn.2l', 'evtchn.send', 'evtchn.upcall_vector', 'evtchn.callback_vector', 'sched.poll',
    'timer', 'gnttab.v1', 'xenstore', 'physdev.pirq']);
  const missing = new Map<string, string>(Object.entries(NOT_PROVIDED));
  completeCapabilities(has, missing, {
    vendor: info.vendor, pageWriter: 'KVM', hostOps: QEMU_HOST_OPS, driver: 'qemu',
    hostOpMissing: qemuHostOpMissing,
  });
  return { has, missing, properties: { target: 'qemu', qemu_version: info.version, kernel: info.kernel, kvm_xen_hvm: `0x${info.xenHvm.toString(16)}` } };
}

/** QEMU's ring page is one of its Xen overlay pages, not guest RAM the harness maps: the guest reads and writes it. */
const QEMU_PLATFORM: SessionPlatform = {
  storePage: (guest, pfn) => ({
    read: (o, n) => guestRead(guest, pfn * 4096 + o, n),
    write: (o, b) => guestWrite(guest, pfn * 4096 + o, b),
    close: () => undefined,
  }),
  hostOp: (guest, op, args) => (op === 'evtchn.vmm_inject' ? inject(guest as QemuGuest, Number(args.port as bigint)) : undefined),
};

/**
 * QMP xen-event-inject: QEMU raises the port on the vCPU it is bound to
 * (hw/i386/kvm/xen_evtchn.c qmp_xen_event_inject -> set_port_pending). QMP gives
 * no errno; its one refusal, "Failed to set port", is set_port_pending's -EINVAL
 * for a closed port (or KVM's refusal of the send), so an error is -EINVAL.
 */
async function inject(guest: QemuGuest, port: number): Promise<Outcome> {
  const a = await guest.qmp('xen-event-inject', { port });
  return { ret: a.ok ? 0n : -22n, servedBy: 'vmm' };
}

/** The session, recording per step whether QEMU served a hypercall of it. */
class QemuSession implements Session {
  constructor(private readonly inner: GuestSession, private readonly guest: QemuGuest) {}

  async apply(action: Action, at: StepPlacement): Promise<Outcome> {
    this.guest.takeServed();
    const o = await this.inner.apply(action, at);
    const served = this.guest.takeServed().length > 0;
    if (action.kind === 'hypercall') return { ...o, servedBy: served ? 'vmm' : 'kernel' };
    return served ? { ...o, servedBy: 'vmm' } : o;
  }

  read(dom: number, gpa: number, len: number): Promise<Uint8Array> {
    return this.inner.read(dom, gpa, len);
  }

  areas(dom: number): AreaView {
    return this.inner.areas(dom);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.inner[Symbol.asyncDispose]();
  }
}

/** The QEMU binary: XCONF_QEMU, else qemu-system-x86_64 on PATH. */
function qemuBinary(): string {
  return process.env.XCONF_QEMU || 'qemu-system-x86_64';
}

export class QemuDriver implements Driver {
  readonly name = 'qemu';
  private probed?: { caps: Capabilities; info: QemuInfo };

  async probe(): Promise<Capabilities> {
    if (this.probed) return this.probed.caps;
    const qemu = qemuBinary();
    const v = spawnSync(qemu, ['--version'], { encoding: 'utf8', timeout: 30_000 });
    if (v.error || v.status !== 0) {
      throw new DriverError(`qemu target unavailable: ${qemu} --version ${v.error ? `failed: ${v.error.message}` : `exited ${v.status}`} (set XCONF_QEMU to a QEMU >= 8.0)`, { code: 'ENOQEMU' });
    }
    const m = /version (\d+)\.(\d+)\.(\d+)/.exec(v.stdout);
    if (!m || Number(m[1]) < 8) throw new DriverError(`qemu target unavailable: ${qemu} is ${m ? `QEMU ${m[0].slice(8)}` : 'not QEMU'}; Xen emulation needs QEMU >= 8.0 (set XCONF_QEMU)`, { code: 'ENOQEMU' });
    const p = probeKvm();
    if (!p.ok) throw new DriverError(`qemu target unavailable: ${p.reason}`, { code: p.code, errno: p.errno });
    if ((p.xenHvm & XEN_HVM_NEEDED) !== XEN_HVM_NEEDED) {
      throw new DriverError(`qemu target unavailable: KVM_CAP_XEN_HVM is 0x${p.xenHvm.toString(16)}, QEMU's Xen emulation needs HYPERCALL_MSR, INTERCEPT_HCALL and SHARED_INFO (CONFIG_KVM_XEN)`, { code: 'ENOTSUP' });
    }
    let cpuinfo = '';
    try {
      cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      // vendor unknown: both cpu.* capabilities are then missing
    }
    const vendor = /^vendor_id\s*:\s*(\S+)/m.exec(cpuinfo)?.[1];
    const dataDir = process.env.XCONF_QEMU_DATA;
    const info: QemuInfo = {
      qemu, version: `${m[1]}.${m[2]}.${m[3]}`, xenHvm: p.xenHvm, kernel: release(),
      vendor: vendor === 'AuthenticAMD' || vendor === 'HygonGenuine' ? 'amd' : vendor === 'GenuineIntel' ? 'intel' : undefined,
      dataDir: dataDir && existsSync(dataDir) ? dataDir : undefined,
    };
    this.probed = { caps: qemuCapabilities(info), info };
    return this.probed.caps;
  }

  async open(setup: SessionSetup): Promise<Session> {
    await this.probe();
    const { info } = this.probed!;
    if (setup.domains.length !== 1) throw new DriverError(`QEMU emulates one Xen domain; the case sets up ${setup.domains.length}`, { code: 'EUNSUPPORTED' });
    const d = setup.domains[0];
    if (d.vcpus !== 1) throw new DriverError(`the qemu test guest runs one vCPU; the case asks for ${d.vcpus}`, { code: 'EUNSUPPORTED' });
    if (d.privileged) throw new DriverError('the domain QEMU emulates is not privileged', { code: 'EUNSUPPORTED' });
    if (d.id === 0 || d.id >= 0x7ff0) throw new DriverError(`QEMU's emulated domain cannot be domain ${d.id} (0 is QEMU itself, DOMID_QEMU; ids from 0x7ff0 are reserved)`, { code: 'EUNSUPPORTED' });
    const unmet = Object.entries(d.limits).filter(([k, v]) => k !== 'max_grant_frames' && QEMU_FIXED_LIMITS[k] !== v);
    if (unmet.length) {
      throw new DriverError(`QEMU's Xen emulation has no setting for the case's ${unmet.map(([k, v]) => `${k} ${v}${k in QEMU_FIXED_LIMITS ? ` (QEMU's is ${QEMU_FIXED_LIMITS[k]})` : ''}`).join(', ')}`, { code: 'EUNSUPPORTED' });
    }
    const shadowMemory = new Map([[d.id, new ShadowMemory(d.memoryBytes)]]);
    const shadow = new ModelDriver('kvm').openNow(setup, (id) => shadowMemory.get(id));
    const guest = QemuGuest.create({
      domid: d.id, mode: setup.mode, memoryBytes: d.memoryBytes, qemu: info.qemu, dataDir: info.dataDir, accel: 'xen',
      xenVersion: (setup.xenVersion.major << 16) | setup.xenVersion.minor, gnttabMaxFrames: d.limits.max_grant_frames,
    });
    try {
      const s = new GuestSession(new Map([[d.id, guest]]), setup, shadow, shadowMemory, info.vendor ?? 'amd', QEMU_PLATFORM);
      await s.start();
      return new QemuSession(s, guest);
    } catch (e) {
      destroyAll([guest]);
      throw e;
    }
  }
}
