// Integer expressions in case files: numbers, named constants (EINVAL,
// DOMID_SELF, ...), variables ($port), unary minus/~, + - * / % << >> & | ^,
// comparisons == != < <= > >= (giving 1 or 0) and parentheses. Parsed once at load time; evaluated with 64-bit-safe bigints.

export type Expr =
  | { k: 'num'; v: bigint }
  | { k: 'const'; name: string }
  | { k: 'var'; name: string }
  | { k: 'un'; op: '-' | '~'; a: Expr }
  | { k: 'bin'; op: string; a: Expr; b: Expr };

export class ExprError extends Error {
  override name = 'ExprError';
}

const BIN_PREC: Record<string, number> = {
  '==': 0.5, '!=': 0.5, '<': 0.7, '<=': 0.7, '>': 0.7, '>=': 0.7,
  '|': 1, '^': 2, '&': 3, '<<': 4, '>>': 4, '+': 5, '-': 5, '*': 6, '/': 6, '%': 6,
};

type Tok = { t: 'num'; v: bigint } | { t: 'id'; v: string } | { t: 'var'; v: string } | { t: 'op'; v: string };

const SPACE = /\s+/y;
// A prefix needs a digit before any '_' (0x_ is not a number; BigInt('0x') would throw).
const NUM = /(0x[0-9a-fA-F][0-9a-fA-F_]*|0b[01][01_]*|0o[0-7][0-7_]*|[0-9][0-9_]*)/y;
const VAR = /\$([A-Za-z_][A-Za-z0-9_]*)/y;
const ID = /[A-Za-z_][A-Za-z0-9_]*/y;
const TWO = new Set(['<<', '>>', '==', '!=', '<=', '>=']);

/** Tokens of an expression; sticky regular expressions, so no copies of the rest of the text. */
function lex(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  const at = (re: RegExp): RegExpExecArray | null => {
    re.lastIndex = i;
    return re.exec(src);
  };
  while (i < src.length) {
    const c = src[i];
    const sp = at(SPACE);
    if (sp) { i += sp[0].length; continue; }
    const num = at(NUM);
    if (num) {
      out.push({ t: 'num', v: BigInt(num[1].replace(/_/g, '')) });
      i += num[1].length;
      if (/[A-Za-z_]/.test(src[i] ?? '')) throw new ExprError(`bad number near '${src.slice(i - num[1].length, i + 1)}'`);
      continue;
    }
    const v = at(VAR);
    if (v) { out.push({ t: 'var', v: v[1] }); i += v[0].length; continue; }
    const id = at(ID);
    if (id) { out.push({ t: 'id', v: id[0] }); i += id[0].length; continue; }
    const two = src.slice(i, i + 2);
    if (TWO.has(two)) { out.push({ t: 'op', v: two }); i += 2; continue; }
    if ('+-*/%&|^~()<>'.includes(c)) { out.push({ t: 'op', v: c }); i++; continue; }
    throw new ExprError(`unexpected '${c}'`);
  }
  return out;
}

export function parseExpr(src: string): Expr {
  const toks = lex(src);
  let p = 0;
  // Comparisons give 1 or 0 and bind loosest, as in C (minus && and ||).
  const peek = (): Tok | undefined => toks[p];
  function primary(): Expr {
    const t = toks[p++];
    if (!t) throw new ExprError('expression ends too early');
    if (t.t === 'num') return { k: 'num', v: t.v };
    if (t.t === 'var') return { k: 'var', name: t.v };
    if (t.t === 'id') return { k: 'const', name: t.v };
    if (t.v === '(') {
      const e = binary(0);
      const close = toks[p++];
      if (!close || close.v !== ')') throw new ExprError("missing ')'");
      return e;
    }
    if (t.v === '-' || t.v === '~') return { k: 'un', op: t.v, a: primary() };
    throw new ExprError(`unexpected '${t.v}'`);
  }
  function binary(min: number): Expr {
    let a = primary();
    for (;;) {
      const t = peek();
      if (!t || t.t !== 'op') break;
      const prec = BIN_PREC[t.v];
      if (prec === undefined || prec < min) break;
      p++;
      const b = binary(prec + 1);
      a = { k: 'bin', op: t.v, a, b };
    }
    return a;
  }
  if (toks.length === 0) throw new ExprError('empty expression');
  const e = binary(0);
  if (p !== toks.length) throw new ExprError(`unexpected '${String(toks[p].v)}'`);
  return e;
}

