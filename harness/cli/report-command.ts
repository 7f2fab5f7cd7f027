// `xconf report`: reads JUnit files (model, kvm on several kernels, qemu, xen,
// shards, the live environment's merged report) and writes the conformance
// matrix (HTML page and Markdown), a merged JUnit file (--merge -o), and/or
// KCIDB JSON (--kcidb). KCIDB files (.json) can be merged too.
import { readFileSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { EXIT, UsageError, type ExitCode } from '../errors.js';
import { readJunit, type ReadReport } from '../report/junit-read.js';
import { kcidbFromReports, kcidbJson, mergeKcidb, checkKcidbOptions } from '../report/kcidb.js';
import { mergedJunitXml } from '../report/merge.js';
import { buildMatrix, columnTitle } from '../report/matrix/model.js';
import { matrixHtml } from '../report/matrix/html.js';
import { matrixMd } from '../report/matrix/md.js';
import { writeAtomic } from '../report/atomic-write.js';
import { parse } from './args.js';

export const REPORT_HELP = `Usage: xconf report FILES... [options]

Reads JUnit files (any mix of targets, kernels and shards) and writes:
  --html=PATH       the conformance matrix as one static page (cases down by suite,
                    targets and kernels across; default reports/matrix.html)
  --md=PATH         the matrix as Markdown (default reports/matrix.md)
  --title=TEXT      the matrix's title
  --merge -o PATH   the files merged into one JUnit file, as one unsharded run
                    would have written it (FILES are shards of one run); with
                    KCIDB files (.json) as FILES, one merged KCIDB file
  --kcidb=PATH      the cases as KCIDB I/O JSON (schema v5.3); needs
  --origin=NAME     the CI system's KCIDB origin (lower-case letters, digits, _)
  --build-id=ID     the tested build's KCIDB id
  --artifacts-url=URL where the report files are published (output_files URLs;
                    file: URLs of the local files otherwise)
Without --html, --md, --merge or --kcidb, writes the matrix to both defaults.
Exit codes: 0 written, 2 bad usage or an unreadable or malformed input file.`;

function readKcidb(file: string): { file: string; doc: unknown } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} (give an existing KCIDB file)`);
  }
  try {
    return { file, doc: JSON.parse(text) };
  } catch (e) {
    const pos = /position (\d+)/.exec((e as Error).message);
    const line = pos ? text.slice(0, Number(pos[1])).split('\n').length : 1;
    throw new UsageError(`${file}:${line}: not valid JSON: ${(e as Error).message.split('\n')[0]} (is it a complete KCIDB file?)`);
  }
}

export async function runReport(argv: string[]): Promise<ExitCode> {
  const { values: v, positionals: files } = parse(argv, {
    html: { type: 'string' }, md: { type: 'string' }, title: { type: 'string' }, merge: { type: 'boolean' },
    out: { type: 'string', short: 'o' }, kcidb: { type: 'string' }, origin: { type: 'string' },
    'build-id': { type: 'string' }, 'artifacts-url': { type: 'string' },
  });
  if (v.help) { process.stdout.write(REPORT_HELP + '\n'); return EXIT.ok; }
  if (!files.length) throw new UsageError('report needs at least one JUnit file (see --help)');
  if (v.merge && !v.out) throw new UsageError('--merge needs -o PATH (the merged file)');
  if (v.out && !v.merge) throw new UsageError('-o/--out is the output of --merge');
  const kcidbOpts = v.kcidb ? { ...checkKcidbOptions({ origin: v.origin as string, buildId: v['build-id'] as string }), artifactsUrl: v['artifacts-url'] as string | undefined } : undefined;
  if (!v.kcidb && (v.origin || v['build-id'])) throw new UsageError('--origin and --build-id go with --kcidb=PATH');

  const json = files.filter((f) => f.endsWith('.json'));
  if (json.length) {
    if (json.length !== files.length || !v.merge || v.html || v.md || v.kcidb) {
      throw new UsageError(`${json[0]}: KCIDB files (.json) can only be merged, all together: xconf report --merge -o all.json A.json B.json`);
    }
    const merged = mergeKcidb(files.map(readKcidb));
    writeAtomic(String(v.out), kcidbJson(merged));
    process.stdout.write(`xconf report: ${merged.tests.length} KCIDB tests from ${files.length} files -> ${v.out}\n`);
    return EXIT.ok;
  }

  const reports: ReadReport[] = files.map(readJunit);
  const written: string[] = [];
  if (v.merge) {
    writeAtomic(String(v.out), mergedJunitXml(reports));
    written.push(String(v.out));
  }
  if (kcidbOpts) {
    const doc = kcidbFromReports(reports, kcidbOpts);
    writeAtomic(String(v.kcidb), kcidbJson(doc));
    written.push(`${v.kcidb} (${doc.tests.length} tests)`);
  }
  const matrixWanted = v.html || v.md || (!v.merge && !v.kcidb);
  if (matrixWanted) {
    const m = buildMatrix(reports);
    const html = (v.html as string | undefined) ?? (v.md ? undefined : 'reports/matrix.html');
    const md = (v.md as string | undefined) ?? (v.html ? undefined : 'reports/matrix.md');
    const title = v.title as string | undefined;
    if (html) { writeAtomic(html, matrixHtml(m, { title })); written.push(html); }
    if (md) { writeAtomic(md, matrixMd(m, { title, htmlHref: html ? relative(dirname(md), html) || html : undefined })); written.push(md); }
    for (const c of m.columns) {
      const k = c.counts;
      process.stdout.write(`${columnTitle(c).padEnd(28)} ${k.pass} passed, ${k.fail} failed, ${k.error} errors, ${k.skip} skipped, ${k.xfail} known divergences${c.coverage ? `, kernel coverage ${c.coverage}` : ''}\n`);
    }
  }
  process.stdout.write(`xconf report: wrote ${written.join(', ')}\n`);
  return EXIT.ok;
}
