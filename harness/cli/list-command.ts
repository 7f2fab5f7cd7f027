// `xconf validate` and `xconf list`.
import { EXIT, SuiteError, UsageError, type ExitCode } from '../errors.js';
import { createDriver } from '../drivers/index.js';
import { loadPaths } from '../suite/loader.js';
import { planOrThrow } from '../runner/plan.js';
import { requirements, resolveSetup } from '../runner/run-case.js';
import { listConstants, listOps } from '../suite/listing.js';
import { CAPABILITIES } from '../suite/vocabulary.js';
import { parse } from './args.js';
import { HELP } from './help.js';

export function cmdValidate(argv: string[]): ExitCode {
  const { values: v, positionals } = parse(argv, {});
  if (v.help) { process.stdout.write(HELP.validate + '\n'); return EXIT.ok; }
  if (!positionals.length) throw new UsageError('validate needs at least one path (see --help)');
  const r = loadPaths(positionals);
  if (r.problems.length) throw new SuiteError(r.problems);
  planOrThrow(r.cases, { paths: positionals });
  process.stdout.write(`${r.cases.length} cases valid\n`);
  return EXIT.ok;
}

export async function cmdList(argv: string[]): Promise<ExitCode> {
  const { values: v, positionals } = parse(argv, {
    target: { type: 'string', default: 'model' }, ops: { type: 'boolean' }, capabilities: { type: 'boolean' }, constants: { type: 'boolean' },
  });
  if (v.help) { process.stdout.write(HELP.list + '\n'); return EXIT.ok; }
  if (v.ops) { process.stdout.write(listOps()); return EXIT.ok; }
  if (v.constants) { process.stdout.write(listConstants(positionals[0])); return EXIT.ok; }
  if (v.capabilities) {
    for (const [k, d] of Object.entries(CAPABILITIES).sort()) process.stdout.write(`${k.padEnd(22)} ${d}\n`);
    return EXIT.ok;
  }
  const paths = positionals.length ? positionals : ['suites'];
  const loaded = loadPaths(paths);
  if (loaded.problems.length) throw new SuiteError(loaded.problems);
  const caps = await (await createDriver(String(v.target))).probe();
  for (const pc of planOrThrow(loaded.cases, { paths })) {
    let line: string;
    try {
      const vars = new Map(pc.variant.bindings);
      const req = requirements(pc.case, resolveSetup(pc.case, vars));
      const missing = req.filter((r) => !caps.has.has(r));
      line = `${pc.name}  requires: ${req.join(' ')}  ${missing.length ? `skip (missing ${missing.join(' ')})` : 'runnable'}`;
    } catch (e) {
      line = `${pc.name}  (setup depends on run-time values: ${(e as Error).message})`;
    }
    process.stdout.write(line + '\n');
  }
  return EXIT.ok;
}
