// `npm run build`, second half: the compiled CLI (dist/, from tsc) bundled by
// esbuild into dist/bundle/, which bin/xconf.js runs. One file per command
// (split at the CLI's lazy imports) instead of ~200 modules: node spends less
// time resolving and loading modules, which is most of a short run's start.
// The workers the runner forks (shard-worker, case-worker) are entries of
// their own beside the chunks, where the runner looks for them. Package files
// are found from the package root (harness/paths.ts), not from module paths.
// bench/run.mjs bundles its phase timer with the same settings.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('..', import.meta.url));

/** Bundle `entryPoints` ({ name: path relative to the package root }) into `outdir`, split at dynamic imports. */
export async function bundle(entryPoints, outdir) {
  rmSync(outdir, { recursive: true, force: true });
  await build({
    absWorkingDir: root,
    entryPoints,
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // CommonJS dependencies call require(): give the ESM chunks a real one.
    banner: { js: "import { createRequire as __xconfRequire } from 'node:module'; const require = __xconfRequire(import.meta.url);" },
    logLevel: 'warning',
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await bundle({
    main: 'dist/cli/main.js',
    'shard-worker': 'dist/runner/shard-worker.js',
    'case-worker': 'dist/runner/case-worker.js',
  }, `${root}dist/bundle`);
}
