// Every broken model is caught by the fuzzer within 60 s, and its YAML finding
// fails on that variant and passes on the real model.
import { describe, expect, it } from 'vitest';
import { selfcheck } from './selfcheck.js';
import { BROKEN_MODELS } from './variants.js';

describe('selfcheck', () => {
  for (const b of BROKEN_MODELS) {
    it(`catches ${b.variant.name}`, async () => {
      const [r] = await selfcheck({ timeMs: 60_000, seed: 1, only: b.variant.name, out: { write: () => true }, stop: { requested: false } });
      expect(r.fuzzCaught, r.name).toBe(true);
      expect(r.replayFailsOnVariant).toBe(true);
      expect(r.replayPassesOnModel).toBe(true);
    }, 120_000);
  }
});
