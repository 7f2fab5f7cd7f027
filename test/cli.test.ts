// End-to-end: the built CLI as a user runs it.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';

const cli = (...args: string[]) => spawnSync(process.execPath, ['bin/xconf.js', ...args], { encoding: 'utf8' });

beforeAll(() => {
  if (!existsSync('dist/bundle/main.js')) execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
});

describe('xconf CLI', () => {
  it('run: exits 0 on the model and writes JUnit and KTAP', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-cli-'));
    const r = cli('run', 'suites/hypercall', `--junit=${dir}/j.xml`, `--ktap=${dir}/k.ktap`);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^\d+ passed, 0 failed, \d+ skipped, 0 known divergences$/m);
    const xml = readFileSync(`${dir}/j.xml`, 'utf8');
    expect(Number(/<testsuites name="xconf model" tests="(\d+)" failures="0" errors="0"/.exec(xml)?.[1])).toBeGreaterThanOrEqual(20);
    expect(readFileSync(`${dir}/k.ktap`, 'utf8').startsWith('KTAP version 1\n')).toBe(true);
  });
  it('validate: malformed files exit 2 with file:line:col lines only', () => {
    const r = cli('validate', 'fixtures/invalid');
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(15);
    for (const l of lines) expect(l).toMatch(/^fixtures\/invalid\/[a-z-]+\.yaml:\d+:\d+: [A-Z_]+/);
  });
  it('usage errors exit 2 with one line; --help and --version exit 0', () => {
    for (const args of [['run', '--target=nope'], ['bogus'], ['run', '--shard=5/2'], ['run', '--frobnicate']]) {
      const r = cli(...args);
      expect(r.status).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).not.toMatch(/    at /);
    }
    expect(cli('--help').status).toBe(0);
    expect(cli('run', '--help').stdout).toMatch(/--target/);
    expect(cli('--version').stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });
  it('a failing case exits 1; an all-skipped run exits 4', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-cli-'));
    expect(cli('run', 'test/cases/fails', `--junit=${dir}/j.xml`).status).toBe(1);
    expect(cli('run', 'test/cases/skips', `--junit=${dir}/j.xml`).status).toBe(4);
  });
  it('run --diff-against: flavours that differ are listed as disagreements and exit 1, though every case passed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-cli-'));
    const r = cli('run', 'test/cases/differential', 'suites/sched/timer-singleshot-missing-vcpu-xen.yaml', 'suites/sched/timer-singleshot-missing-vcpu-kvm.yaml',
      '--target=model', '--diff-against=model-kvm', `--junit=${dir}/j.xml`, `--ktap=${dir}/k.ktap`, `--diff-report=${dir}/d.xml`);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^4 passed, 0 failed, 1 skipped, 0 known divergences$/m);
    expect(r.stdout).toContain('differential: model vs model-kvm: 3 compared, 1 agree, 2 disagree, 0 known divergences, 1 not compared');
    expect(r.stdout).toContain('DISAGREE singleshot-missing-vcpu: step 2 (timer.set_singleshot, line 8): ret model=-2 (-ENOENT) model-kvm=-22 (-EINVAL)');
    expect(r.stdout).toMatch(/^DISAGREE pvclock-stable-bit: step 1 \(time\.update, line 7\): model=pass model-kvm=fail .*; status model=pass model-kvm=fail$/m);
    expect(r.stdout).toContain('NOT COMPARED x1: Requirement not met: flavor.xen');
    // The cases are counted once: the differential has its own report, and KTAP holds only the cases.
    expect(readFileSync(`${dir}/j.xml`, 'utf8')).toMatch(/<testsuites name="xconf model" tests="5" failures="0" errors="0"/);
    const xml = readFileSync(`${dir}/d.xml`, 'utf8');
    expect(xml).toMatch(/<testsuite name="xconf\.differential" tests="4" failures="2" errors="0" skipped="1"/);
    expect(xml).toContain('<property name="reference" value="model-kvm"/>');
    expect(xml).toMatch(/name="sched\/timer-singleshot-missing-vcpu-xen"[^>]*>[\s\S]*?<skipped message="not compared: Requirement not met: flavor\.xen/);
    expect(xml).toContain('<failure message="step 2 (timer.set_singleshot, line 8): ret model=-2 (-ENOENT) model-kvm=-22 (-EINVAL)" type="disagreement">');
    const k = readFileSync(`${dir}/k.ktap`, 'utf8');
    expect(k).not.toContain('differential');
    expect(k).toMatch(/^1\.\.5$/m);
  });
  it('run --isolate --diff-against: the model reference runs beside the target in a worker and compares the same', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-cli-'));
    const args = ['test/cases/differential', 'suites/sched/timer-singleshot-missing-vcpu-xen.yaml', 'suites/sched/timer-singleshot-missing-vcpu-kvm.yaml',
      'suites/hypercall/xen-version-version.yaml', '--target=model', '--diff-against=model-kvm'];
    const a = cli('run', ...args, `--junit=${dir}/a.xml`, `--json=${dir}/a.json`);
    const b = cli('run', ...args, '--isolate', `--junit=${dir}/b.xml`, `--json=${dir}/b.json`);
    expect([a.status, b.status]).toEqual([1, 1]);
    const entries = (f: string) => JSON.parse(readFileSync(f, 'utf8')).differential;
    expect(entries(`${dir}/b.json`)).toEqual(entries(`${dir}/a.json`));
    expect(entries(`${dir}/b.json`).counts).toMatchObject({ compared: 5, agree: 3, disagree: 2, notCompared: 1 });
  });
  it('run --diff-against the same target agrees on every case and exits 0; an unknown reference is a usage error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-cli-'));
    const r = cli('run', 'suites/hypercall', '--target=model', '--diff-against=model', `--junit=${dir}/j.xml`);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^differential: model vs model: (\d+) compared, \1 agree, 0 disagree, 0 known divergences, 0 not compared$/m);
    expect(existsSync(`${dir}/j.differential.xml`)).toBe(true);
    expect(r.stdout).not.toMatch(/DISAGREE/);
    const bad = cli('run', 'suites/hypercall', '--diff-against=bochs');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toBe("xconf: --diff-against: unknown target 'bochs' (targets: model, model-kvm, kvm, xen, qemu)\n");
    expect(cli('run', 'suites/hypercall', '--diff-report=x.xml').stderr).toBe('xconf: --diff-report needs --diff-against=TARGET\n');
  });
  it('--version and --help load no command module (each command loads its own, when it runs)', () => {
    // The bundle's entry and the chunks it imports statically, nothing else: the commands' chunks stay behind.
    const d = mkdtempSync(join(tmpdir(), 'xconf-lazy-'));
    const files = ['package.json', 'bin/xconf.js'];
    for (const todo = ['dist/bundle/main.js']; todo.length;) {
      const f = todo.pop()!;
      if (files.includes(f)) continue;
      files.push(f);
      for (const m of readFileSync(f, 'utf8').matchAll(/\b(?:from|import) ?"\.\/([^"]+)"/g)) todo.push(`dist/bundle/${m[1]}`);
    }
    for (const f of files) {
      mkdirSync(dirname(join(d, f)), { recursive: true });
      copyFileSync(f, join(d, f));
    }
    expect(files.some((f) => /command/.test(f))).toBe(false);
    const at = (...args: string[]) => spawnSync(process.execPath, [join(d, 'bin/xconf.js'), ...args], { encoding: 'utf8' });
    expect(at('--version').stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    expect(at('--help').status).toBe(0);
    expect(at('run').stderr).toMatch(/internal error: Cannot find module .*run-command-\w+\.js/);
  });
  it('list shows requirements and runnability', () => {
    const r = cli('list', 'suites/hypercall');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/hypercall\/page-iret-slot-kvm {2}requires: .*flavor\.kvm.* skip \(missing flavor\.kvm\)/);
  });
});

