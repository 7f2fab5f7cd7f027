import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseXlInfo, xenCapabilities, XenDriver, XEN_HOST_OPS } from './xen-driver.js';
import { XEN_MAX_VCPUS, XL_LIMITS } from './xen-guest.js';
import { blockAddress } from '../kvm/guest.js';
import { CAPABILITIES } from '../../suite/vocabulary.js';
import { hostOpCapability, hostOpOutCapability } from '../../ops/types.js';
import { DriverError } from '../../errors.js';
import { packagePath } from '../../paths.js';
import { ModelDriver } from '../model/model-driver.js';
import { loadPaths } from '../../suite/loader.js';
import { plan } from '../../runner/plan.js';
import { runPlan } from '../../runner/run.js';
import { runDifferential } from '../../runner/differential.js';
import { versionMatches } from '../../runner/run-case.js';
import type { Capabilities } from '../driver.js';

// What `xl info` printed on Xen 4.17.7 under QEMU/TCG (ci/live-xen), abridged.
const XL_INFO = `host                   : (none)
release                : 6.1.0-57-amd64
xen_major              : 4
xen_minor              : 17
xen_extra              : .7
xen_version            : 4.17.7
xen_caps               : xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64
virt_caps              : pv hvm hap gnttab-v1 gnttab-v2
`;

