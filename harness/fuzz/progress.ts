// Progress of a fuzz run: one line rewritten in place on a TTY, a plain line
// every `plainEveryMs` otherwise (logs of overnight runs stay readable).

export interface ProgressState {
  steps: number;
  sequences: number;
  opsCovered: number;
  opsTotal: number;
  findings: number;
  elapsedMs: number;
  totalMs: number;
  /** Steps per second over the last interval. */
  rate: number;
  /** Coverage edges reached so far and the corpus size (a run with a coverage source). */
  edges?: number;
  corpus?: number;
}

function dur(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(s % 60).padStart(2, '0')}s`;
}

export function progressLine(p: ProgressState): string {
  return `fuzz: ${Math.round(p.rate).toLocaleString('en-US')} steps/s, ${p.steps.toLocaleString('en-US')} steps, ` +
    `${p.sequences.toLocaleString('en-US')} sequences, ops ${p.opsCovered}/${p.opsTotal}, ` +
    `${p.edges === undefined ? '' : `edges ${p.edges.toLocaleString('en-US')}, corpus ${p.corpus ?? 0}, `}findings ${p.findings}, ` +
    `${dur(p.elapsedMs)} elapsed, ${dur(p.totalMs - p.elapsedMs)} left`;
}

export class Progress {
  private last = 0;
  private lastLine = '';
  constructor(
    private readonly out: { write(s: string): unknown; isTTY?: boolean },
    private readonly tty = !!out.isTTY,
    private readonly ttyEveryMs = 250,
    private readonly plainEveryMs = 10_000,
  ) {}

  /** Show the state if the interval has passed (or `force`). */
  update(p: ProgressState, now: number, force = false): boolean {
    if (!force && now - this.last < (this.tty ? this.ttyEveryMs : this.plainEveryMs)) return false;
    const line = progressLine(p);
    if (force && line === this.lastLine) return false;
    this.last = now;
    this.lastLine = line;
    this.out.write(this.tty ? `\r\x1b[2K${line}` : `${line}\n`);
    return true;
  }

  /** End the live line before other output. */
  clear(): void {
    if (this.tty) this.out.write('\r\x1b[2K');
  }
}
