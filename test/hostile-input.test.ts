// Reliability against hostile input and a killed run (issue: reliability).
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { XMLValidator, XMLParser } from 'fast-xml-parser';
import { loadFile } from '../harness/suite/loader.js';
import { formatProblem } from '../harness/errors.js';

beforeAll(() => {
  if (!existsSync('dist/bundle/main.js')) execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
});

const seeds = readdirSync('suites/hypercall').map((f) => readFileSync(join('suites/hypercall', f), 'utf8'));

/** A case file broken on purpose: each mutation below makes any valid case invalid. */
const malformed = fc.tuple(fc.constantFrom(...seeds), fc.nat(), fc.integer({ min: 0, max: 7 }), fc.string({ minLength: 1, maxLength: 8 })).map(([seed, at, kind, junk]) => {
  const i = at % seed.length;
  switch (kind) {
    case 0: return `${seed}\nbogus_key_${junk.length}: 1\n`; // unknown top-level key
    case 1: return seed.replace(/^description:.*$/m, ''); // missing description
    case 2: return seed.replace(/op: [a-z_.]+/, `op: nope.${junk.length}`); // unknown op
    case 3: return `${seed.slice(0, i)}\u0000${seed.slice(i)}`; // binary junk
    case 4: return `a: &a [${'x,'.repeat(20)}x]\nb: &b [${'*a,'.repeat(20)}*a]\nc: [${'*b,'.repeat(20)}*b]\n${seed}`; // alias bomb
    case 5: return `${seed}\nsteps: ${'['.repeat(500)}\n`; // deep nesting, and a duplicate key
    case 6: return seed.replace(/description:/, 'description: !!js/function'); // a tag
    default: return `${seed}\ntimeout: 1${'0'.repeat(300)}\n`; // huge number (and duplicate timeout or out of range)
  }
});

describe('hostile input', () => {
  // `npm test` runs 1,000; `npm run test:hostile` (in CI) runs the full 10,000.
  const N = Number(process.env.XCONF_HOSTILE_FILES ?? 1000);
  it(`${N} generated malformed files: no throw, every one rejected with file:line:col lines; validate exits 2`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-hostile-'));
    const samples = fc.sample(malformed, { numRuns: N, seed: 42 });
    samples.forEach((s, i) => writeFileSync(join(dir, `m${String(i).padStart(5, '0')}.yaml`), s));
    let rejected = 0;
    for (let i = 0; i < samples.length; i++) {
      if (i % 200 === 0) await new Promise((r) => setImmediate(r)); // keep the worker responsive
      const f = join(dir, `m${String(i).padStart(5, '0')}.yaml`);
      const r = loadFile(f, `m${i}`);
      expect(r.case, f).toBeUndefined();
      for (const p of r.problems) expect(formatProblem(p)).toMatch(/^\S+:\d+:\d+: [A-Z_]+( \S+)?: [^\n]+$/);
      rejected++;
    }
    expect(rejected).toBe(N);
    const r = spawnSync(process.execPath, ['bin/xconf.js', 'validate', dir], { encoding: 'utf8', maxBuffer: 1 << 28 });
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines.every((l) => /^\S+:\d+:\d+: [A-Z_]+/.test(l))).toBe(true);
    expect(new Set(lines.map((l) => l.split(':')[0])).size).toBe(N);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  }, 600_000);

  it('a run killed with SIGKILL half way leaves a well-formed JUnit file holding finished cases', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-kill-'));
    const suite = join(dir, 'suites', 'many');
    mkdirSync(suite, { recursive: true });
    // Enough cases that the run lasts several progress intervals.
    for (let i = 0; i < 3000; i++) {
      writeFileSync(join(suite, `c${i}.yaml`), `description: case ${i}\nmatrix:\n  mode: [64, 32]\nsetup:\n  mode: $mode\nsteps:\n  - op: xen.version\n    args: { cmd: XENVER_version }\n    expect: { ret: 0x40013 }\n  - op: xen.version\n    args: { cmd: XENVER_capabilities }\n    expect: { ret: 0 }\n`);
    }
    const junit = join(dir, 'junit.xml');
    const child = spawn(process.execPath, ['bin/xconf.js', 'run', join(dir, 'suites'), `--junit=${junit}`], { stdio: 'ignore' });
    const finished = (): number => {
      try {
        return (readFileSync(junit, 'utf8').match(/<testcase /g) ?? []).length;
      } catch {
        return 0;
      }
    };
    const t0 = Date.now();
    while (finished() === 0 && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const xml = readFileSync(junit, 'utf8');
    expect(XMLValidator.validate(xml)).toBe(true);
    const doc = new XMLParser({ ignoreAttributes: false }).parse(xml);
    const n = Number(doc.testsuites['@_tests']);
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(6000);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  }, 120_000);
});
