// The broken variants cannot be reached from normal runs.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createDriver, TARGETS } from '../drivers/index.js';
import { ModelDriver } from '../drivers/model/model-driver.js';
import { XenModel } from '../model/domain.js';
import { takeVariantFactory } from '../model/variant.js';
import { sessionSetup } from './setup.js';
import { BROKEN_MODELS } from './variants.js';

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') && !p.endsWith('.test.ts') ? [p] : [];
  });
}

describe('broken model variants', () => {
  it('every target `xconf run` can select builds the real model', async () => {
    for (const t of TARGETS.filter((x) => x.startsWith('model'))) {
      const d = (await createDriver(t)) as ModelDriver;
      const m = d.build(sessionSetup({ mode: 64, portLimit: 63, maptrackFrames: 1 }));
      expect(m.config.variant).toBeUndefined();
    }
    expect(TARGETS.some((t) => BROKEN_MODELS.some((b) => t.includes(b.variant.name)))).toBe(false);
  });
  it('only the selfcheck modules import the variants; the factory is taken once; forged variants are refused', () => {
    const importers = files('harness').filter((f) => /from '\.\/variants\.js'|fuzz\/variants\.js/.test(readFileSync(f, 'utf8')));
    expect(importers.sort()).toEqual(['harness/cli/fuzz-command.ts', 'harness/fuzz/selfcheck.ts']);
    expect(readFileSync('harness/cli/fuzz-command.ts', 'utf8')).toMatch(/await import\('\.\.\/fuzz\/variants\.js'\)/);
    expect(() => takeVariantFactory()).toThrow(/already taken/);
    const forged = { name: 'x', bug: 'cpl_accepted' } as const;
    expect(() => new XenModel({ flavor: 'xen', cpu: 'intel', xenVersion: { major: 4, minor: 19, extra: '' }, mode: 64, domains: [], variant: forged })).toThrow(/selfcheck only/);
  });
});