describe('xconf on a live /dev/kvm', () => {
  const kvm = existsSync('/dev/kvm') && existsSync('native/build/Release/xconf_kvm.node');
  it.skipIf(!kvm)('a guest that never returns is stopped and reported as a timeout error; the next case still runs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-spin-'));
    for (const mode of [[], ['--in-process']]) {
      const r = cli('run', 'test/cases/kvm-spin', '--target=kvm', `--junit=${dir}/j.xml`, ...mode);
      expect(r.status).toBe(1);
      const xml = readFileSync(`${dir}/j.xml`, 'utf8');
      expect(xml).toMatch(/<testcase [^>]*name="a-never-returns"[\s\S]*?<error message="[^"]*did not finish its commands in time/);
      expect(xml).toMatch(/<testsuites name="xconf kvm" tests="2" failures="0" errors="1"/);
    }
  });
  it.skipIf(!kvm)('without Xen support, Xen cases skip naming the missing capability and suites/kvm passes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-kvm-'));
    const r = cli('run', '--target=kvm', `--junit=${dir}/j.xml`);
    expect([0, 4]).toContain(r.status);
    expect(r.stdout).toMatch(/ 0 failed,/);
    const xml = readFileSync(`${dir}/j.xml`, 'utf8');
    if (/kvm_cap_xen_hvm" value="0x0"/.test(xml)) expect(xml).toContain('KVM_CAP_XEN_HVM = 0');
  });
});
