// Where the package's own files are (package.json, expectations/, native/build/,
// node_modules/.cache/), for code that runs from dist/<folder>/, from the
// bundle in dist/bundle/ or from the TypeScript sources under vitest: the
// nearest folder above this module that holds a package.json.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function packageRoot(from: string): string {
  for (let d = from; ; d = dirname(d)) {
    if (existsSync(join(d, 'package.json'))) return d;
    if (dirname(d) === d) throw new Error(`no package.json in any folder above ${from}`);
  }
}

export const PACKAGE_ROOT = packageRoot(dirname(fileURLToPath(import.meta.url)));

/** A path inside the package, from its parts relative to the package root. */
export const packagePath = (...parts: string[]): string => join(PACKAGE_ROOT, ...parts);
