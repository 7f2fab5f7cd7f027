// `xconf run --kcidb=PATH --origin=NAME --build-id=ID`: the options checked
// before anything runs, so a bad origin costs no run.
import { UsageError } from '../errors.js';
import { checkKcidbOptions, type KcidbOptions } from '../report/kcidb-options.js';
import type { Values } from './args.js';

export function kcidbOptions(v: Values): (KcidbOptions & { path: string }) | undefined {
  if (!v.kcidb) {
    if (v.origin || v['build-id']) throw new UsageError('--origin and --build-id go with --kcidb=PATH');
    return undefined;
  }
  return { ...checkKcidbOptions({ origin: v.origin as string | undefined, buildId: v['build-id'] as string | undefined }), path: String(v.kcidb) };
}
