// The conformance matrix: cases down (grouped by suite), runs across (one
// column per target and kernel), a status per cell. Built from JUnit files read
// back (junit-read.ts); several files for the same column (shards) fill one
// column. Rendered by html.ts and md.ts.
import type { MatrixStatus, ReadCase, ReadReport } from '../junit-read.js';
import { reportCases } from '../junit-read.js';

export const STATUSES: MatrixStatus[] = ['pass', 'fail', 'error', 'xfail', 'skip'];
export const STATUS_LABEL: Record<MatrixStatus, string> = {
  pass: 'pass', fail: 'fail', error: 'error', xfail: 'known divergence', skip: 'skip',
};

export interface Column {
  key: string;
  target: string;
  kernel?: string;
  /** Kernel coverage figure a live run recorded (property `kernel_coverage`), when any. */
  coverage?: string;
  files: string[];
  counts: Record<MatrixStatus, number> & { total: number };
}

export interface Cell {
  status: MatrixStatus;
  message?: string;
  detail?: string;
  /** Stable anchor of the cell's text (failures, errors, skips, known divergences). */
  anchor?: string;
  file: string;
}

export interface Row {
  suite: string;
  name: string;
  cells: Map<string, Cell>;
}

export interface Matrix {
  columns: Column[];
  /** Suites in order, each with its rows in name order. */
  suites: Array<{ name: string; rows: Row[] }>;
  files: string[];
}

const SEVERITY: Record<MatrixStatus, number> = { fail: 4, error: 3, xfail: 2, skip: 1, pass: 0 };
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Orders dotted version strings numerically ("6.1.2" before "6.12.0"). */
function versionCmp(a = '', b = ''): number {
  const pa = a.split(/[.-]/), pb = b.split(/[.-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '', y = pb[i] ?? '';
    const nx = Number(x), ny = Number(y);
    const d = x !== '' && y !== '' && !Number.isNaN(nx) && !Number.isNaN(ny) ? nx - ny : cmp(x, y);
    if (d) return d;
  }
  return 0;
}

const TARGET_ORDER = ['model', 'model-kvm', 'qemu', 'kvm', 'xen'];
const targetRank = (t: string) => (TARGET_ORDER.includes(t) ? TARGET_ORDER.indexOf(t) : TARGET_ORDER.length);

export function columnKey(c: Pick<ReadCase, 'target' | 'kernel'>): string {
  return c.kernel ? `${c.target} ${c.kernel}` : c.target;
}

export function buildMatrix(reports: ReadReport[]): Matrix {
  const columns = new Map<string, Column>();
  const rows = new Map<string, Row>();
  let n = 0;
  for (const r of reports) {
    for (const c of reportCases(r)) {
      // A run on real Xen names the hypervisor where a kvm run names its kernel.
      const kernel = c.kernel ?? (c.properties.xen_version ? `Xen ${c.properties.xen_version}` : undefined);
      const key = columnKey({ target: c.target, kernel });
      let col = columns.get(key);
      if (!col) {
        const counts = { pass: 0, fail: 0, error: 0, xfail: 0, skip: 0, total: 0 };
        columns.set(key, (col = { key, target: c.target, kernel, files: [], counts }));
      }
      if (!col.files.includes(r.file)) col.files.push(r.file);
      col.coverage ??= c.properties.kernel_coverage;
      const suite = c.label && c.subsystem === 'live-kvm' ? 'live-kvm' : c.subsystem;
      const rowKey = `${suite}\0${c.name}`;
      let row = rows.get(rowKey);
      if (!row) rows.set(rowKey, (row = { suite, name: c.name, cells: new Map() }));
      // The same case twice in one column (overlapping files): the worse status wins.
      const before = row.cells.get(key);
      if (before && SEVERITY[before.status] >= SEVERITY[c.status]) continue;
      if (before) col.counts[before.status]--;
      else col.counts.total++;
      col.counts[c.status]++;
      row.cells.set(key, {
        status: c.status, message: c.message, detail: c.detail, file: r.file,
        anchor: c.status === 'pass' ? undefined : `c${++n}`,
      });
    }
  }
  const cols = [...columns.values()].sort((a, b) => targetRank(a.target) - targetRank(b.target) || cmp(a.target, b.target) || versionCmp(a.kernel, b.kernel));
  const bySuite = new Map<string, Row[]>();
  for (const row of [...rows.values()].sort((a, b) => cmp(a.name, b.name))) {
    if (!bySuite.has(row.suite)) bySuite.set(row.suite, []);
    bySuite.get(row.suite)!.push(row);
  }
  const suites = [...bySuite].sort(([a], [b]) => cmp(a, b)).map(([name, rs]) => ({ name, rows: rs }));
  return { columns: cols, suites, files: reports.map((r) => r.file) };
}

export function columnTitle(c: Column): string {
  if (!c.kernel) return c.target;
  return c.kernel.startsWith('Xen ') ? `${c.target} (${c.kernel})` : `${c.target} (Linux ${c.kernel})`;
}
