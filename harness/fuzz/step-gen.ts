// The pieces every step generator is made of (steps.ts, steps-kvm.ts): named
// constants of the case vocabulary, a step arbitrary named after its op, and
// small numbers as bigints. A module of its own: steps.ts imports steps-kvm.ts.
import fc from 'fast-check';
import { constants } from '../ops/index.js';
import type { ArgValue, FuzzStep } from './steps.js';

/** A named constant of the case vocabulary (throws at load if it is not one). */
export function k(name: string): bigint {
  const v = constants.get(name);
  if (v === undefined) throw new Error(`fuzz vocabulary: unknown constant ${name}`);
  return v;
}

export type Gen = fc.Arbitrary<Omit<FuzzStep, 'dom' | 'vcpu' | 'cpl'>> & { opName: string };

/** Steps of one op with the given argument arbitrary. */
export const step = (op: string, args: fc.Arbitrary<Record<string, ArgValue>> = fc.constant({})): Gen =>
  Object.assign(args.map((a) => ({ op, args: a })), { opName: op });

export const big = (a: fc.Arbitrary<number>) => a.map(BigInt);
