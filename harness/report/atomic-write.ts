// Reports are written to a temporary file beside the target and renamed over
// it, so a reader (or a crash) never sees a half-written file.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';

export function writeAtomic(path: string, content: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  // No fsync: rename is atomic against a killed process (the data is in the
  // page cache either way); fsync would only add power-loss durability, at ~5 ms a write.
  writeFileSync(tmp, content);
  renameSync(tmp, path);
}
