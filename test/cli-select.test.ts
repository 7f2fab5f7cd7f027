// End-to-end: selecting nothing is an error, and the filter spellings users try work.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const cli = (...args: string[]) => spawnSync(process.execPath, ['bin/xconf.js', ...args], { encoding: 'utf8' });

beforeAll(() => {
  if (!existsSync('dist/bundle/main.js')) execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
});

describe('xconf run: selection', () => {
  it('an empty directory, a directory without .yaml, and a filter matching nothing exit 2 with one line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-sel-'));
    const empty = mkdtempSync(join(tmpdir(), 'xconf-empty-'));
    const noYaml = mkdtempSync(join(tmpdir(), 'xconf-noyaml-'));
    writeFileSync(join(noYaml, 'notes.txt'), 'hello\n');
    for (const [args, text] of [
      [[empty], `no cases matched: no .yaml case files under ${empty}`],
      [[noYaml], `no cases matched: no .yaml case files under ${noYaml}`],
      [['suites/hypercall', '--filter=no-such-case'], "no cases matched --filter 'no-such-case'"],
    ] as Array<[string[], string]>) {
      const r = cli('run', ...args, `--junit=${dir}/j.xml`);
      expect(r.status).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(text);
      expect(existsSync(`${dir}/j.xml`)).toBe(false);
    }
  });

  it('the obvious filter spellings select cases', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-sel-'));
    for (const f of ['*xen-version*', 'xen-version', 'hypercall/xen-version-version[mode=32]']) {
      const r = cli('run', 'suites/hypercall', `--filter=${f}`, `--junit=${dir}/j.xml`);
      expect(r.status, `${f}: ${r.stderr}`).toBe(0);
      expect(Number(/^(\d+) passed/m.exec(r.stdout)?.[1])).toBeGreaterThan(0);
    }
  });
});

describe('xconf list: vocabularies', () => {
  it('--constants and --ops print the vocabulary with values and argument types', () => {
    const c = cli('list', '--constants', 'RUNSTATE_');
    expect(c.status).toBe(0);
    expect(c.stdout).toMatch(/^  RUNSTATE_running +0$/m);
    const o = cli('list', '--ops');
    expect(o.status).toBe(0);
    expect(o.stdout).toMatch(/^    args: state: int64 \(RUNSTATE_\*\), steal\?: int64$/m);
  });
  it('listing or validating an empty directory is an error too', () => {
    for (const cmd of ['list', 'validate']) {
      const r = cli(cmd, mkdtempSync(join(tmpdir(), 'xconf-empty-')));
      expect(r.status, cmd).toBe(2);
      expect(r.stderr).toMatch(/^xconf: no cases matched/);
    }
  });
});
