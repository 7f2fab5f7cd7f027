// Findings: one file per signature, raw file first then the shrunk case; the
// oracles; the progress display.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FindingStore, slug } from './findings.js';
import { compareOutcomes, checkInvariants } from './oracles.js';
import { Progress, progressLine } from './progress.js';
import type { Finding } from './engine.js';

const finding = (sig: string): Finding => ({
  signature: sig, setup: { mode: 64, portLimit: 63, maptrackFrames: 1 },
  trace: [{ step: { op: 'evtchn.send', args: { port: 1n }, dom: 1, vcpu: 0, cpl: 0 }, outcome: { ret: 0n } }],
  index: 0, fcSeed: 3, fcPath: '1:2',
  disagreement: { kind: 'differential', field: 'ret', expected: '0', actual: '-22', classes: ['zero', '-EINVAL'], expect: { ret: '0' } },
});

describe('finding store', () => {
  it('writes the raw sequence first, then replaces it with the shrunk case; dedups by signature across runs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xconf-found-'));
    const s = new FindingStore(dir);
    const f = finding('differential|evtchn.send|ret|zero->-EINVAL');
    expect(s.isNew(f.signature)).toBe(true);
    const raw = s.writeRaw(f, { target: 'model', seed: 1 });
    expect(existsSync(raw)).toBe(true);
    s.writeShrunk(f, { target: 'model', seed: 1 });
    expect(readdirSync(dir)).toEqual([`${slug(f.signature)}.yaml`]);
    expect(s.isNew(f.signature)).toBe(false);
    const again = new FindingStore(dir);
    expect(again.isNew(f.signature)).toBe(false);
    expect(again.hit(f.signature)?.hits).toBe(1);
  });
  it('slugs are stable and distinct per signature', () => {
    fc.assert(fc.property(fc.string(), fc.string(), (a, b) => {
      fc.pre(a !== b);
      expect(slug(a)).toBe(slug(a));
      expect(slug(a)).toMatch(/^[A-Za-z0-9-]*$/);
    }));
    expect(slug('a|b|c|d')).not.toBe(slug('a|b|c|e'));
  });
});

describe('oracles', () => {
  const outcome = fc.record({ ret: fc.option(fc.bigInt({ min: -40n, max: 5n }), { nil: undefined }), fault: fc.option(fc.constantFrom('GP', 'UD'), { nil: undefined }) });
  it('equal outcomes agree; a different ret or fault is a disagreement naming the field', () => {
    fc.assert(fc.property(outcome, outcome, (a, b) => {
      const d = compareOutcomes(a, b);
      if (a.ret === b.ret && a.fault === b.fault) expect(d).toBeUndefined();
      else expect(d?.field).toBe(a.fault !== b.fault ? 'fault' : 'ret');
    }));
  });
  it('OUT values are compared key by key', () => {
    expect(compareOutcomes({ ret: 0n, out: { port: 3n } }, { ret: 0n, out: { port: 4n } })?.field).toBe('out.port');
  });
  it('invariants: runstate sum rule, time version parity, maptrack bound, close clears pending', () => {
    const view = { width: 64 as const, sharedInfo2l: () => 0x80000, readU8: () => 0xff };
    const st = (op: string, args = {}) => ({ op, args, dom: 1, vcpu: 0, cpl: 0 });
    expect(checkInvariants(st('runstate.get'), { out: { sum_ok: 0n } }, view)?.field).toBe('runstate.sum_rule');
    expect(checkInvariants(st('time.update'), { out: { version: 3n } }, view)?.field).toBe('time.version_parity');
    expect(checkInvariants(st('time.update'), { out: { version: 4n } }, view)).toBeUndefined();
    expect(checkInvariants(st('gnttab.maptrack'), { out: { used: 257n, limit: 256n } }, view)?.field).toBe('gnttab.maptrack_bound');
    expect(checkInvariants(st('evtchn.close', { port: 3n }), { ret: 0n }, view)?.field).toBe('evtchn.close_clears_pending');
    expect(checkInvariants(st('evtchn.run_upcall'), { out: { handled: [3n, 5n, 3n] } }, view)?.expect).toEqual({ out: { handled: ['3', '5'] } });
    expect(checkInvariants(st('evtchn.run_upcall'), { out: { handled: [3n, 5n] } }, view)).toBeUndefined();
    expect(checkInvariants(st('evtchn.close', { port: 3n }), { ret: 0n }, { ...view, readU8: () => 0 })).toBeUndefined();
  });
});

describe('progress', () => {
  const p = { steps: 1000, sequences: 10, opsCovered: 40, opsTotal: 45, findings: 1, elapsedMs: 61_000, totalMs: 3_600_000, rate: 123456 };
  it('one line with steps/s, sequences, coverage, findings, elapsed and remaining', () => {
    expect(progressLine(p)).toBe('fuzz: 123,456 steps/s, 1,000 steps, 10 sequences, ops 40/45, findings 1, 1m01s elapsed, 58m59s left');
  });
  it('rewrites one line on a TTY; plain periodic lines otherwise', () => {
    const tty: string[] = [];
    const t = new Progress({ write: (s: string) => tty.push(s) }, true, 250, 10_000);
    t.update(p, 1000); t.update(p, 1100); t.update(p, 1300);
    expect(tty).toHaveLength(2);
    expect(tty[0].startsWith('\r\x1b[2K')).toBe(true);
    const plain: string[] = [];
    const q = new Progress({ write: (s: string) => plain.push(s) }, false, 250, 10_000);
    q.update(p, 20_000); q.update(p, 25_000); q.update(p, 30_000);
    expect(plain).toHaveLength(2);
    expect(plain.every((l) => l.endsWith('\n') && !l.includes('\r'))).toBe(true);
  });
});

describe('progress closing line', () => {
  it('a forced update that would repeat the last line prints nothing', () => {
    const lines: string[] = [];
    const q = new Progress({ write: (s: string) => lines.push(s) }, false, 250, 10_000);
    const p = { steps: 5, sequences: 1, opsCovered: 1, opsTotal: 2, findings: 0, elapsedMs: 1000, totalMs: 2000, rate: 5 };
    q.update(p, 20_000);
    q.update(p, 20_001, true);
    expect(lines).toHaveLength(1);
    q.update({ ...p, steps: 6 }, 20_002, true);
    expect(lines).toHaveLength(2);
  });
});
