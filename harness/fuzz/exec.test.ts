import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compile, VocabularyError } from './exec.js';
import { sessionSetup, setupArb, stepContext } from './setup.js';
import { stepArb, type FuzzStep } from './steps.js';
import { ops } from '../ops/index.js';
import { IntArg } from '../ops/types.js';
import { evalExpr } from '../suite/expr.js';
import { constants } from '../ops/index.js';

/** An action as data: functions (OUT decoders) dropped, everything else kept. */
function plain(v: unknown): unknown {
  if (typeof v === 'function') return '<fn>';
  if (v instanceof Uint8Array) return [...v];
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

function viaSchema(v: unknown): unknown {
  if (v instanceof IntArg) return evalExpr(v.expr, constants, new Map());
  if (Array.isArray(v)) return v.map(viaSchema);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, viaSchema(x)]));
  return v;
}

describe('compiling a fuzz step', () => {
  it('a step that skips its schema (a shape seen to pass unchanged) encodes exactly as through the schema', () => {
    fc.assert(fc.property(setupArb.chain((s) => fc.tuple(fc.constant(s), fc.array(stepArb(stepContext(s)), { minLength: 20, maxLength: 40 }))), ([s, steps]) => {
      const ss = sessionSetup(s);
      for (const st of steps) {
        // Fresh copies: compile caches its result on the step object.
        const fast = compile({ ...st }, ss);
        const op = ops.get(st.op)!;
        const parsed = op.args.safeParse(st.args);
        expect(parsed.success).toBe(true);
        const action = op.encode(viaSchema(parsed.data) as never, { width: ss.mode, scratch: ss.scratch + st.vcpu * 4096, dom: st.dom, vcpu: st.vcpu });
        expect(plain(fast.action)).toEqual(plain(action));
      }
    }), { numRuns: 60, seed: 5 });
  });

  it('arguments the schema refuses are refused every time, whatever was seen before', () => {
    const ss = sessionSetup({ mode: 64, portLimit: 63, maptrackFrames: 1 });
    const step = (args: Record<string, unknown>): FuzzStep => ({ op: 'evtchn.send', args: args as FuzzStep['args'], dom: 1, vcpu: 0, cpl: 0 });
    for (let i = 0; i < 3; i++) expect(() => compile(step({ port: BigInt(i + 1) }), ss)).not.toThrow();
    expect(() => compile(step({ port: true }), ss)).toThrow(VocabularyError);
    expect(() => compile(step({ port: 'NO_SUCH_CONSTANT' }), ss)).toThrow(VocabularyError);
    expect(() => compile(step({ port: 1n, extra: 2n }), ss)).toThrow(VocabularyError);
    expect(() => compile(step({ port: 1n, extra: 2n }), ss)).toThrow(VocabularyError);
  });
});
