// Reading JUnit files back: xconf's own reports (model, kvm, shards), the live
// environment's merged report (suites prefixed "<label>/", a kernel property on
// every top-level suite), and other producers' files. Tolerant by design: a
// case's status comes from its child elements, never from counts or
// properties; <testsuites> or <testsuite> roots, nested suites, missing
// attributes are all accepted. A file that is not well-formed XML, or has no
// test suites at all, is refused with one line naming the file and line.
import { readFileSync } from 'node:fs';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { UsageError } from '../errors.js';

export type MatrixStatus = 'pass' | 'fail' | 'error' | 'skip' | 'xfail';

export interface ReadCase {
  /** The suite's name as written, e.g. "kvm/evtchn" or "linux-6.1/kvm/evtchn". */
  suite: string;
  /** Last part of the suite name: the subsystem (or "live-kvm", "xconf.run"). */
  subsystem: string;
  target: string;
  /** Kernel the case ran on, when the file says (property `kernel`). */
  kernel?: string;
  /** Prefix a merge put before the suite name (live runs: "linux-6.1"), '' when none. */
  label: string;
  classname: string;
  /** Full test name, e.g. "evtchn/bind-ipi[mode=32]". */
  name: string;
  /** The name without its [variant]. */
  id: string;
  variant: string;
  file?: string;
  line?: number;
  /** Seconds. */
  time: number;
  status: MatrixStatus;
  /** One line: the failure/error/skip message. */
  message?: string;
  /** failure/error element text. */
  detail?: string;
  /** <system-out> text. */
  output?: string;
  /** Known divergence, parsed from `known divergence: REASON (WHERE)`. */
  divergence?: { reason: string; where: string };
  servedBy: string[];
  /** Run-wide properties of the case's suite group (target, seed, capabilities, kernel...). */
  properties: Record<string, string>;
  timestamp?: string;
}

export interface ReadSuite {
  name: string;
  properties: Record<string, string>;
  timestamp?: string;
  time: number;
  cases: ReadCase[];
}

export interface ReadReport {
  file: string;
  name?: string;
  suites: ReadSuite[];
}

const ARRAYS = new Set(['testsuite', 'testcase', 'property', 'failure', 'error', 'skipped', 'system-out', 'system-err']);
const parser = new XMLParser({
  ignoreAttributes: false, attributeNamePrefix: '@_', textNodeName: '#text', parseTagValue: false,
  parseAttributeValue: false, trimValues: false, processEntities: true, htmlEntities: false,
  isArray: (name) => ARRAYS.has(name),
});

type Node = Record<string, unknown>;
const arr = (x: unknown): Node[] => (Array.isArray(x) ? (x as Node[]) : x === undefined || x === null ? [] : [x as Node]);
const attr = (n: Node, k: string): string | undefined => (typeof n[`@_${k}`] === 'string' ? (n[`@_${k}`] as string) : undefined);
const text = (n: unknown): string => (typeof n === 'string' ? n : n && typeof n === 'object' && typeof (n as Node)['#text'] === 'string' ? ((n as Node)['#text'] as string) : '');

export const DIFF_SUITE = 'xconf.differential';

/** `known divergence: REASON (WHERE)` as xconf writes it for an xfail. */
export function parseDivergence(message: string | undefined): { reason: string; where: string } | undefined {
  const m = /^known divergence: ([\s\S]*) \(([^()]*)\)$/.exec(message ?? '');
  return m ? { reason: m[1], where: m[2] } : undefined;
}

function caseStatus(tc: Node): { status: MatrixStatus; message?: string; detail?: string } {
  // An empty element (<failure/>) parses as '': presence is what counts.
  const first = (k: string): Node | undefined => {
    const a = arr(tc[k]);
    return a.length ? (typeof a[0] === 'object' && a[0] !== null ? a[0] : {}) : undefined;
  };
  const failure = first('failure');
  if (failure) return { status: 'fail', message: attr(failure, 'message') ?? 'failed', detail: text(arr(tc.failure)[0]) || undefined };
  const error = first('error');
  if (error) return { status: 'error', message: attr(error, 'message') ?? 'error', detail: text(arr(tc.error)[0]) || undefined };
  const skipped = first('skipped');
  if (skipped) {
    const message = attr(skipped, 'message') ?? (text(arr(tc.skipped)[0]) || undefined);
    const xfail = attr(skipped, 'type') === 'pytest.xfail' || /^known divergence: /.test(message ?? '');
    return { status: xfail ? 'xfail' : 'skip', message: message ?? 'skipped' };
  }
  return { status: 'pass' };
}

/** Flattens nested <testsuite> elements into a list, keeping document order. */
function collectSuites(nodes: Node[], out: Node[]): void {
  for (const s of nodes) {
    out.push(s);
    collectSuites(arr(s.testsuite), out);
  }
}

