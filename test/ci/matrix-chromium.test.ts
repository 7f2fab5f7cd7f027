// The conformance matrix page of model + live 6.1 + live 6.12 (fixtures/reports)
// in a real headless browser (Debian's chromium): the DOM Chromium builds has
// the expected count of every status in every column, the summary rows agree,
// every link from a cell lands on its text, and a screenshot goes to reports/.
// Under CI=true a missing chromium fails (.ci/run installs it); elsewhere it skips.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';

const CHROMIUM = ['chromium', 'chromium-browser'].find((c) => spawnSync(c, ['--version'], { encoding: 'utf8' }).status === 0);
if (!CHROMIUM && process.env.CI) throw new Error('chromium is missing on a CI machine: .ci/run should have installed it');
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--hide-scrollbars', '--no-first-run'];
const dir = mkdtempSync(join(tmpdir(), 'xconf-matrix-'));
const FILES = ['fixtures/reports/model.xml', 'fixtures/reports/live-kvm-6.1.xml', 'fixtures/reports/live-kvm-6.12.xml'];
// What the fixtures hold (see their testcases): pass, fail, error, known divergence, skip.
const EXPECTED: Record<string, number[]> = {
  model: [197, 0, 0, 0, 10],
  'kvm 6.1.192': [199, 1, 0, 3, 5],
  'kvm 6.12.118': [207, 0, 0, 1, 0],
};
const ORDER = ['pass', 'fail', 'error', 'xfail', 'skip'];

beforeAll(() => {
  if (!existsSync('dist/bundle/main.js')) execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
});

describe.skipIf(!CHROMIUM)('matrix page in headless Chromium', () => {
  it('renders model + live 6.1 + live 6.12 with the expected counts, working links, and a screenshot', () => {
    const html = join(dir, 'matrix.html');
    const r = spawnSync(process.execPath, ['bin/xconf.js', 'report', ...FILES, `--html=${html}`, `--md=${join(dir, 'matrix.md')}`], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const url = pathToFileURL(html).href;
    const dom = spawnSync(CHROMIUM!, [...FLAGS, '--dump-dom', url], { encoding: 'utf8', timeout: 90_000 });
    expect(dom.status, dom.stderr.slice(-500)).toBe(0);
    const doc = dom.stdout;
    expect(doc).toMatch(/<table id="matrix">/);
    for (const [col, want] of Object.entries(EXPECTED)) {
      const cells = [...doc.matchAll(/<td class="cell s-(\w+)" data-column="([^"]+)"/g)].filter((m) => m[2] === col).map((m) => m[1]);
      expect(ORDER.map((s) => cells.filter((c) => c === s).length), col).toEqual(want);
      const row = new RegExp(`<tr class="summary" data-column="${col}" ${ORDER.map((s) => `data-${s}="(\\d+)"`).join(' ')}`).exec(doc);
      expect(row?.slice(1).map(Number), `summary row of ${col}`).toEqual(want);
    }
    // 208 rows: the 207 cases and the live environment's boot-and-run.
    expect((doc.match(/<tr><td>/g) ?? []).length).toBe(208);
    const links = [...doc.matchAll(/href="#(c\d+)"/g)].map((m) => m[1]);
    expect(links.length).toBe(10 + 1 + 3 + 5 + 1);
    for (const id of links) expect(doc).toContain(`<dt id="${id}"`);
    expect(doc).toContain('arch/x86/kvm/xen.c 68.4% lines');

    mkdirSync('reports', { recursive: true });
    const png = resolve('reports', 'matrix.png');
    const shot = spawnSync(CHROMIUM!, [...FLAGS, '--window-size=1280,1600', `--screenshot=${png}`, url], { encoding: 'utf8', timeout: 90_000 });
    expect(shot.status, shot.stderr.slice(-500)).toBe(0);
    expect(readFileSync(png).subarray(1, 4).toString()).toBe('PNG');
    expect(statSync(png).size).toBeGreaterThan(20_000);
  });
});
