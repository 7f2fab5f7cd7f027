// End-to-end: runs that cannot mislead. Known divergences, stale expectations,
// interrupted runs, report locks, parent death, -j, --bail, --rerun-failed.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const cli = (...args: string[]) => spawnSync(process.execPath, ['bin/xconf.js', ...args], { encoding: 'utf8' });
const tmp = () => mkdtempSync(join(tmpdir(), 'xconf-runs-'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) if (cond()) return true;
  return cond();
}

beforeAll(() => {
  if (!existsSync('dist/bundle/main.js')) execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
});

describe('usage that would mislead', () => {
  it('bare xconf is a usage error with the help on stderr', () => {
    const r = cli();
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^xconf \d+\.\d+\.\d+: conformance/);
  });
  it('refuses a report over a case file, a bad seed, -j on a live target, each in one line', () => {
    for (const [args, msg] of [
      [['--junit=suites/hypercall/xen-version-version.yaml'], /refusing to write a report over a YAML file/],
      [['--seed=notanumber'], /--seed takes a whole number from 0 to 4294967295 \(got 'notanumber'\)/],
      [['-j', '2', '--target=kvm'], /-j\/--jobs runs model targets in worker processes/],
      [['--ktap=reports/junit.xml'], /--junit and --ktap both name reports\/junit.xml/],
    ] as const) {
      const r = cli('run', 'suites/hypercall', ...args);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect(readFileSync('suites/hypercall/xen-version-version.yaml', 'utf8')).toMatch(/^description:/m);
  });
  it('the previous report is gone as soon as a run starts, even one that fails to load', () => {
    const d = tmp();
    writeFileSync(`${d}/j.xml`, '<testsuites tests="999"/>');
    const r = cli('run', 'fixtures/invalid', `--junit=${d}/j.xml`);
    expect(r.status).toBe(2);
    expect(existsSync(`${d}/j.xml`)).toBe(false);
  });
  it('a second run on the same report path refuses, naming the first; a dead holder\'s lock is taken over', () => {
    const d = tmp();
    const holder = spawn('sleep', ['30']);
    writeFileSync(`${d}/.j.xml.lock`, `${holder.pid}\n`);
    const r = cli('run', 'suites/hypercall', `--junit=${d}/j.xml`);
    holder.kill();
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`xconf: --junit=${d}/j.xml is being written by another xconf run (pid ${holder.pid}); wait for it to finish or choose another path\n`);
    writeFileSync(`${d}/.j.xml.lock`, '999999999\n');
    expect(cli('run', 'suites/hypercall', `--junit=${d}/j.xml`).status).toBe(0);
    expect(existsSync(`${d}/.j.xml.lock`)).toBe(false);
  });
});

describe('output', () => {
  it('a reader that goes away (| head) ends the run quietly, without a stack trace', async () => {
    const child = spawn(process.execPath, ['bin/xconf.js', 'run', 'suites', '-v', `--junit=${tmp()}/j.xml`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (b) => { err += b; });
    child.stdout.once('data', () => child.stdout.destroy());
    await new Promise((r) => child.on('exit', r));
    expect(err).not.toMatch(/EPIPE|    at /);
  });
});

describe('known divergences', () => {
  const d = tmp();
  const expectFile = (status: string, id = 'wrong-version') => {
    const p = join(d, `model-${status}-${id.replace(/\W/g, '')}.yaml`);
    writeFileSync(p, `target: model\ndivergences:\n  - id: ${id}\n    status: ${status}\n    reason: the model reports another version\n    where: harness/model/version.ts\n`);
    return p;
  };
  it('a failure an expectations file names is a known divergence and the run passes', () => {
    const r = cli('run', 'test/cases/fails', 'suites/hypercall/xen-version-version.yaml', `--expect=${expectFile('fail')}`, `--junit=${d}/j.xml`, `--ktap=${d}/k.ktap`);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^2 passed, 0 failed, 0 skipped, 1 known divergences$/m);
    expect(r.stdout).toContain('KNOWN wrong-version (harness/model/version.ts): the model reports another version');
    expect(readFileSync(`${d}/j.xml`, 'utf8')).toContain('<skipped type="pytest.xfail" message="known divergence: the model reports another version (harness/model/version.ts)"/>');
    expect(readFileSync(`${d}/k.ktap`, 'utf8')).toMatch(/^ok \d wrong-version # XFAIL the model reports another version/m);
  });
  it('an entry expecting another status leaves the failure a failure', () => {
    expect(cli('run', 'test/cases/fails', `--expect=${expectFile('error')}`, `--junit=${d}/j2.xml`).status).toBe(1);
  });
  it('an entry whose case now passes fails the run with one line saying to remove it', () => {
    const r = cli('run', 'suites/hypercall/xen-version-version.yaml', `--expect=${expectFile('fail', 'hypercall/xen-version-version*')}`, `--junit=${d}/j3.xml`);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^STALE .*:3: known divergence 'hypercall\/xen-version-version\*' now passes as hypercall\/xen-version-version\[mode=64\] on model: remove the entry/m);
    expect(readFileSync(`${d}/j3.xml`, 'utf8')).toMatch(/<testsuite name="xconf.run" tests="2" failures="0" errors="2"/);
  });
  it('a malformed expectations file is a usage error naming file:line:col', () => {
    const p = join(d, 'bad.yaml');
    writeFileSync(p, 'target: model\ndivergences:\n  - id: x\n');
    const r = cli('run', 'suites/hypercall', `--expect=${p}`, `--junit=${d}/j4.xml`);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`${p}:3:5: missing 'status'`);
  });
});

