// Coverage guidance for a fuzz run: a coverage source (KCOV on a live kernel,
// fuzz/kcov.ts) says after each sequence whether it reached code no earlier
// sequence reached; such a sequence joins the corpus, and later sequences are
// mutations of corpus entries (a prefix or an ordered subset of its steps, then
// fresh steps), as syzkaller keeps and mutates its inputs. The corpus is
// bounded: memory stays flat over an overnight run.

import type { FuzzSetup } from './setup.js';
import type { FuzzStep } from './steps.js';

/** What a coverage source reports after a sequence (counts since its start, news since the last collect). */
export interface CoverageTotals {
  newEdges: number;
  newPcs: number;
  edges: number;
  pcs: number;
  /** PCs read in this collect. */
  records: number;
  /** Collects that found a thread's buffer full (PCs lost). */
  overflows: number;
  /** Threads traced; threads whose trace could not be opened. */
  threads: number;
  failedThreads: number;
}

export interface CoverageSource {
  /** Shown in the report: what is traced (e.g. "KCOV, arch/x86/kvm/xen.o"). */
  readonly name: string;
  /** Use the corpus for generation (false: measure coverage only, generate as without it). */
  readonly guide: boolean;
  /** Fold in what the target did since the last call; never called while a step runs. */
  collect(): CoverageTotals;
}

export interface CorpusEntry {
  setup: FuzzSetup;
  steps: FuzzStep[];
  /** Edges this sequence was the first to reach. */
  newEdges: number;
}

export class Corpus {
  readonly entries: CorpusEntry[] = [];
  /** Sequences that reached new edges (also those that replaced an entry). */
  added = 0;
  /** Generated sequences that were mutations of an entry. */
  mutated = 0;
  last?: CoverageTotals;

  constructor(readonly max = 512) {}

  /** Keep a sequence that reached new edges; when full, it replaces the entry that found the fewest. Whether it was kept. */
  add(e: CorpusEntry): boolean {
    if (e.steps.length === 0 || e.newEdges <= 0) return false;
    this.added++;
    if (this.entries.length < this.max) {
      this.entries.push(e);
      return true;
    }
    let low = 0;
    for (let i = 1; i < this.entries.length; i++) if (this.entries[i].newEdges < this.entries[low].newEdges) low = i;
    if (this.entries[low].newEdges > e.newEdges) return false;
    this.entries[low] = e;
    return true;
  }
}

/** Edges over time, at the checkpoints a report prints (10 s, 30 s, 1, 2, 5, 10, 30 min, then hourly). */
export class CoverageTimeline {
  readonly points: Array<{ ms: number; edges: number; pcs: number }> = [];
  private next = 0;
  private static readonly MARKS = [10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000];

  private mark(i: number): number {
    const m = CoverageTimeline.MARKS;
    return i < m.length ? m[i] : 3_600_000 * (i - m.length + 1);
  }

  /** Record the totals if a checkpoint has passed since the last one recorded. */
  observe(ms: number, t: CoverageTotals): void {
    if (ms < this.mark(this.next)) return;
    while (ms >= this.mark(this.next)) this.next++;
    this.points.push({ ms, edges: t.edges, pcs: t.pcs });
  }
}
