import { describe, expect, it } from 'vitest';
import { ops } from '../ops/index.js';
import { constants } from '../ops/constants.js';
import { INT_SCHEMAS } from '../ops/types.js';
import { argConstants } from '../ops/arg-types.js';
import { argsOf, listConstants, listOps } from './listing.js';

describe('list --ops', () => {
  it('shows every argument of every op with a type', () => {
    const text = listOps();
    const lines = text.split('\n');
    for (const op of ops.values()) {
      expect(lines).toContain(op.name);
      for (const a of argsOf(op)) {
        expect(a.type, `${op.name}.${a.name}`).not.toMatch(/^(pipe|any|unknown)$/);
        expect(text).toContain(`${a.name}${a.optional ? '?' : ''}: ${a.type}`);
      }
    }
  });

  it('names the constants of an argument as they are spelt', () => {
    const [state] = argsOf(ops.get('runstate.switch')!);
    expect(state).toEqual({ name: 'state', optional: false, type: 'int64', constants: 'RUNSTATE_' });
    expect(listOps()).toMatch(/args: state: int64 \(RUNSTATE_\*\)/);
    expect(argsOf(ops.get('memory.add_to_physmap')!).map((a) => `${a.name}:${a.type}`)).toEqual(['domid:u16', 'space:int64', 'idx:int64', 'gpfn:u64', 'size:u16']);
  });

  it('every constant family named for an argument exists', () => {
    for (const op of ops.values()) {
      const shape = (op.args as unknown as { _zod: { def: { shape?: Record<string, unknown>; innerType?: { _zod: { def: { shape?: Record<string, unknown> } } } } } })._zod.def;
      for (const key of Object.keys(shape.shape ?? shape.innerType?._zod.def.shape ?? {})) {
        const fam = argConstants(op.name, key);
        if (fam) expect([...constants.keys()].some((c) => c.startsWith(fam)), `${op.name}.${key}: ${fam}`).toBe(true);
      }
    }
    expect(INT_SCHEMAS).toBeDefined();
  });
});

describe('list --constants', () => {
  it('lists every constant with its value, by family, and filters by prefix', () => {
    const text = listConstants();
    for (const [name, v] of constants) expect(text).toMatch(new RegExp(`^  ${name} +${v}( |$)`, 'm'));
    expect(listConstants('RUNSTATE_')).toBe('RUNSTATE_*\n' + ['running 0', 'runnable 1', 'blocked 2', 'offline 3'].map((x) => {
      const [n, v] = x.split(' ');
      return `  ${`RUNSTATE_${n}`.padEnd(40)} ${v}`;
    }).join('\n') + '\n');
  });
});
