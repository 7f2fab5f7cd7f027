// Text for `xconf list --ops` and `xconf list --constants`: the op vocabulary
// with every argument, its type and the constants that name its values, and
// every constant with its value, by family.

import type { z } from 'zod';
import { ops } from '../ops/index.js';
import { INT_SCHEMAS, type OpDef } from '../ops/types.js';
import { argConstants, argType } from '../ops/arg-types.js';
import { constantFamily, constants } from '../ops/constants.js';

interface Def {
  type: string;
  innerType?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  options?: z.ZodType[];
  values?: unknown[];
  entries?: Record<string, unknown>;
  element?: z.ZodType;
}
const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

export interface ArgInfo {
  name: string;
  optional: boolean;
  type: string;
  /** Constant family (RUNSTATE_) naming its usual values. */
  constants?: string;
}

/** Ops whose `value` is stored in `size` bytes (checked against that width). */
const SIZED = new Set(['memory.write', 'kvm.guest_write']);

const show = (v: unknown) => (typeof v === 'bigint' ? v.toString() : JSON.stringify(v));

/** A readable type for a schema (an int's width comes from arg-types.ts). */
function typeOf(op: string, key: string, s: z.ZodType): string {
  if (INT_SCHEMAS.has(s)) return key === 'value' && SIZED.has(op) ? 'as wide as size' : argType(op, key).name;
  const d = defOf(s);
  switch (d.type) {
    case 'optional': return typeOf(op, key, d.innerType!);
    case 'literal': return (d.values ?? []).map(show).join(' | ');
    case 'union': return (d.options ?? []).map((o) => typeOf(op, key, o)).join(' | ');
    case 'enum': return Object.values(d.entries ?? {}).map(show).join(' | ');
    case 'array': return `list of ${typeOf(op, key, d.element!)}`;
    case 'object': return `{ ${argsOf(op, s).map(formatArg).join(', ')} }`;
    default: return d.type;
  }
}

/** The arguments of an op (or of an object schema inside one), in declaration order. */
export function argsOf(op: OpDef | string, schema?: z.ZodType): ArgInfo[] {
  const name = typeof op === 'string' ? op : op.name;
  let s = schema ?? (op as OpDef).args;
  while (defOf(s).type === 'optional') s = defOf(s).innerType!;
  const shape = defOf(s).shape;
  if (!shape) return [];
  return Object.entries(shape).map(([key, v]) => ({
    name: key,
    optional: defOf(v).type === 'optional',
    type: typeOf(name, key, v),
    constants: INT_SCHEMAS.has(defOf(v).type === 'optional' ? defOf(v).innerType! : v) ? argConstants(name, key) : undefined,
  }));
}

function formatArg(a: ArgInfo): string {
  return `${a.name}${a.optional ? '?' : ''}: ${a.type}${a.constants ? ` (${a.constants}*)` : ''}`;
}

/** `xconf list --ops`: one block per op. */
export function listOps(): string {
  const out: string[] = [];
  for (const op of [...ops.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    out.push(`${op.name}`, `    ${op.summary}`);
    const args = argsOf(op);
    out.push(`    args: ${args.length ? args.map(formatArg).join(', ') : '(none)'}`);
    if (op.out?.length) out.push(`    out: ${op.out.join(', ')}`);
    if (op.requires.length) out.push(`    requires: ${op.requires.join(' ')}`);
  }
  out.push('', 'Integer types: u8/u16/u32/u64 are unsigned; int64 is a 64-bit register value (negative = two\'s complement).',
    '(PREFIX_*): the constants that name the usual values; see `xconf list --constants`.');
  return out.join('\n') + '\n';
}

const hex = (v: bigint) => (v < 0n ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`);

/** `xconf list --constants [PREFIX]`: every constant, by family, with its value. */
export function listConstants(prefix = ''): string {
  const families = new Map<string, string[]>();
  for (const name of [...constants.keys()].sort()) {
    if (!name.startsWith(prefix)) continue;
    const fam = constantFamily.get(name) || '(other)';
    families.set(fam, [...(families.get(fam) ?? []), name]);
  }
  const out: string[] = [];
  for (const [fam, names] of [...families].sort(([a], [b]) => a.localeCompare(b))) {
    out.push(fam === '(other)' ? 'other constants' : `${fam}*`);
    for (const n of names.sort((a, b) => Number(constants.get(a)! - constants.get(b)!) || a.localeCompare(b))) {
      const v = constants.get(n)!;
      out.push(`  ${n.padEnd(40)} ${v}${v > 9n || v < -9n ? ` (${hex(v)})` : ''}`);
    }
  }
  return out.join('\n') + '\n';
}
