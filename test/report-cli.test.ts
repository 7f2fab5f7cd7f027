// `xconf report` and `xconf run --kcidb` end to end: KCIDB output of a model run
// and of a live run's JUnit validates against KCIDB's own schema (v5.3, from
// ../shared/data/kcidb/); three shards merge to the unsharded run's totals, as
// JUnit (checked against the strict junit-10.xsd) and as KCIDB.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';

// shared/ sits beside the clone (CI), or beside the folder of worktrees.
const SHARED = [resolve('..', 'shared'), resolve('..', '..', 'shared')].find((d) => existsSync(join(d, 'data'))) ?? resolve('..', 'shared');
const SCHEMA = join(SHARED, 'data', 'kcidb', 'kcidb-io.schema.v5.3.json');
const XSD = join(SHARED, 'data', 'junit', 'junit-10.xsd');
const cli = (...args: string[]) => spawnSync(process.execPath, ['bin/xconf.js', ...args], { encoding: 'utf8' });
const dir = mkdtempSync(join(tmpdir(), 'xconf-report-'));
const need = (ok: boolean, what: string) => {
  if (!ok && process.env.CI) throw new Error(`${what} is missing on a CI machine`);
  return ok;
};
const haveSchema = need(existsSync(SCHEMA), `the KCIDB schema ${SCHEMA}`);
const xmllint = need(spawnSync('xmllint', ['--version']).status === 0 && existsSync(XSD), `xmllint (libxml2-utils) or ${XSD}`);

function validator() {
  const ajv = new Ajv({ strict: false, allErrors: true });
  (addFormatsModule as unknown as { default?: (a: Ajv) => void }).default?.(ajv) ?? (addFormatsModule as unknown as (a: Ajv) => void)(ajv);
  return ajv.compile(JSON.parse(readFileSync(SCHEMA, 'utf8')));
}
const counts = (xml: string) => {
  const m = /<testsuites[^>]* tests="(\d+)" failures="(\d+)" errors="(\d+)"/.exec(xml)!;
  return { tests: +m[1], failures: +m[2], errors: +m[3], skipped: (xml.match(/<skipped/g) ?? []).length };
};

beforeAll(() => {
  if (!existsSync('dist/bundle/main.js')) execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
});

