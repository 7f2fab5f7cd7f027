// Command-line parsing shared by the commands: node's parseArgs, with every
// problem turned into one UsageError line.
import { parseArgs } from 'node:util';
import { UsageError } from '../errors.js';

export type OptionSpec = Record<string, { type: 'string' | 'boolean'; default?: string | boolean; multiple?: boolean; short?: string }>;
export type Values = Record<string, string | boolean | string[] | undefined>;

export function parse(argv: string[], options: OptionSpec): { values: Values; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' }, ...options }, allowPositionals: true, strict: true });
    return { values: r.values as Values, positionals: r.positionals };
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split('\n')[0]} (see --help)`);
  }
}

/** A whole number within [min, max], or a UsageError naming the option. */
export function intOption(name: string, v: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new UsageError(`--${name} takes a whole number from ${min} to ${max} (got '${v}')`);
  }
  return Number(v);
}
