// Help texts. Kept free of heavy imports: `xconf --help` loads nothing else.
import { readFileSync } from 'node:fs';
import { packagePath } from '../paths.js';

export const VERSION = (JSON.parse(readFileSync(packagePath('package.json'), 'utf8')) as { version: string }).version;
const TARGET_LIST = 'model | model-kvm | kvm | xen | qemu';

export const HELP: Record<string, string> = {
  main: `xconf ${VERSION}: conformance and fuzz harness for Xen-on-KVM

Usage: xconf <command> [options]

Commands:
  run [PATHS...]       run cases (default: suites/) against a target
  validate PATHS...    load and check case files without running them
  list [PATHS...]      list cases, their requirements, and whether the target can run them
  report FILES...      conformance matrix (HTML, Markdown), shard merging, KCIDB from JUnit files
  fuzz                 generate step sequences, check them, save findings as YAML cases
  selfcheck            fuzz deliberately broken models: does the harness catch each bug?

Options: --help, --version. 'xconf <command> --help' for a command's options.
Exit codes: 0 no failures (skips and known divergences allowed), 1 a case failed
(or disagreed with the --diff-against reference, or an expectations entry is
stale), 2 usage or suite error, 3 driver/environment error, 4 everything skipped,
130 / 143 stopped by SIGINT / SIGTERM (reports marked partial).`,
  run: `Usage: xconf run [PATHS...] [options]

  --target=NAME     ${TARGET_LIST} (default: model, the reference model)
  --filter=PATTERN  run only matching cases: plain text selects ids/variant names
                    containing it ('xen-version'); with a wildcard it must match the
                    whole id or variant name: * any text (across /), ? one character,
                    {a,b} alternatives, \\ makes the next character plain
                    (e.g. '*xen-version*', 'hypercall/xen-version-version[mode=32]').
                    Matching nothing exits 2
  --shard=K/N       run the K-th of N deterministic shards
  --rerun-failed    run only the cases the previous report (--junit) records as failed
  --junit=PATH      JUnit XML output (default: reports/junit.xml)
  --ktap=PATH       also write KTAP version 1 output
  --json=PATH       also write the results as JSON
  --expect=FILE     known divergences of the target (expectations/*.yaml; repeatable);
                    'auto' picks expectations/<target>.yaml and <target>-<version>.yaml
  --timeout=SECONDS per-case time limit (default 30; a case's own timeout wins)
  --seed=N          run the cases in an order shuffled with seed N (reports keep plan order)
  -j, --jobs=N      run model targets in N worker processes
  --bail            stop at the first failure (reports are marked partial)
  --isolate         run every case in its own child process (default for --target=kvm)
  --in-process      run kvm cases in this process (faster; a crash ends the run)
  --diff-against=NAME
                    also run every case that ran on the target on reference target NAME
                    (${TARGET_LIST}; same variant) and compare status, ret, fault and
                    expected OUT values; disagreements are listed and exit 1. A model
                    reference of a live (or --isolate) run runs beside it, in a worker
                    process
  --diff-report=PATH the differential's own JUnit file (default: the --junit path
                    with .differential.xml)
  --save-results=PATH write a model target's run whole (every step), for --reference-results
  --reference-results=PATH
                    with --diff-against=MODEL: compare with results saved by
                    'xconf run --target=MODEL --save-results=PATH' instead of running
                    MODEL here; refused unless made by this build from these case files
  --kcidb=PATH      also write KCIDB I/O JSON (v5.3); with --origin=NAME --build-id=ID
  -v, --verbose     print every case, not only failures`,
  validate: `Usage: xconf validate PATHS...

Checks every case file and prints one line per problem as file:line:col: CODE path: message.
Exit 0 when all files are valid, 2 otherwise.`,
  list: `Usage: xconf list [PATHS...] [--target=NAME] [--ops] [--capabilities] [--constants [PREFIX]]

Lists case ids with their requirements and whether the target can run them.
--ops lists the op vocabulary with each op's arguments and their types;
--capabilities the capability vocabulary; --constants every named constant
(or those starting with PREFIX, e.g. RUNSTATE_) with its value.`,
};