describe('xconf run --kcidb and xconf report --kcidb', () => {
  it.skipIf(!haveSchema)('KCIDB of a model run validates against the v5.3 schema, one test per case', () => {
    const r = cli('run', 'suites/hypercall', `--junit=${dir}/m.xml`, `--kcidb=${dir}/m.json`, '--origin=xconf_ci', '--build-id=xconf_ci:model-1');
    expect(r.status).toBe(0);
    const doc = JSON.parse(readFileSync(`${dir}/m.json`, 'utf8'));
    const validate = validator();
    expect(validate(doc), JSON.stringify(validate.errors?.slice(0, 3))).toBe(true);
    expect(doc.tests.length).toBe(counts(readFileSync(`${dir}/m.xml`, 'utf8')).tests);
    expect(doc.tests[0].misc).toMatchObject({ target: 'model', seed: '0' });
    // The schema does catch a bad document: the check is not vacuous.
    expect(validator()({ ...doc, tests: [{ ...doc.tests[0], status: 'XFAIL' }] })).toBe(false);
    // CI's own check (ci/kcidb/validate.mjs) agrees.
    const v = spawnSync(process.execPath, ['ci/kcidb/validate.mjs', `--schema=${SCHEMA}`, `${dir}/m.json`], { encoding: 'utf8' });
    expect(v.status, v.stdout + v.stderr).toBe(0);
    expect(v.stdout).toMatch(/valid KCIDB v5\.3, \d+ tests \(PASS \d+/);
    writeFileSync(`${dir}/bad.json`, JSON.stringify({ version: { major: 5 }, tests: [{ id: 'no origin' }] }));
    expect(spawnSync(process.execPath, ['ci/kcidb/validate.mjs', `--schema=${SCHEMA}`, `${dir}/bad.json`]).status).toBe(1);
  });
  it.skipIf(!haveSchema)("KCIDB of a live run's JUnit validates; a known divergence is a FAIL with its reason in misc", () => {
    const r = cli('report', '--kcidb', `${dir}/live.json`, '--origin=xconf_ci', '--build-id=6.1-build', '--artifacts-url=https://ci.example.org/job/1/', 'fixtures/reports/live-kvm-6.1.xml');
    expect(r.status, r.stderr).toBe(0);
    const doc = JSON.parse(readFileSync(`${dir}/live.json`, 'utf8'));
    const validate = validator();
    expect(validate(doc), JSON.stringify(validate.errors?.slice(0, 3))).toBe(true);
    const by = (s: string) => doc.tests.filter((t: { status: string }) => t.status === s).length;
    expect([doc.tests.length, by('PASS'), by('FAIL'), by('SKIP'), by('ERROR')]).toEqual([208, 199, 4, 5, 0]);
    const xf = doc.tests.filter((t: { misc: { known_divergence?: unknown } }) => t.misc.known_divergence);
    expect(xf.length).toBe(3);
    expect(xf[0].misc.known_divergence.where).toBe('arch/x86/kvm/xen.c kvm_xen_schedop_poll');
    expect(xf[0].misc.kernel).toBe('6.1.192');
    expect(doc.tests[0].build_id).toBe('xconf_ci:6.1-build');
    expect(doc.tests[0].output_files[0].url).toBe('https://ci.example.org/job/1/live-kvm-6.1.xml');
  });
  it('bad options and inputs: one line, exit 2', () => {
    for (const args of [
      ['report', '--kcidb=x.json', '--origin=Bad-Origin', '--build-id=b', 'fixtures/reports/model.xml'],
      ['report', '--kcidb=x.json', 'fixtures/reports/model.xml'],
      ['report', 'fixtures/reports/nope.xml'],
      ['report', 'package.json'],
      ['report'],
      ['run', '--kcidb=x.json', '--origin=xconf_ci'],
    ]) {
      const r = cli(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^xconf: /);
    }
  });
});

describe('xconf report --merge', () => {
  it('three shards merge to the totals and cases of one unsharded run (JUnit and KCIDB)', () => {
    const whole = cli('run', 'suites/hypercall', `--junit=${dir}/whole.xml`, `--kcidb=${dir}/whole.json`, '--origin=xconf_ci', '--build-id=b');
    expect(whole.status).toBe(0);
    for (const k of [1, 2, 3]) {
      const r = cli('run', 'suites/hypercall', `--shard=${k}/3`, `--junit=${dir}/s${k}.xml`, `--kcidb=${dir}/s${k}.json`, '--origin=xconf_ci', '--build-id=b');
      expect(r.status).toBe(0);
    }
    const m = cli('report', '--merge', '-o', `${dir}/all.xml`, `${dir}/s1.xml`, `${dir}/s2.xml`, `${dir}/s3.xml`);
    expect(m.status, m.stderr).toBe(0);
    const a = readFileSync(`${dir}/all.xml`, 'utf8'), w = readFileSync(`${dir}/whole.xml`, 'utf8');
    expect(counts(a)).toEqual(counts(w));
    const names = (x: string) => [...x.matchAll(/<testcase classname="([^"]+)" name="([^"]+)"/g)].map((g) => `${g[1]} ${g[2]}`);
    expect(names(a)).toEqual(names(w));
    if (xmllint) expect(spawnSync('xmllint', ['--noout', '--schema', XSD, `${dir}/all.xml`], { encoding: 'utf8' }).status).toBe(0);
    const k = cli('report', '--merge', '-o', `${dir}/all.json`, `${dir}/s1.json`, `${dir}/s2.json`, `${dir}/s3.json`);
    expect(k.status, k.stderr).toBe(0);
    const ids = (f: string) => JSON.parse(readFileSync(f, 'utf8')).tests.map((t: { id: string; status: string }) => `${t.id} ${t.status}`).sort();
    expect(ids(`${dir}/all.json`)).toEqual(ids(`${dir}/whole.json`));
  });
});

describe('the live environment\'s merged report', () => {
  it('a kernel\'s qemu target run (<kernel>/qemu) is merged beside it: its own column, its numbers on the kernel\'s line, its failure fails the kernel', () => {
    const kvm = cli('run', 'suites/sched', `--junit=${dir}/k.xml`);
    expect(kvm.status).toBe(0);
    const q = cli('run', 'suites/xenstore', `--junit=${dir}/q.xml`);
    expect(q.status).toBe(0);
    const qc = counts(readFileSync(`${dir}/q.xml`, 'utf8'));
    const k = `${dir}/liveq/linux-6.12`;
    mkdirSync(`${k}/qemu`, { recursive: true });
    copyFileSync(`${dir}/k.xml`, `${k}/junit.xml`);
    writeFileSync(`${k}/meta`, 'label=linux-6.12\nseries=6.12\nrelease=6.12.118\ncap=0x1ff\nexit=0\nstatus=ok\nboot_seconds=40\ntaint=0\n');
    // The qemu run's JUnit says target=qemu itself; the model's stands in for it here.
    writeFileSync(`${k}/qemu/junit.xml`, readFileSync(`${dir}/q.xml`, 'utf8').replace(/name="target" value="model"/g, 'name="target" value="qemu"'));
    const meta = (exit: string) => `label=linux-6.12/qemu\ntarget=qemu\nseries=6.12\nrelease=6.12.118\ncap=0x1ff\nexit=${exit}\nstatus=ok\nboot_seconds=0\ntaint=0\n`;
    writeFileSync(`${k}/qemu/meta`, meta('0'));
    const m = spawnSync(process.execPath, ['ci/live-kvm/merge-junit.mjs', '--out', `${dir}/liveq.xml`, k], { encoding: 'utf8' });
    expect(m.status, m.stderr).toBe(0);
    expect(m.stdout).toMatch(new RegExp(`^linux-6\\.12 .* ok \\| qemu target: exit 0   tests ${qc.tests} failures 0 skipped ${qc.skipped} known 0 ok$`, 'm'));
    const xml = readFileSync(`${dir}/liveq.xml`, 'utf8');
    expect(xml).toContain('name="linux-6.12/qemu/live-kvm"');
    expect(xml).toContain('classname="linux-6.12/qemu/');
    const rep = cli('report', `${dir}/liveq.xml`);
    expect(rep.stdout).toMatch(/^qemu \(Linux 6\.12\.118\)/m);
    // A qemu run that failed is the kernel's failure too.
    writeFileSync(`${k}/qemu/meta`, meta('1'));
    const f = spawnSync(process.execPath, ['ci/live-kvm/merge-junit.mjs', '--out', `${dir}/liveq.xml`, k], { encoding: 'utf8' });
    expect(f.stdout).toMatch(/\| qemu target: exit 1 .* FAILED: the inner command exited 1 but its JUnit file reports no failure$/m);
    expect(readFileSync(`${dir}/liveq.xml`, 'utf8')).toMatch(/<testsuites name="xconf live-kvm" tests="\d+" failures="0" errors="1"/);
  });


  it('ci/live-kvm/merge-junit.mjs output reads as one column per kernel with the inner runs\' counts, and as valid KCIDB', () => {
    const r = cli('run', 'suites/sched', `--junit=${dir}/inner.xml`);
    expect(r.status).toBe(0);
    const inner = counts(readFileSync(`${dir}/inner.xml`, 'utf8'));
    for (const [label, release] of [['linux-6.1', '6.1.192'], ['linux-6.12', '6.12.118']]) {
      mkdirSync(`${dir}/live/${label}`, { recursive: true });
      copyFileSync(`${dir}/inner.xml`, `${dir}/live/${label}/junit.xml`);
      writeFileSync(`${dir}/live/${label}/meta`, `label=${label}\nseries=${release.split('.').slice(0, 2).join('.')}\nrelease=${release}\ncap=0x7f\nexit=0\nstatus=ok\nboot_seconds=40\ntaint=0\n`);
    }
    const m = spawnSync(process.execPath, ['ci/live-kvm/merge-junit.mjs', '--out', `${dir}/live-kvm.xml`, `${dir}/live/linux-6.1`, `${dir}/live/linux-6.12`], { encoding: 'utf8' });
    expect(m.status, m.stderr).toBe(0);
    const rep = cli('report', `${dir}/live-kvm.xml`, `--md=${dir}/live.md`);
    expect(rep.status, rep.stderr).toBe(0);
    // The boot-and-run case of each kernel is one more pass.
    const row = (k: string) => new RegExp(`^model \\(Linux ${k.replace(/\./g, '\\.')}\\) +(\\d+) passed, 0 failed, 0 errors, (\\d+) skipped`, 'm').exec(rep.stdout)?.slice(1).map(Number);
    for (const k of ['6.1.192', '6.12.118']) expect(row(k), rep.stdout).toEqual([inner.tests - inner.skipped + 1, inner.skipped]);
    if (!haveSchema) return;
    expect(cli('report', `${dir}/live-kvm.xml`, `--kcidb=${dir}/live-kvm.json`, '--origin=xconf_ci', '--build-id=live').status).toBe(0);
    const doc = JSON.parse(readFileSync(`${dir}/live-kvm.json`, 'utf8'));
    expect(validator()(doc)).toBe(true);
    expect(doc.tests.length).toBe(2 * (inner.tests + 1));
  });
});