describe('stopping', () => {
  it('SIGTERM: a partial summary, reports marked interrupted, KTAP bails out, exit 143', async () => {
    const d = tmp();
    const child = spawn(process.execPath, ['bin/xconf.js', 'run', 'suites', '--isolate', `--junit=${d}/j.xml`, `--ktap=${d}/k.ktap`, `--json=${d}/r.json`,
      '--diff-against=model-kvm', `--diff-report=${d}/d.xml`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b) => { out += b; });
    expect(await waitFor(() => (out.match(/\n/g) ?? []).length >= 3, 20000)).toBe(true);
    child.kill('SIGTERM');
    const code = await new Promise((r) => child.on('exit', r));
    expect(code).toBe(143);
    expect(out).toMatch(/^INTERRUPTED \(SIGTERM\): \d+ of \d+ cases ran; reports mark the run as partial$/m);
    expect(readFileSync(`${d}/j.xml`, 'utf8')).toMatch(/<testcase classname="xconf.run" name="interrupted">\s*<error message="run interrupted \(SIGTERM\) after \d+ of \d+ cases/);
    const k = readFileSync(`${d}/k.ktap`, 'utf8').trimEnd().split('\n');
    expect(k[2]).toMatch(/^1\.\.\d{3}$/);
    expect(k.at(-1)).toMatch(/^Bail out! run interrupted \(SIGTERM\)/);
    expect(JSON.parse(readFileSync(`${d}/r.json`, 'utf8')).interrupted).toBe('SIGTERM');
    expect(readFileSync(`${d}/d.xml`, 'utf8')).toMatch(/<error message="run interrupted \(SIGTERM\); the comparison is partial"/);
  }, 60000);
  it('a run whose parent dies without passing a signal on stops by itself', async () => {
    const d = tmp();
    const sh = spawn('sh', ['-c', `${process.execPath} bin/xconf.js run suites --isolate --junit=${d}/j.xml >${d}/out 2>&1 & echo $!; wait`], { stdio: ['ignore', 'pipe', 'ignore'] });
    const pid = Number(await new Promise<string>((r) => sh.stdout.once('data', (b) => r(String(b)))));
    // Once the first report is written the run is under way (its stop watch is set before that).
    expect(await waitFor(() => existsSync(`${d}/j.xml`), 20000)).toBe(true);
    sh.kill('SIGKILL');
    expect(await waitFor(() => !alive(pid), 15000)).toBe(true);
    expect(readFileSync(`${d}/j.xml`, 'utf8')).toContain('run interrupted (parent exited)');
  }, 60000);
  it('--bail stops at the first failure and says the report is partial', () => {
    const d = tmp();
    const r = cli('run', 'test/cases/fails', 'suites/hypercall', '--bail', `--junit=${d}/j.xml`);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/INTERRUPTED \(--bail: stopped at the first failure\)/);
  });
});

