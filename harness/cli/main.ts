// xconf command line. The one error boundary of the program and the only place
// that calls process.exit. Each command's modules are loaded only when that
// command runs, so `xconf --version` loads nothing but this file and the help.
// Exit codes: see HELP.main (harness/cli/help.ts) and harness/errors.ts.

import { DriverError, EXIT, SuiteError, UsageError, formatProblem, type ExitCode } from '../errors.js';
import { HELP, VERSION } from './help.js';

const COMMANDS: Record<string, (argv: string[]) => Promise<ExitCode>> = {
  run: async (argv) => (await import('./run-command.js')).cmdRun(argv),
  validate: async (argv) => (await import('./list-command.js')).cmdValidate(argv),
  list: async (argv) => (await import('./list-command.js')).cmdList(argv),
  report: async (argv) => (await import('./report-command.js')).runReport(argv),
  fuzz: async (argv) => (await import('./fuzz-command.js')).runFuzz(argv),
  selfcheck: async (argv) => (await import('./fuzz-command.js')).runSelfcheck(argv),
};

export async function main(argv: string[]): Promise<ExitCode> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
      // No command is a usage error: help on stderr, so a script that forgot its command fails.
      process.stderr.write(HELP.main + '\n');
      return EXIT.usage;
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(HELP.main + '\n');
      return EXIT.ok;
    case '--version':
    case '-V':
      process.stdout.write(`${VERSION}\n`);
      return EXIT.ok;
  }
  const run = COMMANDS[cmd];
  if (!run) throw new UsageError(`unknown command '${cmd}' (commands: ${Object.keys(COMMANDS).join(', ')}; see --help)`);
  return run(rest);
}

/** Map any error to one clear line on stderr and an exit code; never a stack trace. */
export function report(e: unknown): ExitCode {
  if (e instanceof SuiteError) {
    process.stderr.write(e.problems.map(formatProblem).join('\n') + '\n');
    return EXIT.usage;
  }
  if (e instanceof UsageError) {
    process.stderr.write(`xconf: ${e.message}\n`);
    return EXIT.usage;
  }
  if (e instanceof DriverError) {
    const extra = [e.code, e.syscall, e.errno !== undefined ? `errno ${e.errno}` : undefined].filter(Boolean).join(', ');
    process.stderr.write(`xconf: ${e.message}${extra && !e.message.includes(e.code) ? ` (${extra})` : ''}\n`);
    return EXIT.environment;
  }
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err.code === 'string' && typeof err.syscall === 'string') {
    process.stderr.write(`xconf: ${err.syscall} ${err.path ?? ''}: ${err.code}\n`);
    return EXIT.environment;
  }
  process.stderr.write(`xconf: internal error: ${(e as Error)?.message ?? String(e)} (please report this with the command line)\n`);
  return EXIT.environment;
}

/** Run the command line in `argv` as the program: exit code, EPIPE and errors handled (bin/xconf.js calls it). */
export function start(argv: string[]): void {
  // A reader that went away (`xconf run | head`) ends the program quietly, as for any Unix tool.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode ?? EXIT.ok);
      throw e;
    });
  }
  main(argv).then(
    (code) => { process.exitCode = code; },
    (e) => { process.exitCode = report(e); },
  );
}

// `node dist/cli/main.js ...` runs the program too.
if (process.argv[1] && import.meta.url.endsWith('/cli/main.js') && process.argv[1].endsWith('main.js')) start(process.argv.slice(2));
