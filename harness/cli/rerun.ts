// --rerun-failed: the names of the cases a previous JUnit report records as
// failed or errored (known divergences and skips are not failures).
import { readFileSync } from 'node:fs';
import { XMLParser } from 'fast-xml-parser';
import { UsageError } from '../errors.js';
import { xmlProblem } from '../report/junit-read.js';

export function failedInReport(path: string): Set<string> {
  let xml: string;
  try {
    xml = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(`--rerun-failed: no previous report at ${path} (${(e as NodeJS.ErrnoException).code}); run once without it, or pass --junit=PATH of the report to rerun`);
  }
  const arr = <T>(x: T | T[] | undefined): T[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);
  type Case = { '@_name'?: string; '@_classname'?: string; failure?: unknown; error?: unknown };
  type Suite = { testcase?: Case | Case[]; testsuite?: Suite | Suite[] };
  let doc: { testsuites?: Suite; testsuite?: Suite };
  const bad = xmlProblem(xml, path);
  if (bad) throw new UsageError(`--rerun-failed: ${bad}`);
  try {
    doc = new XMLParser({ ignoreAttributes: false }).parse(xml);
  } catch (e) {
    throw new UsageError(`--rerun-failed: ${path} is not a JUnit report (${(e as Error).message.split('\n')[0]})`);
  }
  const names = new Set<string>();
  const walk = (s: Suite) => {
    for (const c of arr(s.testcase)) {
      if ((c.failure !== undefined || c.error !== undefined) && c['@_name'] && c['@_classname'] !== 'xconf.run') names.add(c['@_name']);
    }
    for (const sub of arr(s.testsuite)) walk(sub);
  };
  if (doc.testsuites) walk(doc.testsuites);
  else if (doc.testsuite) walk(doc.testsuite);
  else throw new UsageError(`--rerun-failed: ${path} is not a JUnit report (no <testsuites> or <testsuite>)`);
  return names;
}
