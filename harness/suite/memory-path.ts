// Symbolic memory paths used in expectations:
//   shared_info.evtchn_pending[5]        vcpu_info[1].evtchn_upcall_pending
//   dom2.shared_info.wc_version          hypercall_page.stub[$nr]
//   u32@0x1000   u64@($base + 8)         bytes@0x2000:16
// The area/field part is resolved against the registered areas and the
// domain's latched width when the step runs.

import { parseExpr, type Expr } from './expr.js';
import { areaDefs } from '../model/areas.js';
import type { FieldDef } from '../model/memory-layout.js';

export type MemoryPath =
  | { kind: 'field'; dom?: number; area: string; areaIndex?: Expr; field: string; fieldIndex?: Expr; text: string }
  | { kind: 'raw'; dom?: number; size: 1 | 2 | 4 | 8; addr: Expr; text: string }
  | { kind: 'bytes'; dom?: number; addr: Expr; len: number; text: string };

export class PathError extends Error {
  override name = 'PathError';
}

const RAW = /^(?:dom(\d+)\.)?(u8|u16|u32|u64)@(.+)$/;
const BYTES = /^(?:dom(\d+)\.)?bytes@(.+):(\d+)$/;
const FIELD = /^(?:dom(\d+)\.)?([a-z_][a-z0-9_]*)(?:\[([^\]]+)\])?\.([a-z_][a-z0-9_.]*?)(?:\[([^\]]+)\])?$/i;

/** The field definition for a path in either width (fields exist in both or only one). */
export function pathField(p: MemoryPath & { kind: 'field' }): FieldDef | undefined {
  const def = areaDefs.get(p.area);
  return def?.layout(64).fields[p.field] ?? def?.layout(32).fields[p.field];
}

export function parsePath(text: string): MemoryPath {
  const s = text.trim();
  let m = RAW.exec(s);
  if (m) {
    const size = ({ u8: 1, u16: 2, u32: 4, u64: 8 } as const)[m[2] as 'u8'];
    return { kind: 'raw', dom: m[1] ? Number(m[1]) : undefined, size, addr: parseExpr(m[3]), text: s };
  }
  m = BYTES.exec(s);
  if (m) {
    const len = Number(m[3]);
    if (len < 1 || len > 4096) throw new PathError('bytes@ length must be 1..4096');
    return { kind: 'bytes', dom: m[1] ? Number(m[1]) : undefined, addr: parseExpr(m[2]), len, text: s };
  }
  m = FIELD.exec(s);
  if (!m) throw new PathError(`'${s}' is not a memory path (area[.index].field[index], u32@ADDR or bytes@ADDR:LEN)`);
  const [, dom, area, aIdx, field, fIdx] = m;
  const def = areaDefs.get(area);
  if (!def) throw new PathError(`unknown area '${area}' (known: ${[...areaDefs.keys()].sort().join(', ')})`);
  if (def.indexed && aIdx === undefined) throw new PathError(`area '${area}' needs an index, e.g. ${area}[0]`);
  if (!def.indexed && aIdx !== undefined) throw new PathError(`area '${area}' takes no index`);
  const p: MemoryPath = {
    kind: 'field', dom: dom ? Number(dom) : undefined, area,
    areaIndex: aIdx !== undefined ? parseExpr(aIdx) : undefined, field,
    fieldIndex: fIdx !== undefined ? parseExpr(fIdx) : undefined, text: s,
  };
  const f = pathField(p);
  if (!f) {
    const names = new Set([...Object.keys(def.layout(64).fields), ...Object.keys(def.layout(32).fields)]);
    throw new PathError(`area '${area}' has no field '${field}' (fields: ${[...names].sort().join(', ')})`);
  }
  const isArray = (f.count ?? 1) > 1;
  if (isArray && fIdx === undefined) throw new PathError(`field '${field}' is an array: give an index, e.g. ${field}[0]`);
  if (!isArray && fIdx !== undefined) throw new PathError(`field '${field}' takes no index`);
  return p;
}

/** Whether the path yields bytes (compared as hex) rather than an integer. */
export function pathIsBytes(p: MemoryPath): boolean {
  if (p.kind === 'bytes') return true;
  if (p.kind === 'raw') return false;
  return pathField(p)?.type === 'bytes';
}

/** Parse "b8 01 00 00 00 0f 01 c1 c3 cc*23" into bytes. */
export function parseHexPattern(s: string): Uint8Array {
  const out: number[] = [];
  for (const tok of s.trim().split(/\s+/)) {
    const m = /^([0-9a-fA-F]{2})(?:\*(\d+))?$/.exec(tok);
    if (!m) throw new PathError(`'${tok}' is not a hex byte (write "0f", or "cc*23" for 23 copies)`);
    const n = m[2] ? Number(m[2]) : 1;
    if (n < 1 || n > 4096) throw new PathError(`repeat count ${n} outside 1..4096`);
    for (let i = 0; i < n; i++) out.push(parseInt(m[1], 16));
  }
  return Uint8Array.from(out);
}
