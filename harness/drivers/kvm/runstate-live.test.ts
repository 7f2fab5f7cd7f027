import { describe, expect, it } from 'vitest';
import { encodeXenVcpuAttr } from './addon.js';
import { runstateDataArg, runstateOutOf } from './runstate-live.js';

const M = (1n << 64n) - 1n;

describe('kvm runstate attribute helpers', () => {
  it('turns op arguments into RUNSTATE_DATA/ADJUST u64 bit patterns', () => {
    const d = runstateDataArg({ state: -1n, state_entry_time: 0n, time_running: 100n, time_runnable: 0n, time_blocked: -100n, time_offline: 1n << 62n });
    expect(d).toEqual({ state: M, stateEntryTime: 0n, timeRunning: 100n, timeRunnable: 0n, timeBlocked: M - 99n, timeOffline: 1n << 62n });
    const b = encodeXenVcpuAttr({ type: 'runstate_adjust', ...d });
    expect(b.readUInt16LE(0)).toBe(5);
    expect([0, 1, 2, 3, 4, 5].map((i) => b.readBigUInt64LE(8 + 8 * i))).toEqual([M, 0n, 100n, 0n, M - 99n, 1n << 62n]);
  });

  it('reports the model\'s OUT keys with KVM\'s sum rule (u64)', () => {
    expect(runstateOutOf({ state: 2, entry: 600n, time: [100n, 200n, 300n, 0n] })).toEqual({
      state: 2n, state_entry_time: 600n, time_running: 100n, time_runnable: 200n, time_blocked: 300n, time_offline: 0n, sum_ok: 1n,
    });
    expect(runstateOutOf({ state: 0, entry: 5n, time: [M, 6n, 0n, 0n] }).sum_ok).toBe(1n);
    expect(runstateOutOf({ state: 0, entry: 601n, time: [100n, 200n, 300n, 0n] }).sum_ok).toBe(0n);
  });
});
