// Values in mismatch messages by name: when an expectation is written with a
// constant (RUNSTATE_runnable), both the expected and the observed value are
// shown with the name of that family that has the value:
// "expected RUNSTATE_runnable (1), got RUNSTATE_running (0)".

import { constantFamily, constants } from '../ops/constants.js';
import { describeRet } from '../model/errno.js';
import { exprConsts, type Expr } from './expr.js';

/** A constant's family: its defineConstants prefix, or for loose names (DOMID_SELF) the leading WORD_. */
export function familyOf(name: string): string | undefined {
  const fam = constantFamily.get(name);
  if (fam) return fam;
  return /^[A-Z][A-Z0-9]*_/.exec(name)?.[0];
}

let byFamily: Map<string, Map<bigint, string>> | undefined;

function index(): Map<string, Map<bigint, string>> {
  if (byFamily) return byFamily;
  byFamily = new Map();
  for (const name of [...constants.keys()].sort()) {
    const fam = familyOf(name);
    if (!fam) continue;
    const m = byFamily.get(fam) ?? new Map<bigint, string>();
    if (!m.has(constants.get(name)!)) m.set(constants.get(name)!, name);
    byFamily.set(fam, m);
  }
  return byFamily;
}

/** The name of `v` in the families of the constants `hint` uses, if it has one. */
export function nameOf(v: bigint, hint?: Expr): string | undefined {
  if (!hint) return undefined;
  for (const c of exprConsts(hint)) {
    const fam = familyOf(c);
    const name = fam ? index().get(fam)?.get(v) : undefined;
    if (name) return name;
  }
  return undefined;
}

/** "RUNSTATE_running (0)" when the expectation names a family with that value; describeRet otherwise. */
export function describeValue(v: bigint, hint?: Expr): string {
  const name = nameOf(v, hint);
  return name ? `${name} (${describeRet(v)})` : describeRet(v);
}
