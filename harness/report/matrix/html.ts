// The conformance matrix as one static HTML page: no framework, no script, no
// outside resource, so it works offline from a file. A summary table (one row
// per target and kernel, with the kernel coverage figure where a live run
// recorded one), then the matrix (cases down by suite, runs across, one colour
// per status), then the text of every non-passing cell, which its cell links to.
import { STATUSES, STATUS_LABEL, columnTitle, type Matrix } from './model.js';

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const CSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
thead th{position:sticky;top:0;background:#f4f4f4}
td.cell{text-align:center;min-width:7em}
td.cell a{color:inherit;text-decoration:none;display:block}
.s-pass{background:#c8ecc8}.s-fail{background:#f4a6a6}.s-error{background:#e07070;color:#fff}
.s-xfail{background:#f8d98a}.s-skip{background:#dedede;color:#555}.s-none{background:#fff;color:#aaa}
tr.suite th{background:#e8eef8;text-align:left}
td.num{text-align:right}
.legend span{display:inline-block;padding:1px 8px;margin-right:.5em;border:1px solid #ccc}
pre{white-space:pre-wrap;background:#f8f8f8;border:1px solid #ddd;padding:.5em;margin:.2em 0 1em}
dt{font-weight:bold;margin-top:.8em}dt:target{background:#ffff99}
`;

export function matrixHtml(m: Matrix, opts: { title?: string } = {}): string {
  const title = opts.title ?? 'xconf conformance matrix';
  const out: string[] = [];
  out.push('<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">', `<title>${esc(title)}</title>`, `<style>${CSS}</style></head><body>`);
  out.push(`<h1>${esc(title)}</h1>`);
  out.push(`<p class="legend">${STATUSES.map((s) => `<span class="s-${s}">${esc(STATUS_LABEL[s])}</span>`).join('')}</p>`);
  out.push(`<p>From ${m.files.map((f) => `<code>${esc(f)}</code>`).join(', ')}.</p>`);

  out.push('<h2>Summary</h2>', '<table id="summary"><thead><tr><th>target</th><th>kernel</th>');
  for (const s of STATUSES) out.push(`<th class="s-${s}">${esc(STATUS_LABEL[s])}</th>`);
  out.push('<th>total</th><th>kernel coverage</th></tr></thead><tbody>');
  for (const c of m.columns) {
    const data = STATUSES.map((s) => ` data-${s}="${c.counts[s]}"`).join('');
    out.push(`<tr class="summary" data-column="${esc(c.key)}"${data} data-total="${c.counts.total}"><th>${esc(c.target)}</th><td>${esc(c.kernel ?? '')}</td>`);
    for (const s of STATUSES) out.push(`<td class="num">${c.counts[s]}</td>`);
    out.push(`<td class="num">${c.counts.total}</td><td>${esc(c.coverage ?? '')}</td></tr>`);
  }
  out.push('</tbody></table>');

  const rows = m.suites.reduce((n, s) => n + s.rows.length, 0);
  out.push(`<h2>Cases (${rows})</h2>`, '<table id="matrix"><thead><tr><th>case</th>');
  for (const c of m.columns) out.push(`<th data-column="${esc(c.key)}">${esc(columnTitle(c))}</th>`);
  out.push('</tr></thead><tbody>');
  for (const s of m.suites) {
    out.push(`<tr class="suite"><th colspan="${m.columns.length + 1}">${esc(s.name)} (${s.rows.length})</th></tr>`);
    for (const r of s.rows) {
      out.push(`<tr><td>${esc(r.name)}</td>`);
      for (const c of m.columns) {
        const cell = r.cells.get(c.key);
        if (!cell) { out.push('<td class="cell s-none">-</td>'); continue; }
        const label = esc(STATUS_LABEL[cell.status]);
        const tip = cell.message ? ` title="${esc(cell.message)}"` : '';
        out.push(cell.anchor
          ? `<td class="cell s-${cell.status}" data-column="${esc(c.key)}"${tip}><a href="#${cell.anchor}">${label}</a></td>`
          : `<td class="cell s-${cell.status}" data-column="${esc(c.key)}">${label}</td>`);
      }
      out.push('</tr>');
    }
  }
  out.push('</tbody></table>');

  out.push('<h2>Failures, known divergences and skips</h2>', '<dl>');
  for (const s of m.suites) {
    for (const r of s.rows) {
      for (const c of m.columns) {
        const cell = r.cells.get(c.key);
        if (!cell?.anchor) continue;
        out.push(`<dt id="${cell.anchor}" class="s-${cell.status}">${esc(r.name)} on ${esc(columnTitle(c))}: ${esc(STATUS_LABEL[cell.status])}</dt>`);
        out.push(`<dd>${esc(cell.message ?? '')}${cell.detail && cell.detail !== cell.message ? `<pre>${esc(cell.detail)}</pre>` : ''}<small>${esc(cell.file)}</small></dd>`);
      }
    }
  }
  out.push('</dl>', '</body></html>');
  return out.join('\n') + '\n';
}
