// Saved case results: a run of a model target written whole (every step's
// observations), so a differential elsewhere can compare with it instead of
// running the model again. The live kvm VM under TCG runs JavaScript ~13 times
// slower than its host, and a model reference beside the target there cost the
// target a quarter of its wall time; the host makes the same results in a second.
//
// A saved run is only as good as its match with the run comparing against it, so
// loading checks everything the reference's results depend on: the target it ran,
// the seed, the Xen version it was told to follow, the code that produced it (a
// digest of this build's code) and the bytes of every case file it ran. Any
// mismatch is a usage error naming the difference and the command that remakes it.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deserialize, serialize } from 'node:v8';
import { UsageError } from '../errors.js';
import { writeAtomic } from '../report/atomic-write.js';
import type { CaseResult, RunSummary } from './results.js';

const FORMAT = 'xconf-saved-results-1';

export interface SavedResults {
  format: typeof FORMAT;
  target: string;
  seed: string;
  xenVersion: string | null;
  build: string;
  /** sha256 of each case file the results come from, by the path the results name. */
  files: Record<string, string>;
  results: CaseResult[];
}

export interface SavedFor {
  target: string;
  seed: string;
  xenVersion?: string;
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** The folder of the code this process runs: the bundle, or the sources under test. */
function codeRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return here.endsWith(join('dist', 'bundle')) ? here : dirname(here);
}

/** A digest of the code that makes results: every .js / .ts file under the code root. */
export function buildDigest(root = codeRoot()): string {
  const files: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(js|ts)$/.test(e.name) && !/\.test\.ts$/.test(e.name)) files.push(p);
    }
  };
  walk(root);
  const h = createHash('sha256');
  for (const f of files.sort()) h.update(relative(root, f)).update('\0').update(readFileSync(f)).update('\0');
  return h.digest('hex');
}

function fileDigests(results: readonly CaseResult[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const r of results) if (!(r.file in out) && existsSync(r.file)) out[r.file] = sha256(readFileSync(r.file));
  return out;
}

export function saveResults(path: string, run: RunSummary, xenVersion?: string): void {
  const saved: SavedResults = {
    format: FORMAT, target: run.target, seed: run.seed, xenVersion: xenVersion ?? null,
    build: buildDigest(), files: fileDigests(run.results), results: run.results,
  };
  writeAtomic(path, serialize(saved));
}

const remakeHint = (path: string, want: SavedFor) =>
  `remake it with: xconf run --target=${want.target} --save-results=${path}${want.seed !== '0' ? ` --seed=${want.seed}` : ''}`;

/**
 * The saved results at `path`, checked for standing in for running `want.target` here
 * with this build: a UsageError (one line) when they cannot.
 */
export function openReference(path: string, want: SavedFor): SavedResults {
  const bad = (why: string) => new UsageError(`--reference-results: ${path} ${why}; ${remakeHint(path, want)}`);
  let saved: SavedResults;
  try {
    saved = deserialize(readFileSync(path)) as SavedResults;
  } catch (e) {
    throw bad(`cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (saved?.format !== FORMAT || !Array.isArray(saved.results)) throw bad('is not a file of saved results');
  if (saved.target !== want.target) throw bad(`holds a run of --target=${saved.target}, not ${want.target}`);
  if (saved.seed !== want.seed) throw bad(`was run with seed ${saved.seed}, this run uses ${want.seed}`);
  if (saved.xenVersion !== (want.xenVersion ?? null)) throw bad(`follows Xen ${saved.xenVersion ?? '(its own default)'}, this target fixes ${want.xenVersion ?? '(none)'}`);
  if (saved.build !== buildDigest()) throw bad('was made by another build of xconf');
  return saved;
}

/** The saved results for the cases `ran`: each must be there, from the case file as it is now. */
export function referenceFor(saved: SavedResults, path: string, want: SavedFor, ran: readonly CaseResult[]): CaseResult[] {
  const bad = (why: string) => new UsageError(`--reference-results: ${path} ${why}; ${remakeHint(path, want)}`);
  const byName = new Map(saved.results.map((r) => [r.name, r]));
  const missing = ran.filter((r) => r.status !== 'skip' && !byName.has(r.name));
  if (missing.length) throw bad(`has no result for ${missing.length} case(s) this run ran (first: ${missing[0].name})`);
  const checked = new Set<string>();
  for (const r of ran) {
    if (r.status === 'skip') continue;
    const file = byName.get(r.name)!.file;
    if (checked.has(file)) continue;
    const now = existsSync(file) ? sha256(readFileSync(file)) : undefined;
    if (now !== saved.files[file]) throw bad(`was made from another version of ${file}`);
    checked.add(file);
  }
  return saved.results;
}
