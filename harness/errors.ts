// Harness-level errors. A Xen error code is never one of these: it is an
// Outcome (`{ ret: -22 }`). These are for usage, suite and environment faults,
// each mapped to one of the CLI's exit codes (see harness/cli/exit-codes.ts).

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  environment: 3,
  allSkipped: 4,
  /** Stopped by SIGINT (128 + 2, as shells report it); the reports say the run is partial. */
  sigint: 130,
  /** Stopped by SIGTERM or SIGHUP, or because the parent process went away. */
  sigterm: 143,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A problem in a suite file, with its location (1-based line and column). */
export interface SuiteProblem {
  file: string;
  line: number;
  col: number;
  code: string;
  path: string;
  message: string;
}

export function formatProblem(p: SuiteProblem): string {
  const where = `${p.file}:${p.line}:${p.col}:`;
  return p.path ? `${where} ${p.code} ${p.path}: ${p.message}` : `${where} ${p.code}: ${p.message}`;
}

/** Bad command-line usage: exit 2, one line. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** One or more problems in suite files: exit 2, one line per problem. */
export class SuiteError extends Error {
  override name = 'SuiteError';
  constructor(readonly problems: SuiteProblem[]) {
    super(problems.map(formatProblem).join('\n'));
  }
}

/** A driver or environment fault (missing /dev/kvm, addon not built, ioctl failure): exit 3. */
export class DriverError extends Error {
  override name = 'DriverError';
  readonly code: string;
  readonly errno?: number;
  readonly syscall?: string;
  constructor(message: string, opts: { code: string; errno?: number; syscall?: string }) {
    super(message);
    this.code = opts.code;
    this.errno = opts.errno;
    this.syscall = opts.syscall;
  }
}
