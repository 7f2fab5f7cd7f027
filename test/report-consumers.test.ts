// The reports as their real consumers read them: JUnit against the strict
// schema Jenkins' xunit plugin uses (xmllint --schema junit-10.xsd) and through
// python3-junitparser; KTAP through the kernel's own parser (kunit.py parse,
// from Debian's linux-source-6.12). Each consumer's counts must equal xconf's.
// Under CI=true a missing tool fails the test (.ci/run installs them); on a
// developer machine without them the checks skip, saying what to install.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { junitXml } from '../harness/report/junit.js';
import { ktap } from '../harness/report/ktap.js';
import type { CaseResult, RunSummary } from '../harness/runner/results.js';

const XSD = resolve('..', 'shared', 'data', 'junit', 'junit-10.xsd');
// Debian's python, where python3-junitparser is installed (a pyenv python on PATH would not see it).
const PY = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const has = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8' }).status === 0;
function tool(available: boolean, what: string): boolean {
  if (!available && process.env.CI) throw new Error(`${what} is missing on a CI machine: .ci/run should have installed it`);
  return available;
}
const xmllint = tool(has('xmllint', ['--version']) && existsSync(XSD), `xmllint (libxml2-utils) or ${XSD}`);
const junitparser = tool(has(PY, ['-c', 'import junitparser']), 'python3-junitparser');
const kunitDir = (() => {
  const r = spawnSync('bash', ['ci/kernel-tools.sh'], { encoding: 'utf8' });
  return r.status === 0 ? join(r.stdout.trim(), 'tools/testing/kunit') : undefined;
})();
const kunit = tool(!!kunitDir && existsSync(join(kunitDir, 'kunit.py')), 'kunit.py (package linux-source-6.12, via ci/kernel-tools.sh)');

const dir = mkdtempSync(join(tmpdir(), 'xconf-consumers-'));
const cli = (...args: string[]) => spawnSync(process.execPath, ['bin/xconf.js', ...args], { encoding: 'utf8' });
/** xconf's counts from its closing line. */
const closing = (out: string) => {
  const m = /^(\d+) passed, (\d+) failed, (\d+) skipped, (\d+) known divergences$/m.exec(out);
  if (!m) throw new Error(`no closing counts line in:\n${out.slice(-500)}`);
  return { passed: +m[1], failed: +m[2], skipped: +m[3], xfail: +m[4] };
};
const runs: Record<string, { junit: string[]; ktap: string; counts: ReturnType<typeof closing> }> = {};

beforeAll(() => {
  if (!existsSync('dist/bundle/main.js')) execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
  const model = cli('run', `--junit=${dir}/model.xml`, `--ktap=${dir}/model.ktap`);
  runs.model = { junit: [`${dir}/model.xml`], ktap: `${dir}/model.ktap`, counts: closing(model.stdout) };
  const diff = cli('run', '--target=model-kvm', '--diff-against=model', `--junit=${dir}/diff.xml`, `--ktap=${dir}/diff.ktap`, `--diff-report=${dir}/diff.differential.xml`);
  runs.differential = { junit: [`${dir}/diff.xml`, `${dir}/diff.differential.xml`], ktap: `${dir}/diff.ktap`, counts: closing(diff.stdout) };
  if (existsSync('/dev/kvm')) {
    const kvm = cli('run', '--target=kvm', `--junit=${dir}/kvm.xml`, `--ktap=${dir}/kvm.ktap`);
    runs.kvm = { junit: [`${dir}/kvm.xml`], ktap: `${dir}/kvm.ktap`, counts: closing(kvm.stdout) };
  }
  // Every status and an interrupted run, written directly.
  const base = { file: 'suites/x.yaml', description: 'd', spec: [], durationMs: 1, steps: [] };
  const results: CaseResult[] = [
    { ...base, id: 'a/p', variant: 'mode=64', name: 'a/p[mode=64]', status: 'pass' },
    { ...base, id: 'a/p', variant: 'mode=32', name: 'a/p[mode=32]', status: 'fail', message: 'ret: expected 0, got -22 (-EINVAL) #1' },
    { ...base, id: 'a/q', variant: '', name: 'a/q', status: 'error', message: 'timeout' },
    { ...base, id: 'b/r', variant: '', name: 'b/r', status: 'skip', message: 'Requirement not met: x (why)' },
    { ...base, id: 'b/s', variant: '', name: 'b/s', status: 'xfail', message: 'f', divergence: { expected: 'fail', reason: 'r', where: 'w.c f', source: 'e.yaml:3' } },
  ];
  const run: RunSummary = { target: 'kvm', seed: '0', capabilities: [], properties: { kernel: '6.12.117' }, results, startedAt: new Date().toISOString(), durationMs: 5, interrupted: 'SIGTERM', planned: 9 };
  writeFileSync(`${dir}/all.xml`, junitXml(run));
  writeFileSync(`${dir}/all.ktap`, ktap({ ...run, interrupted: undefined }));
  runs.statuses = { junit: [`${dir}/all.xml`], ktap: `${dir}/all.ktap`, counts: { passed: 1, failed: 2, skipped: 1, xfail: 1 } };
}, 240000);