describe('xen capabilities', () => {
  it('reads the version, virt_caps and CPU vendor', () => {
    const info = parseXlInfo(XL_INFO, 'processor\t: 0\nvendor_id\t: AuthenticAMD\n');
    expect(info).toEqual({ version: { major: 4, minor: 17, extra: '.7' }, virtCaps: ['pv', 'hvm', 'hap', 'gnttab-v1', 'gnttab-v2'], vendor: 'amd' });
    expect(() => parseXlInfo('release : 6.1\n', '')).toThrow(/no xen_major/);
  });

  it('fixes the version to the hypervisor\'s, takes grant-table versions from virt_caps, and explains every absent capability', () => {
    const caps = xenCapabilities(parseXlInfo(XL_INFO, 'vendor_id : GenuineIntel'));
    expect(caps.fixedXenVersion).toBe('4.17.7');
    expect(caps.properties).toMatchObject({ target: 'xen', xen_version: '4.17.7' });
    expect([...caps.has]).toEqual(expect.arrayContaining(['gnttab.v1', 'gnttab.v2', 'evtchn.fifo', 'flavor.xen', 'cpu.intel']));
    expect(caps.missing.get('cpu.amd')).toMatch(/the CPU is intel/);
    expect(caps.missing.get('time.control')).toMatch(/hypervisor's clock/);
    for (const c of Object.keys(CAPABILITIES)) expect(caps.has.has(c) || caps.missing.has(c)).toBe(true);
    for (const op of XEN_HOST_OPS) expect(caps.has.has(hostOpCapability(op))).toBe(true);
    expect(caps.has.has(hostOpOutCapability('evtchn.run_upcall', 'handled'))).toBe(true);
    expect(caps.missing.get(hostOpCapability('evtchn.host_send'))).toMatch(/does not perform from dom0 yet/);
    // State only Xen holds skips as what it is, not as work left to do.
    expect(caps.has.has(hostOpCapability('gnttab.active'))).toBe(true); // from the grant table dump of debug key 'g'
    expect(caps.has.has(hostOpCapability('gnttab.maptrack'))).toBe(true);
    expect(caps.has.has(hostOpOutCapability('gnttab.maptrack', 'used'))).toBe(true);
    expect(caps.missing.get(hostOpOutCapability('gnttab.maptrack', 'orphaned'))).toMatch(/shows no orphaned maptrack entries/);
    expect(caps.missing.get(hostOpCapability('runstate.check_atomic'))).toMatch(/only the model can do/);
    const v1 = xenCapabilities(parseXlInfo(XL_INFO.replace(' gnttab-v2', ''), ''));
    expect(v1.has.has('gnttab.v2')).toBe(false);
    expect(v1.missing.get('gnttab.v2')).toMatch(/lacks gnttab-v2/);
  });

  it('outside a dom0 the driver says which library is missing, as a DriverError, not a crash', async () => {
    const e = await new XenDriver().probe().then(() => undefined, (x: unknown) => x);
    // This test machine is no dom0: Xen's tool libraries are absent, or /dev/xen is.
    expect(e).toBeInstanceOf(DriverError);
    expect((e as DriverError).message).toMatch(/xen target unavailable: .*(libxenforeignmemory|xenforeignmemory_open|xl info)/);
  });

  it('maps every limit the toolstack can set to its xl.cfg name', () => {
    expect(XL_LIMITS).toEqual({
      max_grant_frames: 'max_grant_frames', max_maptrack_frames: 'max_maptrack_frames',
      max_grant_version: 'max_grant_version', max_evtchn_port: 'max_event_channels',
    });
  });
});

describe('the PVH entry stub', () => {
  it('is an ELF whose XEN_ELFNOTE_PHYS32_ENTRY points into its one load segment at 1 MiB, above every vCPU block', () => {
    const elf = readFileSync(packagePath('native', 'build', 'guest', 'pvh.elf'));
    expect(elf.readUInt32BE(0)).toBe(0x7f454c46);
    const phoff = Number(elf.readBigUInt64LE(0x20)), phentsize = elf.readUInt16LE(0x36), phnum = elf.readUInt16LE(0x38);
    const ph = Array.from({ length: phnum }, (_, i) => {
      const o = phoff + i * phentsize;
      return { type: elf.readUInt32LE(o), offset: Number(elf.readBigUInt64LE(o + 8)), paddr: Number(elf.readBigUInt64LE(o + 24)), filesz: Number(elf.readBigUInt64LE(o + 32)) };
    });
    const load = ph.filter((p) => p.type === 1);
    const note = ph.find((p) => p.type === 4)!;
    expect(load).toHaveLength(1);
    expect(load[0].paddr).toBe(0x100000);
    // namesz 4, descsz 4, type 18 (XEN_ELFNOTE_PHYS32_ENTRY), "Xen\0", the entry.
    expect([elf.readUInt32LE(note.offset), elf.readUInt32LE(note.offset + 4), elf.readUInt32LE(note.offset + 8)]).toEqual([4, 4, 18]);
    expect(elf.toString('latin1', note.offset + 12, note.offset + 15)).toBe('Xen');
    const entry = elf.readUInt32LE(note.offset + 16);
    expect(entry).toBeGreaterThanOrEqual(load[0].paddr);
    expect(entry).toBeLessThan(load[0].paddr + load[0].filesz);
    // The most vCPU blocks the xen guest has (64 KiB each from 0x30000) end below the stub.
    expect(blockAddress(XEN_MAX_VCPUS - 1) + 0x10000).toBeLessThanOrEqual(load[0].paddr);
  });
});

/** The model with a real hypervisor's fixed version, as the xen target presents it. */
class FixedVersionModel extends ModelDriver {
  override async probe(): Promise<Capabilities> {
    return { ...(await super.probe()), fixedXenVersion: '4.17.7' };
  }
}

describe('a target with its own Xen version', () => {
  it('matches a case version by major.minor, and by extra version only when the case names one', () => {
    expect(versionMatches('4.17', '4.17.7')).toBe(true);
    expect(versionMatches('4.17.7', '4.17.7')).toBe(true);
    expect(versionMatches('4.17.2', '4.17.7')).toBe(false);
    expect(versionMatches('4.19', '4.17.7')).toBe(false);
    expect(versionMatches('4.1', '4.17.7')).toBe(false);
  });

  it('runs version cases with it ($xen_major, $xen_minor), skips a case naming another, and its differential reference follows', async () => {
    const { cases, problems } = loadPaths(['suites/hypercall/xen-version-version.yaml', 'suites/hypercall/version-get-features.yaml', 'suites/hypercall/version-get-features-4.17.yaml']);
    expect(problems).toEqual([]);
    const planned = plan(cases, {});
    const run = await runPlan(planned, new FixedVersionModel());
    const by = Object.fromEntries(run.results.map((r) => [r.name, r]));
    expect(by['hypercall/xen-version-version[mode=64]'].status).toBe('pass');
    expect(by['hypercall/version-get-features-4.17[mode=32]'].status).toBe('pass');
    expect(by['hypercall/version-get-features[mode=64]']).toMatchObject({ status: 'skip', message: expect.stringMatching(/xen_version 4\.19 \(the hypervisor is Xen 4\.17\.7/) });
    // The plain model (4.19 by default) fails the 4.17 answer unless it follows the target's version.
    const diff = await runDifferential(planned, run.results, 'xen', new ModelDriver(), { xenVersion: '4.17.7' });
    expect(diff.entries.filter((e) => e.verdict !== 'agree')).toEqual([]);
    const unfollowed = await runDifferential(planned, run.results, 'xen', new ModelDriver());
    expect(unfollowed.entries.some((e) => e.verdict === 'disagree')).toBe(true);
  });
});
