import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { evalExpr, exprToString, parseExpr, ExprError, type Expr } from './expr.js';
import { constants } from '../ops/constants.js';

const ev = (s: string, vars: Record<string, bigint> = {}) =>
  evalExpr(parseExpr(s), new Map([['EINVAL', 22n], ['X', 0x10n]]), new Map(Object.entries(vars)));

describe('expressions', () => {
  it('follows C precedence for the operators it has', () => {
    expect(ev('1 + 2 * 3')).toBe(7n);
    expect(ev('(4 << 16) | 19')).toBe(0x40013n);
    expect(ev('1 << 2 + 1')).toBe(8n);
    expect(ev('-EINVAL')).toBe(-22n);
    expect(ev('~0 & 0xff')).toBe(0xffn);
    expect(ev('$p + X', { p: 5n })).toBe(21n);
    expect(ev('0x1_0000')).toBe(65536n);
    expect(ev('1 + 1 == 2')).toBe(1n);
    expect(ev('X >= 0x11 | 0')).toBe(0n);
    expect(ev('(3 < 4) + (4 <= 4) + (5 > 6) + (2 != 2)')).toBe(2n);
  });
  it('rejects malformed input with an ExprError', () => {
    for (const s of ['', '1 +', '(1', '1 2', '$', '3x', '1 ** 2', '0x', '0x_', '0b_1', '0o_', '0x_ff', '0b2', '0o8']) expect(() => parseExpr(s)).toThrow(ExprError);
    expect(() => ev('$nope')).toThrow(/no value/);
    expect(() => ev('1 / 0')).toThrow(/division/);
  });
  it('computes sums and differences like bigint arithmetic (property)', () => {
    fc.assert(fc.property(fc.bigInt(), fc.bigInt(), fc.bigInt(), (a, b, c) => {
      expect(ev('$a + $b - $c', { a, b, c })).toBe(a + b - c);
      expect(ev('($a | $b) & $c', { a, b, c })).toBe((a | b) & c);
    }));
  });
});

describe('expr: printing and parsing agree', () => {
  const leaf = fc.oneof(
    fc.bigInt({ min: 0n, max: 1n << 64n }).map((v): Expr => ({ k: 'num', v })),
    fc.constantFrom('EINVAL', 'PAGE_SIZE', 'DOMID_SELF').map((name): Expr => ({ k: 'const', name })),
    fc.constantFrom('a', 'port_2').map((name): Expr => ({ k: 'var', name })),
  );
  const tree = fc.letrec<{ e: Expr }>((tie) => ({
    e: fc.oneof({ depthSize: 'small', withCrossShrink: true },
      leaf,
      fc.record({ k: fc.constant('un' as const), op: fc.constantFrom('-' as const, '~' as const), a: tie('e') }),
      fc.record({ k: fc.constant('bin' as const), op: fc.constantFrom('+', '-', '*', '&', '|', '^', '==', '<', '>=', '%', '/'), a: tie('e'), b: tie('e') })),
  })).e;

  it('property: parse(print(e)) evaluates like e, whatever the spacing', () => {
    const vars = new Map<string, bigint>([['a', 7n], ['port_2', 1n << 40n]]);
    fc.assert(fc.property(tree, fc.constantFrom('', ' ', '\t  '), (e, pad) => {
      const text = exprToString(e).replace(/ /g, ` ${pad}`);
      const ev = (x: Expr) => { try { return evalExpr(x, constants, vars); } catch (err) { return (err as Error).message; } };
      expect(ev(parseExpr(text))).toEqual(ev(e));
    }), { numRuns: 300 });
  });
});