describe('JUnit consumers', () => {
  it.skipIf(!xmllint)('every report validates against the strict junit-10.xsd', () => {
    for (const [name, r] of Object.entries(runs)) {
      for (const f of r.junit) {
        const v = spawnSync('xmllint', ['--noout', '--schema', XSD, f], { encoding: 'utf8' });
        expect(v.stderr, `${name}: ${f}`).toMatch(/validates$/m);
        expect(v.status).toBe(0);
      }
    }
  });
  it.skipIf(!junitparser)('python3-junitparser reads the cases with xconf\'s counts', () => {
    const script = `import sys, json
from junitparser import JUnitXml, Failure, Error, Skipped
x = JUnitXml.fromfile(sys.argv[1])
c = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for s in x:
    for t in s:
        c["tests"] += 1
        for r in t.result:
            if isinstance(r, Failure): c["failures"] += 1
            elif isinstance(r, Error): c["errors"] += 1
            elif isinstance(r, Skipped): c["skipped"] += 1
print(json.dumps(c))`;
    for (const [name, r] of Object.entries(runs)) {
      if (name === 'statuses') continue;
      const got = JSON.parse(execFileSync(PY, ['-c', script, r.junit[0]], { encoding: 'utf8' }));
      const c = r.counts;
      expect(got, name).toEqual({ tests: c.passed + c.failed + c.skipped + c.xfail, failures: got.failures, errors: c.failed - got.failures, skipped: c.skipped + c.xfail });
    }
  });
});

describe('the live environment\'s merged report', () => {
  it.skipIf(!xmllint)('merging the guests\' JUnit files keeps the strict schema and counts each case once', () => {
    const dirs = ['linux-6.1', 'linux-6.12'].map((label) => {
      const d = join(dir, label);
      execFileSync('mkdir', ['-p', d]);
      writeFileSync(join(d, 'meta'), `label=${label}\nseries=${label.slice(6)}\nrelease=${label.slice(6)}.1\ncap=0x3f\nexit=0\nstatus=ok\nboot_seconds=9\ntaint=0\n`);
      writeFileSync(join(d, 'junit.xml'), readFileSync(runs.model.junit[0]));
      return d;
    });
    const out = execFileSync(process.execPath, ['ci/live-kvm/merge-junit.mjs', '--out', `${dir}/live.xml`, ...dirs], { encoding: 'utf8' });
    const c = runs.model.counts;
    expect(out).toContain(`tests ${c.passed + c.failed + c.skipped + c.xfail} failures 0 skipped ${c.skipped} known 0 `);
    const v = spawnSync('xmllint', ['--noout', '--schema', XSD, `${dir}/live.xml`], { encoding: 'utf8' });
    expect(v.stderr).toMatch(/validates$/m);
  });
});

describe('KTAP consumers: an interrupted run', () => {
  it.skipIf(!kunit)('the tests it never reached are missing to kunit.py too: crashed, never green', () => {
    const base = { file: 'f.yaml', description: 'd', spec: [], durationMs: 1, steps: [] };
    const results: CaseResult[] = [{ ...base, id: 'a/b', variant: '', name: 'a/b', status: 'pass' }];
    writeFileSync(`${dir}/int.ktap`, ktap({ target: 'kvm', seed: '0', capabilities: [], properties: {}, results, startedAt: '', durationMs: 1, interrupted: 'SIGINT', planned: 4 }, { plannedGroups: 4 }));
    const p = spawnSync(PY, [join(kunitDir!, 'kunit.py'), 'parse', `${dir}/int.ktap`], { encoding: 'utf8' });
    expect(p.stdout + p.stderr).toMatch(/Testing complete\. Ran 4 tests: passed: 1, crashed: 3/);
  });
});

describe('KTAP consumers', () => {
  it.skipIf(!kunit)("the kernel's kunit.py parse reads every KTAP file with xconf's counts and no parse error", () => {
    for (const [name, r] of Object.entries(runs)) {
      const p = spawnSync(PY, [join(kunitDir!, 'kunit.py'), 'parse', r.ktap], { encoding: 'utf8' });
      const out = p.stdout + p.stderr;
      expect(out, name).not.toMatch(/\[ERROR\]|Could not find any KTAP output|expected \d+ test|but found/i);
      const m = /Testing complete\. Ran (\d+) tests: (.*)$/m.exec(out);
      expect(m, `${name}: ${out.slice(-300)}`).not.toBeNull();
      const field = (k: string) => Number(new RegExp(`${k}: (\\d+)`).exec(m![2])?.[1] ?? 0);
      const c = r.counts;
      // kunit has no xfail status: an `ok ... # XFAIL` line is a pass to it, as ktap.rst says.
      expect({ ran: +m![1], passed: field('passed'), failed: field('failed'), skipped: field('skipped') }, name)
        .toEqual({ ran: c.passed + c.failed + c.skipped + c.xfail, passed: c.passed + c.xfail, failed: c.failed, skipped: c.skipped });
    }
  });
});
