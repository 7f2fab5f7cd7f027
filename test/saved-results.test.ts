// --save-results / --reference-results: a model reference's run saved whole and
// compared with later, refused whenever it could not stand for running the model.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { deserialize, serialize } from 'node:v8';

const cli = (...args: string[]) => spawnSync(process.execPath, ['bin/xconf.js', ...args], { encoding: 'utf8' });
const tmp = () => mkdtempSync(join(tmpdir(), 'xconf-saved-'));
const diffLine = (out: string) => out.split('\n').find((l) => l.startsWith('differential:'));
const SUITE = 'suites/sched';

beforeAll(() => {
  if (!existsSync('dist/bundle/main.js')) execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
});

describe('saved reference results', () => {
  let d: string;
  let ref: string;
  beforeAll(() => {
    d = tmp();
    ref = join(d, 'ref.bin');
    const r = cli('run', SUITE, '--target=model-kvm', `--save-results=${ref}`, `--junit=${d}/saved.xml`);
    expect(r.status, r.stderr).toBe(0);
  });

  it('compare exactly as running the reference does', () => {
    const live = cli('run', SUITE, '--target=model', '--diff-against=model-kvm', `--junit=${d}/a.xml`);
    const fromFile = cli('run', SUITE, '--target=model', '--diff-against=model-kvm', `--reference-results=${ref}`, `--junit=${d}/b.xml`);
    expect(fromFile.status).toBe(live.status);
    expect(diffLine(fromFile.stdout)).toBeDefined();
    expect(diffLine(fromFile.stdout)).toBe(diffLine(live.stdout));
    expect(readFileSync(`${d}/b.differential.xml`, 'utf8').replace(/timestamp="[^"]*"|time="[^"]*"/g, ''))
      .toBe(readFileSync(`${d}/a.differential.xml`, 'utf8').replace(/timestamp="[^"]*"|time="[^"]*"/g, ''));
  });

  it('are what the comparison reads: a result changed in the file is a disagreement', () => {
    const saved = deserialize(readFileSync(ref)) as { results: Array<{ name: string; status: string; message?: string }> };
    const victim = saved.results.find((r) => r.status === 'pass')!;
    victim.status = 'fail';
    victim.message = 'planted';
    const forged = join(d, 'forged.bin');
    writeFileSync(forged, serialize(saved));
    const r = cli('run', SUITE, '--target=model', '--diff-against=model-kvm', `--reference-results=${forged}`, `--junit=${d}/c.xml`);
    expect(r.status).toBe(1);
    expect(diffLine(r.stdout)).toMatch(/[1-9]\d* disagree/);
    expect(readFileSync(`${d}/c.differential.xml`, 'utf8')).toContain(victim.name);
  });

  it('are refused, in one line with the command that remakes them, when they cannot stand for the reference', () => {
    const garbage = join(d, 'garbage.bin');
    writeFileSync(garbage, 'not v8');
    for (const [args, msg] of [
      [['--diff-against=model-kvm', `--reference-results=${garbage}`], /is not a file of saved results|cannot be read/],
      [['--diff-against=model-kvm', `--reference-results=${join(d, 'absent.bin')}`], /cannot be read \(ENOENT\)/],
      [['--diff-against=model-kvm', `--reference-results=${ref}`, '--seed=5'], /was run with seed 0, this run uses 5/],
      [['--diff-against=model', `--reference-results=${ref}`], /holds a run of --target=model-kvm, not model/],
      [[`--reference-results=${ref}`], /--reference-results needs --diff-against/],
      [['--diff-against=kvm', `--reference-results=${ref}`], /stands for a model reference/],
    ] as const) {
      const r = cli('run', SUITE, '--target=model', `--junit=${d}/e.xml`, ...args);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      if (!/needs|stands for/.test(r.stderr)) expect(r.stderr).toMatch(/remake it with: xconf run --target=model(-kvm)? --save-results=/);
    }
    const kvm = cli('run', SUITE, '--target=kvm', `--save-results=${join(d, 'x.bin')}`, `--junit=${d}/f.xml`);
    expect(kvm.status).toBe(2);
    expect(kvm.stderr).toMatch(/--save-results saves a model target's run/);
  });

  it('are refused when a case file changed since they were made', () => {
    const cases = tmp();
    const file = join(cases, 'yield.yaml');
    copyFileSync('suites/sched/sched-yield-counted.yaml', file);
    const own = join(cases, 'ref.bin');
    expect(cli('run', file, '--target=model-kvm', `--save-results=${own}`, `--junit=${cases}/s.xml`).status).toBe(0);
    expect(cli('run', file, '--target=model', '--diff-against=model-kvm', `--reference-results=${own}`, `--junit=${cases}/a.xml`).status).toBe(0);
    appendFileSync(file, '# edited\n');
    const r = cli('run', file, '--target=model', '--diff-against=model-kvm', `--reference-results=${own}`, `--junit=${cases}/b.xml`);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/was made from another version of .*yield\.yaml/);
  });
});
