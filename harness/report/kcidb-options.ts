// KCIDB options, checked before a run starts (kept free of heavy imports:
// `xconf run` loads the KCIDB writer only when --kcidb is given).
import { UsageError } from '../errors.js';

export interface KcidbOptions {
  /** CI system name, ^[a-z0-9_]+$. */
  origin: string;
  /** The tested build's id; "<origin>:" is put in front when it has no origin part. */
  buildId: string;
  /** Where the report files will be found (a URL prefix); file: URLs of the local files otherwise. */
  artifactsUrl?: string;
}

const ORIGIN = /^[a-z0-9_]+$/;

export function checkKcidbOptions(o: { origin?: string; buildId?: string }): KcidbOptions {
  if (!o.origin) throw new UsageError('--kcidb needs --origin=NAME (the CI system, lower-case letters, digits and _)');
  if (!ORIGIN.test(o.origin)) throw new UsageError(`--origin: '${o.origin}' is not a KCIDB origin (lower-case letters, digits and _ only, e.g. 'xconf_ci')`);
  if (!o.buildId) throw new UsageError("--kcidb needs --build-id=ID (the tested build, e.g. 'xconf_ci:6.12-abc123')");
  if (o.buildId.includes('\0')) throw new UsageError('--build-id: must not contain a NUL character');
  return { origin: o.origin, buildId: o.buildId };
}
