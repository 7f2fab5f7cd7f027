// The CI templates in ci/templates: YAML that yamllint --strict accepts, GitHub
// workflows valid against the workflow schema (@action-validator/core), a
// GitLab file whose jobs are complete, fuzz fan-outs whose shard counts agree,
// and every `xconf run` / `xconf report` option they use one the CLI has.
// Under CI=true a missing yamllint fails (.ci/run installs it).
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { validateWorkflow } from '@action-validator/core';
import { HELP } from '../../harness/cli/help.js';
import { REPORT_HELP } from '../../harness/cli/report-command.js';

const DIR = 'ci/templates';
const GITHUB = readdirSync(join(DIR, 'github')).filter((f) => f.endsWith('.yml')).map((f) => join(DIR, 'github', f));
const GITLAB = join(DIR, 'gitlab-ci.yml');
const ALL = [GITLAB, ...GITHUB];
const yamllint = spawnSync('yamllint', ['--version']).status === 0;
if (!yamllint && process.env.CI) throw new Error('yamllint is missing on a CI machine: .ci/run should have installed it');

/** Options of every `xconf CMD ...` command line in a file (continuation lines joined). */
function xconfOptions(text: string, cmd: string): string[] {
  const joined = text.replace(/\\\n\s*/g, ' ').replace(/\n\s{6,}(?=--)/g, ' ');
  const out: string[] = [];
  for (const m of joined.matchAll(new RegExp(`xconf ${cmd}\\b([^\\n]*)`, 'g'))) {
    for (const o of m[1].matchAll(/(?:^|\s)(--[a-z-]+|-o)\b/g)) out.push(o[1]);
  }
  return out;
}

describe('CI templates', () => {
  it.skipIf(!yamllint)('yamllint --strict accepts every template', () => {
    const r = spawnSync('yamllint', ['-s', '-c', join(DIR, '.yamllint'), DIR], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });
  it('GitHub workflows are valid against the workflow schema', () => {
    expect(GITHUB.length).toBeGreaterThanOrEqual(2);
    for (const f of GITHUB) expect(validateWorkflow(readFileSync(f, 'utf8')).errors, f).toEqual([]);
    // The validator does reject a broken workflow.
    expect(validateWorkflow('on: push\njobs:\n  a:\n    runs-on: x\n    stepz: []\n').errors.length).toBeGreaterThan(0);
  });
  it('GitLab jobs each have a script and a stage the file declares; JUnit is published', () => {
    const doc = parse(readFileSync(GITLAB, 'utf8')) as Record<string, Record<string, unknown>>;
    const stages = doc.stages as unknown as string[];
    const jobs = Object.entries(doc).filter(([k, v]) => !k.startsWith('.') && !['stages', 'variables', 'include', 'default'].includes(k) && typeof v === 'object');
    expect(jobs.length).toBeGreaterThanOrEqual(5);
    for (const [name, job] of jobs) {
      expect(Array.isArray(job.script), `${name}.script`).toBe(true);
      expect(stages, `${name}.stage`).toContain(job.stage);
      if (job.extends) expect(doc[job.extends as string], `${name}.extends`).toBeDefined();
    }
    expect((doc['xconf-kvm'].artifacts as { reports: { junit: string } }).reports.junit).toBe('reports/kvm.xml');
    expect((doc['xconf-live-kvm'].artifacts as { reports: { junit: string } }).reports.junit).toBe('reports/live-kvm.xml');
  });
  it('the nightly fuzz fan-outs run every shard K/N and collect the findings', () => {
    const gl = parse(readFileSync(GITLAB, 'utf8'));
    expect(gl['xconf-fuzz'].parallel).toBeGreaterThan(1);
    expect(gl['xconf-fuzz'].script.join(' ')).toContain('--shard="$CI_NODE_INDEX/$CI_NODE_TOTAL"');
    expect(gl['xconf-fuzz'].artifacts.paths).toContain('findings/');
    const gh = parse(readFileSync(join(DIR, 'github', 'xconf-nightly-fuzz.yml'), 'utf8'));
    const shards: number[] = gh.jobs.fuzz.strategy.matrix.shard;
    expect(shards).toEqual(Array.from({ length: Number(gh.env.SHARDS) }, (_, i) => i + 1));
    expect(JSON.stringify(gh.jobs.fuzz.steps)).toContain('--shard=\\"${{ matrix.shard }}/${{ env.SHARDS }}\\"');
    expect(gh.jobs.collect.needs).toBe('fuzz');
  });
  it('every xconf run / report option the templates use exists', () => {
    for (const f of ALL) {
      const text = readFileSync(f, 'utf8');
      for (const o of xconfOptions(text, 'run')) expect(HELP.run, `${f}: xconf run ${o}`).toContain(o === '-o' ? ' -o' : `${o}`);
      for (const o of xconfOptions(text, 'report')) expect(REPORT_HELP, `${f}: xconf report ${o}`).toContain(o);
    }
    expect(xconfOptions(readFileSync(GITLAB, 'utf8'), 'run')).toContain('--kcidb');
  });
});
