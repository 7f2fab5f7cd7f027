import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sessionSetup, setupArbFor, stepContext, VCPUS, yamlSetup } from './setup.js';

describe('fuzz setups', () => {
  it('by default: two domains, the first with two vCPUs and the limits a sequence reaches', () => {
    fc.assert(fc.property(setupArbFor({ multi: true, mode32: true }), (s) => {
      const ss = sessionSetup(s);
      expect(ss.domains.map((d) => d.vcpus)).toEqual([VCPUS, 1]);
      expect(ss.domains[0].limits).toEqual({ max_evtchn_port: s.portLimit, max_maptrack_frames: 1 });
      expect([63, 1023]).toContain(s.portLimit);
    }));
  });

  it('for a one-vCPU target without limits (qemu): one vCPU, no limits, and the 2-level ABI\'s last port as the port limit', () => {
    fc.assert(fc.property(setupArbFor({ multi: false, mode32: true, oneVcpu: true, fixedLimits: true }), (s) => {
      const ss = sessionSetup(s);
      expect(ss.domains).toHaveLength(1);
      expect(ss.domains[0].vcpus).toBe(1);
      expect(ss.domains[0].limits).toEqual({});
      expect(s.portLimit).toBe(s.mode === 64 ? 4095 : 1023);
      expect(stepContext(s)).toMatchObject({ vcpus: 1, portLimit: s.portLimit });
      // The finding replays the same guest.
      expect(yamlSetup(s)).toEqual({ mode: s.mode, domains: [{ id: 1, vcpus: 1 }] });
    }));
  });
});