/**
 * Why `xml` is not well-formed, as `file:line: ...`, or undefined when it is. Checked
 * before parsing: the parser alone quotes the bytes it stopped at, binary junk included.
 */
export function xmlProblem(xml: string, file: string): string | undefined {
  const v = XMLValidator.validate(xml);
  return v === true ? undefined : `${file}:${v.err.line}: not well-formed XML: ${v.err.msg} (is it a complete JUnit file?)`;
}

/** Parses JUnit XML text; `file` names it in errors. */
export function parseJunit(xml: string, file: string): ReadReport {
  const bad = xmlProblem(xml, file);
  if (bad) throw new UsageError(bad);
  const doc = parser.parse(xml) as Node;
  const root = (doc.testsuites as Node | undefined) ?? undefined;
  const top = root && typeof root === 'object' ? arr(root.testsuite) : arr(doc.testsuite);
  if (!root && !doc.testsuite) throw new UsageError(`${file}:1: no <testsuites> or <testsuite> root element: not a JUnit file`);
  const nodes: Node[] = [];
  collectSuites(top, nodes);
  // Run-wide facts (target, kernel) are on some suites only: share them within a label group.
  const groupProps = new Map<string, Record<string, string>>();
  const named = nodes.map((s) => ({ s, name: attr(s, 'name') ?? 'unnamed' }));
  // "<label>/<target>/<subsystem>" (a merged live report) names its labels; a
  // two-part name under such a label ("linux-6.1/live-kvm") belongs to it.
  const labels = new Set(named.map((n) => n.name.split('/')).filter((p) => p.length >= 3).map((p) => p.slice(0, -2).join('/')));
  const raw = named.map(({ s, name }) => {
    const props: Record<string, string> = {};
    for (const p of arr((s.properties as Node | undefined)?.property)) {
      const k = attr(p, 'name');
      if (k !== undefined && !(k in props)) props[k] = attr(p, 'value') ?? text(p);
    }
    const parts = name.split('/');
    let label = '';
    let targetFromName: string | undefined;
    if (parts.length >= 3) { label = parts.slice(0, -2).join('/'); targetFromName = parts[parts.length - 2]; }
    else if (parts.length === 2 && !props.target && labels.has(parts[0])) label = parts[0];
    else if (parts.length === 2) targetFromName = parts[0];
    return { s, name, props, parts, targetFromName, label };
  });
  for (const r of raw) {
    const g = groupProps.get(r.label) ?? {};
    for (const [k, val] of Object.entries(r.props)) if (!(k in g)) g[k] = val;
    groupProps.set(r.label, g);
  }
  const suites: ReadSuite[] = raw.map(({ s, name: suiteName, props, parts, targetFromName, label }) => {
    const g = { ...groupProps.get(label), ...props };
    const subsystem = parts[parts.length - 1];
    const target = props.target ?? targetFromName ?? g.target ?? 'unknown';
    const timestamp = attr(s, 'timestamp');
    const cases = arr(s.testcase).map((tc): ReadCase => {
      const name = attr(tc, 'name') ?? 'unnamed';
      const m = /^(.*?)\[(.*)\]$/.exec(name);
      const output = arr(tc['system-out']).map(text).join('\n') || undefined;
      const served = /^served_by: (.*)$/m.exec(output ?? '');
      const st = caseStatus(tc);
      const line = Number(attr(tc, 'line'));
      return {
        suite: suiteName, subsystem, target, kernel: g.kernel || undefined, label,
        classname: attr(tc, 'classname') ?? '', name, id: m ? m[1] : name, variant: m ? m[2] : '',
        file: attr(tc, 'file'), line: Number.isInteger(line) && line > 0 ? line : undefined,
        time: Number(attr(tc, 'time')) || 0, ...st, output,
        divergence: st.status === 'xfail' ? parseDivergence(st.message) : undefined,
        servedBy: served ? served[1].trim().split(/\s+/) : [], properties: g, timestamp,
      };
    });
    return { name: suiteName, properties: props, timestamp, time: Number(attr(s, 'time')) || 0, cases };
  });
  if (!suites.length) throw new UsageError(`${file}:1: no <testsuite> element: nothing to report`);
  return { file, name: root ? attr(root, 'name') : undefined, suites };
}

export function readJunit(file: string): ReadReport {
  let xml: string;
  try {
    xml = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} (give an existing JUnit file)`);
  }
  return parseJunit(xml, file);
}

/** Every case of a report, differential suites left out (they count cases twice). */
export function reportCases(r: ReadReport): ReadCase[] {
  return r.suites.filter((s) => !s.name.endsWith(DIFF_SUITE)).flatMap((s) => s.cases);
}
