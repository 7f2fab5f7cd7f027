// `mkdir -p` that always ends. Node 20's mkdirSync(dir, { recursive: true }) loops for
// ever where a filesystem answers ENOENT for a new child of a directory that exists
// (a report path under /proc does): here each missing level is made once, and the
// first error other than EEXIST is thrown with its code.
import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

function errno(code: string, path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: cannot create directory '${path}'`), { code });
}

export function makeDirs(dir: string): void {
  const missing: string[] = [];
  for (let d = resolve(dir); ; d = dirname(d)) {
    let isDir: boolean | undefined;
    try {
      isDir = statSync(d).isDirectory();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (isDir) break;
    if (isDir === false) throw errno('ENOTDIR', d);
    missing.push(d);
    if (dirname(d) === d) break;
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (!statSync(d).isDirectory()) throw errno('ENOTDIR', d);
    }
  }
}
