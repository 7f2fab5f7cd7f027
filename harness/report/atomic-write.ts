// Reports are written to a temporary file beside the target and renamed over
// it, so a reader (or a crash) never sees a half-written file.
import { mkdirSync, renameSync, writeFileSync, fsyncSync, openSync, closeSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';

export function writeAtomic(path: string, content: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  writeFileSync(tmp, content);
  const fd = openSync(tmp, 'r');
  try { fsyncSync(fd); } finally { closeSync(fd); }
  renameSync(tmp, path);
}
