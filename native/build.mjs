// Install-time build of the native KVM addon and its guest.
// Never fails the install: the model target needs none of this. The outcome is
// recorded in native/build/status.json so `--target=kvm` can say exactly why
// the addon is unavailable.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'build');
mkdirSync(out, { recursive: true });

function record(status) {
  writeFileSync(join(out, 'status.json'), JSON.stringify(status, null, 2) + '\n');
}

if (!existsSync(join(here, 'binding.gyp'))) {
  record({ ok: false, reason: 'native/binding.gyp is missing: this checkout has no KVM addon' });
  process.exit(0);
}

const gyp = process.env.npm_config_node_gyp;
const cmd = gyp ? process.execPath : 'npx';
const args = gyp ? [gyp, 'rebuild'] : ['--no-install', 'node-gyp', 'rebuild'];
const r = spawnSync(cmd, args, { cwd: here, encoding: 'utf8' });
if (r.status !== 0) {
  const tail = `${r.stderr ?? ''}${r.error ? String(r.error) : ''}`.trim().split('\n').slice(-3).join(' | ');
  record({ ok: false, reason: `node-gyp rebuild failed (exit ${r.status}): ${tail}` });
  process.stderr.write(`xconf: native KVM addon not built; the model target still works. Reason recorded in native/build/status.json\n`);
  process.exit(0);
}
record({ ok: true });
