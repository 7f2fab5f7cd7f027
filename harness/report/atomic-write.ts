// Reports are written to a temporary file beside the target and renamed over
// it, so a reader (or a crash) never sees a half-written file. A failure names
// the report, not the temporary file, and leaves no temporary file behind.
import { renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { DriverError } from '../errors.js';
import { makeDirs } from '../make-dirs.js';

export function writeAtomic(path: string, content: string | Uint8Array): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    makeDirs(dirname(path));
    // No fsync: rename is atomic against a killed process (the data is in the
    // page cache either way); fsync would only add power-loss durability, at ~5 ms a write.
    writeFileSync(tmp, content);
    renameSync(tmp, path);
  } catch (e) {
    try { unlinkSync(tmp); } catch { /* never created */ }
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    throw new DriverError(`cannot write report ${path}: ${code}`, { code });
  }
}
