// ci/kselftest/xconf.sh under the kernel's own kselftest runner
// (tools/testing/selftests/run_kselftest.sh and kselftest/runner.sh from
// Debian's linux-source-6.12, extracted by ci/kernel-tools.sh), laid out as
// `make install` of a kselftest tree with an xconf collection lays it out.
// Under CI=true missing kernel tools fail the test; elsewhere it skips.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tmpdir } from 'node:os';

const tools = (() => {
  const r = spawnSync('bash', ['ci/kernel-tools.sh'], { encoding: 'utf8' });
  const d = r.status === 0 ? join(r.stdout.trim(), 'tools/testing/selftests') : undefined;
  return d && existsSync(join(d, 'kselftest/runner.sh')) && existsSync(join(d, 'run_kselftest.sh')) ? d : undefined;
})();
if (!tools && process.env.CI) throw new Error("the kernel's kselftest runner is missing on a CI machine (ci/kernel-tools.sh)");

/** A kselftest install tree with the xconf collection, as `make install` leaves it. */
function installTree(): string {
  const base = mkdtempSync(join(tmpdir(), 'xconf-kselftest-'));
  cpSync(join(tools!, 'kselftest'), join(base, 'kselftest'), { recursive: true });
  copyFileSync(join(tools!, 'run_kselftest.sh'), join(base, 'run_kselftest.sh'));
  chmodSync(join(base, 'run_kselftest.sh'), 0o755);
  mkdirSync(join(base, 'xconf'));
  for (const f of ['xconf.sh', 'settings']) copyFileSync(join('ci/kselftest', f), join(base, 'xconf', f));
  chmodSync(join(base, 'xconf', 'xconf.sh'), 0o755);
  writeFileSync(join(base, 'kselftest-list.txt'), 'xconf:xconf.sh\n');
  return base;
}

function runKselftest(env: Record<string, string>) {
  const base = installTree();
  // Through a real pipe: the runner appends to /dev/stdout, which cannot be
  // opened on the socket node gives a child for its output.
  const r = spawnSync('bash', ['-c', './run_kselftest.sh | cat'], {
    encoding: 'utf8', cwd: base, timeout: 240_000,
    env: { ...process.env, XCONF_DIR: resolve('.'), XCONF_TARGET: 'model', ...env },
  });
  return r;
}
/** The wrapper's KTAP totals line, as the runner passes it through ("# " prefixed). */
const totals = (out: string) => /^# # Totals: pass:(\d+) fail:(\d+) xfail:(\d+) xpass:(\d+) skip:(\d+) error:(\d+)$/m.exec(out)?.slice(1).map(Number);

beforeAll(() => {
  if (!existsSync('dist/bundle/main.js')) execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
});

describe.skipIf(!tools)("the kselftest wrapper under the kernel's runner", () => {
  it('the collection passes and its KTAP totals are those of xconf', () => {
    const r = runKselftest({ XCONF_SUITES: resolve('suites/hypercall'), KSELFTEST_XCONF_SH_ARGS: "--filter=hypercall/page-*" });
    expect(r.stdout).toMatch(/^TAP version 13$/m);
    expect(r.stdout).toMatch(/^ok 1 selftests: xconf: xconf\.sh$/m);
    expect(r.stdout).toMatch(/^# timeout set to 1800$/m);
    const xconf = spawnSync(process.execPath, ['bin/xconf.js', 'run', 'suites/hypercall', '--filter=hypercall/page-*', `--junit=${mkdtempSync(join(tmpdir(), 'x-'))}/j.xml`], { encoding: 'utf8' });
    const m = /^(\d+) passed, (\d+) failed, (\d+) skipped, (\d+) known divergences$/m.exec(xconf.stdout)!;
    const t = totals(r.stdout)!;
    expect(t, r.stdout.slice(-800)).toBeDefined();
    expect([t[0], t[1], t[4]]).toEqual([+m[1], +m[2], +m[3]]);
    expect(+m[1]).toBeGreaterThan(5);
  });
  it('a failing case is "not ok" with exit=1', () => {
    const r = runKselftest({ XCONF_SUITES: resolve('test/cases/fails') });
    expect(r.stdout).toMatch(/^not ok 1 selftests: xconf: xconf\.sh # exit=1$/m);
    expect(totals(r.stdout)?.[1]).toBe(1);
  });
  it('everything skipped is a kselftest SKIP (exit 4)', () => {
    const r = runKselftest({ XCONF_SUITES: resolve('test/cases/skips') });
    expect(r.stdout).toMatch(/^ok 1 selftests: xconf: xconf\.sh # SKIP$/m);
  });
  it('no /dev/kvm, no build: a SKIP naming why, not a failure', () => {
    const r = runKselftest({ XCONF_DIR: '/nonexistent' });
    expect(r.stdout).toMatch(/^# 1\.\.0 # SKIP no built xconf at \/nonexistent/m);
    expect(r.stdout).toMatch(/^ok 1 selftests: xconf: xconf\.sh # SKIP$/m);
  });
});
