// Positions for problems: a path into the YAML document becomes file:line:col,
// and zod issues become SuiteProblems with stable codes.

import type { LineCounter, Document, Node as YamlNode } from 'yaml';
import { yaml } from './yaml-lazy.js';
import type { z } from 'zod';
import type { SuiteProblem } from '../errors.js';

/** What the checks need from a locator. */
export interface Positions {
  pos(path: ReadonlyArray<PropertyKey>, key?: string): { line: number; col: number };
  problem(path: ReadonlyArray<PropertyKey>, code: string, message: string, key?: string): SuiteProblem;
}

export class Locator implements Positions {
  constructor(private readonly doc: Document, private readonly lc: LineCounter, private readonly file: string) {}

  /** Position of the node at `path` (or of the deepest existing parent); `key` points at a map key. */
  pos(path: ReadonlyArray<PropertyKey>, key?: string): { line: number; col: number } {
    const { isMap, isSeq } = yaml();
    let node: unknown = this.doc.contents;
    let offset = (node as YamlNode | null)?.range?.[0] ?? 0;
    for (const k of path) {
      if (isMap(node)) {
        const pair = node.items.find((it) => (it.key as { value?: unknown } | null)?.value === k);
        if (!pair) break;
        node = pair.value;
        const r = (pair.value as YamlNode | null)?.range ?? (pair.key as YamlNode | null)?.range;
        if (r) offset = r[0];
      } else if (isSeq(node) && typeof k === 'number' && node.items[k]) {
        node = node.items[k];
        const r = (node as YamlNode).range;
        if (r) offset = r[0];
      } else break;
    }
    if (key !== undefined && isMap(node)) {
      const pair = node.items.find((it) => (it.key as { value?: unknown } | null)?.value === key);
      const r = (pair?.key as YamlNode | null)?.range;
      if (r) offset = r[0];
    }
    return this.lc.linePos(offset);
  }

  problem(path: ReadonlyArray<PropertyKey>, code: string, message: string, key?: string): SuiteProblem {
    const { line, col } = this.pos(path, key);
    const dotted = [...path, ...(key !== undefined ? [key] : [])].map(String).join('.');
    return { file: this.file, line, col, code, path: dotted, message };
  }
}

export function zodProblems(loc: Positions, issues: z.core.$ZodIssue[], prefix: PropertyKey[] = []): SuiteProblem[] {
  const out: SuiteProblem[] = [];
  for (const is of issues) {
    const path = [...prefix, ...is.path];
    switch (is.code) {
      case 'unrecognized_keys':
        for (const k of is.keys) out.push(loc.problem(path, 'UNKNOWN_KEY', 'unknown key', k));
        break;
      case 'invalid_type':
        out.push(loc.problem(path, is.input === undefined ? 'MISSING' : 'TYPE', is.input === undefined ? `required (${is.expected})` : `expected ${is.expected === 'bigint' ? 'integer' : is.expected}`));
        break;
      case 'invalid_union': {
        // Report the most specific branch error when every branch failed on the same spot.
        const flat = is.errors.flat();
        const values = flat.flatMap((e) => (e.code === 'invalid_value' ? e.values.map(String) : []));
        if (values.length && values.length === flat.reduce((n, e) => n + (e.code === 'invalid_value' ? e.values.length : 1), 0)) {
          out.push(loc.problem(path, 'BAD_VALUE', `expected one of ${values.join(', ')}`));
        } else {
          const types = [...new Set(flat.map((e) => (e.code === 'invalid_type' ? (e.expected === 'bigint' ? 'integer' : e.expected) : e.message)))];
          out.push(loc.problem(path, 'TYPE', `expected ${types.join(' or ')}`));
        }
        break;
      }
      case 'invalid_value':
        out.push(loc.problem(path, 'BAD_VALUE', `expected one of ${is.values.map(String).join(', ')}`));
        break;
      case 'too_small':
      case 'too_big':
        out.push(loc.problem(path, 'RANGE', is.message));
        break;
      case 'invalid_format':
        out.push(loc.problem(path, 'BAD_FORMAT', is.message));
        break;
      case 'custom':
        out.push(loc.problem(path, String((is.params as { code?: string } | undefined)?.code ?? 'INVALID'), is.message));
        break;
      default:
        out.push(loc.problem(path, 'INVALID', is.message));
    }
  }
  return out;
}