describe('selection and workers', () => {
  it('-j 2 gives the same results as one process, in plan order', () => {
    const d = tmp();
    expect(cli('run', 'suites/hypercall', 'suites/evtchn', `--junit=${d}/a.xml`, `--json=${d}/a.json`).status).toBe(0);
    expect(cli('run', 'suites/hypercall', 'suites/evtchn', '-j', '2', `--junit=${d}/b.xml`, `--json=${d}/b.json`).status).toBe(0);
    const statuses = (f: string) => JSON.parse(readFileSync(f, 'utf8')).results.map((r: { name: string; status: string }) => `${r.name} ${r.status}`);
    expect(statuses(`${d}/b.json`)).toEqual(statuses(`${d}/a.json`));
  });
  it('--seed shuffles the run order, never the reports', () => {
    const d = tmp();
    cli('run', 'suites/hypercall', `--json=${d}/a.json`, `--junit=${d}/a.xml`);
    cli('run', 'suites/hypercall', '--seed=5', `--json=${d}/b.json`, `--junit=${d}/b.xml`);
    const names = (f: string) => JSON.parse(readFileSync(f, 'utf8')).results.map((r: { name: string; status: string }) => `${r.name} ${r.status}`);
    expect(names(`${d}/b.json`)).toEqual(names(`${d}/a.json`));
  });
  it('--rerun-failed runs only what the previous report says failed', () => {
    const d = tmp();
    expect(cli('run', 'test/cases/fails', 'suites/hypercall', `--junit=${d}/j.xml`).status).toBe(1);
    const r = cli('run', 'test/cases/fails', 'suites/hypercall', '--rerun-failed', `--junit=${d}/j.xml`);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^xconf: target=model cases=1 /m);
    const none = tmp();
    expect(cli('run', 'suites/hypercall', `--junit=${none}/j.xml`).status).toBe(0);
    expect(cli('run', 'suites/hypercall', '--rerun-failed', `--junit=${none}/j.xml`).stdout).toMatch(/records no failed cases: nothing to rerun/);
    expect(cli('run', '--rerun-failed', `--junit=${none}/absent.xml`).stderr).toMatch(/--rerun-failed: no previous report at .*absent\.xml \(ENOENT\)/);
    // A report cut short, or binary junk: one line with the XML error's line, not the bytes around it.
    writeFileSync(`${none}/cut.xml`, '<testsuites>\n<testsuite name="a">\n<testcase');
    writeFileSync(`${none}/junk.xml`, Buffer.from([0x3c, 0x61, 0x3e, 0xff, 0xfe, 0x00, 0x01, 0x80, 0x3c, 0x2f]));
    for (const f of ['cut.xml', 'junk.xml']) {
      const r = cli('run', '--rerun-failed', `--junit=${none}/${f}`);
      expect(r.status, f).toBe(2);
      expect(r.stderr, f).toMatch(new RegExp(`^xconf: --rerun-failed: .*${f.replace('.', '\\.')}:\\d+: not well-formed XML: [^\\n]*\\n$`));
      expect(r.stderr, f).not.toMatch(/[\x00-\x08\ufffd]/);
    }
  });
  it('an empty shard of a fan-out runs nothing and passes; a rerun matching nothing selected is a usage error', () => {
    const d = tmp();
    const r = cli('run', 'suites/hypercall/xen-version-version.yaml', '--shard=3/3', `--junit=${d}/j.xml`);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^0 passed, 0 failed, 0 skipped, 0 known divergences$/m);
    expect(cli('run', 'test/cases/fails', `--junit=${d}/f.xml`).status).toBe(1);
    const rr = cli('run', 'suites/hypercall', '--rerun-failed', `--junit=${d}/f.xml`);
    expect(rr.status).toBe(2);
    expect(rr.stderr).toMatch(/no cases matched: none of the 1 failed cases in .*f\.xml is among the selected cases/);
  });
  it('isolated runs print a line per finished case as they go', () => {
    const d = tmp();
    const r = cli('run', 'suites/hypercall/xen-version-version.yaml', '--isolate', `--junit=${d}/j.xml`);
    expect(r.stdout).toMatch(/^\[1\/2\] PASS hypercall\/xen-version-version\[mode=64\] \(\d+\.\d+s\)$/m);
  });
});
