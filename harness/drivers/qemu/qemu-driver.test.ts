import { afterEach, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { hostOpCapability } from '../../ops/types.js';
import { CAPABILITIES } from '../../suite/vocabulary.js';
import { QEMU_HOST_OPS, QemuDriver, qemuCapabilities } from './qemu-driver.js';

const info = { qemu: 'qemu-system-x86_64', version: '10.0.2', xenHvm: 0x1ff, kernel: '6.12.118', vendor: 'amd' as const };

describe('qemu target capabilities', () => {
  it('has what QEMU 10 emulates and says why for the rest', () => {
    const caps = qemuCapabilities(info);
    for (const c of ['evtchn.2l', 'gnttab.v1', 'xenstore', 'flavor.kvm', 'cpu.amd', 'timer', 'sched.poll']) expect(caps.has.has(c), c).toBe(true);
    expect(caps.missing.get('evtchn.fifo')).toMatch(/2-level event channels only/);
    expect(caps.missing.get('gnttab.v2')).toMatch(/v1 only/);
    expect(caps.missing.get('domains.multi')).toMatch(/one Xen domain/);
    expect(caps.missing.get('cpu.intel')).toMatch(/the CPU is amd/);
    // Every capability of the vocabulary is either had or missing with a reason.
    for (const c of Object.keys(CAPABILITIES)) expect(caps.has.has(c) !== caps.missing.has(c), c).toBe(true);
    for (const op of QEMU_HOST_OPS) expect(caps.has.has(hostOpCapability(op)), op).toBe(true);
    expect(caps.missing.get(hostOpCapability('kvm.xen_set_attr'))).toMatch(/KVM ioctls on QEMU's own VM/);
    expect(caps.missing.get(hostOpCapability('gnttab.active'))).toMatch(/QEMU does not show/);
    expect(caps.missing.get(hostOpCapability('time.advance'))).toMatch(/does not perform/);
    expect(caps.missing.get('runstate.update_flag')).toMatch(/vm_assist is -ENOSYS/);
    expect(caps.properties).toMatchObject({ target: 'qemu', qemu_version: '10.0.2', kernel: '6.12.118', kvm_xen_hvm: '0x1ff' });
  });
});

describe('qemu target probe', () => {
  const saved = process.env.XCONF_QEMU;
  afterEach(() => {
    if (saved === undefined) delete process.env.XCONF_QEMU;
    else process.env.XCONF_QEMU = saved;
  });
  it('names a QEMU that is not there', async () => {
    process.env.XCONF_QEMU = '/nonexistent/qemu';
    await expect(new QemuDriver().probe()).rejects.toMatchObject({ code: 'ENOQEMU', message: expect.stringMatching(/\/nonexistent\/qemu --version failed.*set XCONF_QEMU/) });
  });
  const host = spawnSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' });
  const old = /version (\d+)\./.exec(host.stdout ?? '');
  it.skipIf(!old || Number(old[1]) >= 8)('refuses a QEMU without Xen emulation (before 8.0)', async () => {
    process.env.XCONF_QEMU = 'qemu-system-x86_64';
    await expect(new QemuDriver().probe()).rejects.toMatchObject({ code: 'ENOQEMU', message: expect.stringMatching(/Xen emulation needs QEMU >= 8\.0/) });
  });
});
