// The Xen target's native addon (native/src/xen_addon.cc): dom0's reach into Xen
// through Xen's tool libraries, loaded at run time. Loading it never fails the
// process: an unusable addon becomes one DriverError saying why.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { DriverError } from '../../errors.js';
import { nativeDir } from '../kvm/native.js';

/** A foreign mapping of consecutive guest frames of one domain. */
export interface XenMapping {
  readonly size: number;
  read(offset: number, len: number): Buffer;
  write(offset: number, bytes: Buffer): void;
  /** Wait until the u32 at offset equals value; false after timeoutMs. */
  waitU32(offset: number, value: number, timeoutMs: number): boolean;
  close(): void;
}

export interface XenAddon {
  available(): { ok: true } | { ok: false; reason: string };
  Mapping: new (domid: number, firstGfn: number, pages: number) => XenMapping;
  pause(domid: number, pause: boolean): void;
  evtchn(op: 'bind_interdomain', domid: number, remotePort: number): number;
  evtchn(op: 'bind_unbound', domid: number): number;
  evtchn(op: 'notify' | 'unbind' | 'unmask', port: number): number;
  gntMap(domid: number, ref: number, writable: boolean): number;
  gntUnmap(handle: number): void;
  gntSetMax(count: number): void;
  /** XEN_DOMCTL_getdomaininfo's XEN_DOMINF_* flags of a domain, or null when it does not exist. */
  domainInfo(domid: number): { flags: number } | null;
  /** XEN_DOMCTL_getvcpuinfo: blocked is the vCPU's _VPF_blocked (waiting in SCHEDOP_block / poll). */
  vcpuInfo(domid: number, vcpu: number): { online: boolean; blocked: boolean; running: boolean };
  /** rax of an HVM vCPU's saved register state (XEN_DOMCTL_gethvmcontext_partial, HVM_SAVE_CODE(CPU)). */
  vcpuRax(domid: number, vcpu: number): bigint;
  /** Send debug keys to Xen (xc_send_debug_keys): their handlers print into the console ring. */
  debugKeys(keys: string): void;
  /** What Xen's console ring gained since `index` (0: all it holds), never clearing it; the index to read on from. */
  readConsole(index: number): { text: string; index: number };
}

let loaded: XenAddon | undefined;

/** The addon with Xen's libraries opened, or a DriverError naming what is missing. */
export function xenAddon(): XenAddon {
  if (loaded) return loaded;
  const path = `${nativeDir.endsWith('/') ? nativeDir : `${nativeDir}/`}Release/xconf_xen.node`;
  if (!existsSync(path)) {
    throw new DriverError(`the native Xen addon ${path} was not built (see native/build/status.json; run \`npm rebuild\`)`, { code: 'ENOADDON' });
  }
  let addon: XenAddon;
  try {
    addon = createRequire(import.meta.url)(path) as XenAddon;
  } catch (e) {
    throw new DriverError(`loading the native Xen addon failed: ${(e as Error).message.split('\n')[0]}`, { code: 'ENOADDON' });
  }
  const a = addon.available();
  if (!a.ok) throw new DriverError(`xen target unavailable: ${a.reason}`, { code: 'ENOXEN' });
  loaded = addon;
  return addon;
}
