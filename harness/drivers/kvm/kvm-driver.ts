// The live KVM target. Needs the native addon (native/, built at install);
// when it is missing, opening the target fails with the recorded reason.

import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DriverError } from '../../errors.js';
import type { Capabilities, Driver, Session, SessionSetup } from '../driver.js';

const STATUS = fileURLToPath(new URL('../../../native/build/status.json', import.meta.url));

function addonStatus(): { ok: boolean; reason?: string } {
  if (!existsSync(STATUS)) return { ok: false, reason: 'the native addon was never built (run `npm ci`)' };
  try {
    return JSON.parse(readFileSync(STATUS, 'utf8')) as { ok: boolean; reason?: string };
  } catch {
    return { ok: false, reason: 'native/build/status.json is unreadable; rebuild with `npm rebuild`' };
  }
}

export class KvmDriver implements Driver {
  readonly name = 'kvm';

  async probe(): Promise<Capabilities> {
    const st = addonStatus();
    if (!st.ok) {
      throw new DriverError(`kvm target unavailable: ${st.reason}; the model target still works (--target=model)`, { code: 'ENOADDON' });
    }
    throw new DriverError('kvm target unavailable: this build has no kvm driver for the addon', { code: 'ENOSYS' });
  }

  async open(_setup: SessionSetup): Promise<Session> {
    await this.probe();
    throw new DriverError('unreachable', { code: 'ENOSYS' });
  }
}
