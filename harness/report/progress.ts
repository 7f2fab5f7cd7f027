// Progress while a run goes: a failure is printed the moment its case ends,
// with its detail; on a terminal one status line ("[N/M] ...") is rewritten in
// place on stderr; elsewhere, when cases are slow (isolated, live targets),
// one line per finished case, so a 40 s run is never silent.
import type { CaseResult } from '../runner/results.js';
import { location, type Style } from './console.js';

export interface ProgressOptions {
  total: number;
  /** stderr is a terminal: rewrite one status line. */
  tty: boolean;
  /** Not a terminal: print a line per finished case that ran. */
  perCase: boolean;
  /** Print every case, skips with their reason, terminal or not. */
  verbose?: boolean;
  style: Style;
  out: (s: string) => void;
  err: (s: string) => void;
  label?: string;
}

const STATUS_INTERVAL_MS = 100;

export class Progress {
  private n = 0;
  private failed = 0;
  private skipped = 0;
  private lastStatus = 0;
  private statusShown = false;

  constructor(private readonly o: ProgressOptions) {}

  caseDone(r: CaseResult): void {
    this.n++;
    if (r.status === 'skip') this.skipped++;
    const bad = r.status === 'fail' || r.status === 'error';
    if (bad) this.failed++;
    const width = String(this.o.total).length;
    const tag = `[${String(this.n).padStart(width)}/${this.o.total}]`;
    if (bad) {
      this.clearStatus();
      const lines = [this.o.style.red(`${r.status.toUpperCase()} ${r.name} (${location(r)}): ${r.message ?? ''}`)];
      if (r.detail) lines.push(...r.detail.split('\n').map((l) => `    ${l}`));
      this.o.out(lines.join('\n') + '\n');
    } else if (this.o.verbose || (!this.o.tty && this.o.perCase && r.status !== 'skip')) {
      this.clearStatus();
      const why = this.o.verbose && r.message ? `: ${r.message}` : '';
      this.o.out(`${tag} ${r.status.toUpperCase()} ${r.name} (${(r.durationMs / 1000).toFixed(2)}s)${why}\n`);
    }
    if (this.o.tty) {
      const now = performance.now();
      if (now - this.lastStatus < STATUS_INTERVAL_MS && this.n < this.o.total) return;
      this.lastStatus = now;
      const counts = `${this.failed} failed, ${this.skipped} skipped`;
      const line = `${this.o.label ? `${this.o.label} ` : ''}${tag} ${counts}  ${r.name}`;
      this.o.err(`\r\u001b[K${line.slice(0, (process.stderr.columns ?? 120) - 1)}`);
      this.statusShown = true;
    }
  }

  /** Clears the status line (before other output, and at the end). */
  clearStatus(): void {
    if (!this.statusShown) return;
    this.o.err('\r\u001b[K');
    this.statusShown = false;
  }
}
