// The conformance matrix as Markdown (a CI job summary, a merge-request
// comment): the summary table per target and kernel, then one table per suite.
// Non-passing cells link to their text on the HTML page when `htmlHref` is given.
import { STATUSES, STATUS_LABEL, columnTitle, type Matrix } from './model.js';
import type { MatrixStatus } from '../junit-read.js';

const MARK: Record<MatrixStatus, string> = { pass: '✅ pass', fail: '❌ fail', error: '💥 error', xfail: '🟡 known divergence', skip: '⚪ skip' };
const cellText = (s: string) => s.replace(/\|/g, '\\|').replace(/[\r\n]+/g, ' ');

export function matrixMd(m: Matrix, opts: { title?: string; htmlHref?: string } = {}): string {
  const out: string[] = [`# ${opts.title ?? 'xconf conformance matrix'}`, ''];
  out.push(`| target | kernel | ${STATUSES.map((s) => STATUS_LABEL[s]).join(' | ')} | total | kernel coverage |`);
  out.push(`|---|---|${STATUSES.map(() => '---:').join('|')}|---:|---|`);
  for (const c of m.columns) {
    out.push(`| ${cellText(c.target)} | ${cellText(c.kernel ?? '')} | ${STATUSES.map((s) => c.counts[s]).join(' | ')} | ${c.counts.total} | ${cellText(c.coverage ?? '')} |`);
  }
  for (const s of m.suites) {
    out.push('', `## ${s.name} (${s.rows.length})`, '');
    out.push(`| case | ${m.columns.map((c) => cellText(columnTitle(c))).join(' | ')} |`);
    out.push(`|---|${m.columns.map(() => '---').join('|')}|`);
    for (const r of s.rows) {
      const cells = m.columns.map((c) => {
        const cell = r.cells.get(c.key);
        if (!cell) return '-';
        const mark = MARK[cell.status];
        return cell.anchor && opts.htmlHref ? `[${mark}](${opts.htmlHref}#${cell.anchor})` : mark;
      });
      out.push(`| ${cellText(r.name)} | ${cells.join(' | ')} |`);
    }
  }
  return out.join('\n') + '\n';
}
