// End-to-end: `xconf fuzz` and `xconf selfcheck` as a user runs them.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const cli = (...args: string[]) => spawnSync(process.execPath, ['bin/xconf.js', ...args], { encoding: 'utf8' });

beforeAll(() => {
  if (!existsSync('dist/cli/fuzz-command.js')) execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
});

describe('xconf fuzz', () => {
  it('on the model: exits 0 with no findings, prints the seed and steps/s, writes JUnit', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-fuzz-'));
    const r = cli('fuzz', '--time=3s', '--seed=1', `--out=${dir}/found`, `--junit=${dir}/f.xml`);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/seed 1,/);
    expect(r.stdout).toMatch(/[\d,]+ steps\/s \([\d,]+ per CPU-second\), op coverage \d+\/\d+/);
    expect(r.stdout).toMatch(/0 new finding/);
    const xml = readFileSync(`${dir}/f.xml`, 'utf8');
    expect(xml).toMatch(/<testsuite name="xconf.fuzz"/);
    expect(xml).toMatch(/<testcase classname="xconf.fuzz" name="summary"/);
    expect(xml).not.toMatch(/<failure/);
    expect(readdirSync(`${dir}/found`)).toEqual([]);
  });
  it('an --out or --junit it cannot write stops it before any step, in one line, and leaves no stale JUnit', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-fuzz-'));
    writeFileSync(`${dir}/file`, '');
    writeFileSync(`${dir}/old.xml`, '<testsuites/>');
    const out = cli('fuzz', '--time=10m', `--out=${dir}/file/found`, `--junit=${dir}/old.xml`);
    expect(out.status).toBe(2);
    expect(out.stdout).toBe('');
    expect(out.stderr).toBe(`xconf: --out=${dir}/file/found: cannot create the findings directory (ENOTDIR)\n`);
    expect(existsSync(`${dir}/old.xml`)).toBe(false);
    const junit = cli('fuzz', '--time=10m', `--out=${dir}/found`, `--junit=${dir}/file/f.xml`);
    expect(junit.status).toBe(2);
    expect(junit.stderr.trim().split('\n')).toHaveLength(1);
    expect(junit.stderr).toMatch(/--junit=.*cannot create its directory \(ENOTDIR\)/);
  });
  it('--kcov: only on the kvm target, and one line naming what is missing', () => {
    const r = cli('fuzz', '--kcov', '--time=1s');
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--kcov traces the kernel's KVM: it needs --target=kvm \(got model\)/);
    const both = cli('fuzz', '--target=kvm', '--kcov', '--kcov-observe', '--time=1s');
    expect(both.status).toBe(2);
    expect(both.stderr).toMatch(/exclude each other/);
  });
  it('a differential run (model-kvm against model-kvm) finds nothing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-fuzz-'));
    const r = cli('fuzz', '--target=model-kvm', '--against=model-kvm', '--time=2s', '--seed=3', `--out=${dir}`);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/reference model-kvm/);
  });
  it('SIGTERM stops cleanly with the summary printed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-fuzz-'));
    const p = spawn(process.execPath, ['bin/xconf.js', 'fuzz', '--time=10m', '--seed=2', `--out=${dir}`]);
    let out = '';
    p.stdout.on('data', (b) => { out += b; });
    await new Promise((r) => setTimeout(r, 2500));
    p.kill('SIGTERM');
    const code = await new Promise((r) => p.on('exit', r));
    expect(code).toBe(0);
    expect(out).toMatch(/SIGTERM: stopping/);
    expect(out).toMatch(/stopped by signal/);
  });
  it('usage errors exit 2 with one line; kvm without Xen, xen outside a dom0 and qemu without a Xen-capable KVM stop with one line (3 or 4)', () => {
    for (const args of [['fuzz', '--time=soon'], ['fuzz', '--seed=x'], ['fuzz', '--shard=3/2'], ['fuzz', '--target=nope'], ['selfcheck', '--variant=nope']]) {
      const r = cli(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    for (const target of ['kvm', 'xen', 'qemu']) {
      const k = cli('fuzz', `--target=${target}`, '--time=2s', '--seed=1', `--out=${mkdtempSync(join(tmpdir(), 'xconf-fuzz-'))}`);
      expect([3, 4], target).toContain(k.status);
      expect(k.stderr.trim().split('\n')).toHaveLength(1);
      expect(k.stderr).not.toMatch(/    at /);
    }
    const away = spawnSync(process.execPath, [join(process.cwd(), 'bin/xconf.js'), 'selfcheck'], { encoding: 'utf8', cwd: tmpdir() });
    expect(away.status).toBe(2);
    expect(away.stderr).toMatch(/^xconf: selfcheck runs the suites in \.\/suites/);
    expect(cli('fuzz', '--help').stdout).toMatch(/--shard=K\/N/);
    expect(cli('selfcheck', '--help').stdout).toMatch(/broken variants/);
  });
  it('selfcheck of one variant prints what caught it and exits 0', () => {
    const r = cli('selfcheck', '--variant=cpl-accepted', '--no-suites', '--time=60s');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/cpl-accepted +fuzz caught in [\d.]+s .*replay fails on variant, passes on model/);
  });
});