export function exprVars(e: Expr, acc: string[] = []): string[] {
  if (e.k === 'var') acc.push(e.name);
  else if (e.k === 'un') exprVars(e.a, acc);
  else if (e.k === 'bin') { exprVars(e.a, acc); exprVars(e.b, acc); }
  return acc;
}

export function exprConsts(e: Expr, acc: string[] = []): string[] {
  if (e.k === 'const') acc.push(e.name);
  else if (e.k === 'un') exprConsts(e.a, acc);
  else if (e.k === 'bin') { exprConsts(e.a, acc); exprConsts(e.b, acc); }
  return acc;
}

/** Largest shift accepted by `<<` and `>>`. */
export const MAX_SHIFT = 1024n;

export type VarValue = bigint | string | bigint[];

export function evalExpr(e: Expr, consts: ReadonlyMap<string, bigint>, vars: ReadonlyMap<string, VarValue>): bigint {
  switch (e.k) {
    case 'num': return e.v;
    case 'const': {
      const v = consts.get(e.name);
      if (v === undefined) throw new ExprError(`unknown constant ${e.name}`);
      return v;
    }
    case 'var': {
      const v = vars.get(e.name);
      if (v === undefined) throw new ExprError(`variable $${e.name} has no value`);
      if (typeof v !== 'bigint') throw new ExprError(`variable $${e.name} is not a number`);
      return v;
    }
    case 'un': {
      const a = evalExpr(e.a, consts, vars);
      return e.op === '-' ? -a : ~a;
    }
    case 'bin': {
      const a = evalExpr(e.a, consts, vars);
      const b = evalExpr(e.b, consts, vars);
      switch (e.op) {
        case '+': return a + b;
        case '-': return a - b;
        case '*': return a * b;
        case '/': if (b === 0n) throw new ExprError('division by zero'); return a / b;
        case '%': if (b === 0n) throw new ExprError('division by zero'); return a % b;
        case '<<':
        case '>>':
          // No field is wider than 64 bits; a huge shift would only exhaust memory.
          if (b > MAX_SHIFT || b < -MAX_SHIFT) throw new ExprError(`shift by ${b} is too large (at most ${MAX_SHIFT})`);
          return e.op === '<<' ? a << b : a >> b;
        case '&': return a & b;
        case '|': return a | b;
        case '^': return a ^ b;
        case '==': return a === b ? 1n : 0n;
        case '!=': return a !== b ? 1n : 0n;
        case '<': return a < b ? 1n : 0n;
        case '<=': return a <= b ? 1n : 0n;
        case '>': return a > b ? 1n : 0n;
        case '>=': return a >= b ? 1n : 0n;
      }
    }
  }
  throw new ExprError('bad expression');
}

export function exprToString(e: Expr): string {
  switch (e.k) {
    case 'num': return e.v > 9n || e.v < -9n ? (e.v < 0n ? `-0x${(-e.v).toString(16)}` : `0x${e.v.toString(16)}`) : e.v.toString();
    case 'const': return e.name;
    case 'var': return `$${e.name}`;
    case 'un': return `${e.op}${exprToString(e.a)}`;
    case 'bin': return `(${exprToString(e.a)} ${e.op} ${exprToString(e.b)})`;
  }
}

/**
 * Evaluate every part of `e` that uses no variable; the first failure (division
 * by zero, a huge shift) explains why the expression can never be evaluated.
 */
export function constantFault(e: Expr, consts: ReadonlyMap<string, bigint>): string | undefined {
  if (exprVars(e).length === 0) {
    try {
      evalExpr(e, consts, new Map());
      return undefined;
    } catch (err) {
      return err instanceof ExprError || err instanceof RangeError ? err.message : String(err);
    }
  }
  if (e.k === 'un') return constantFault(e.a, consts);
  if (e.k === 'bin') {
    const inner = constantFault(e.a, consts) ?? constantFault(e.b, consts);
    if (inner) return inner;
    // `$x / 0`: the divisor alone is constant.
    if ((e.op === '/' || e.op === '%') && exprVars(e.b).length === 0 && evalExpr(e.b, consts, new Map()) === 0n) return 'division by zero';
  }
  return undefined;
}
