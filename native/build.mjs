// Install-time build of the native KVM addon and its guest.
// Never fails the install: the model target needs none of this. The outcome is
// recorded in native/build/status.json ({ ok: true } or { ok: false, reason })
// so `--target=kvm` can say exactly why the addon is unavailable.
//
// Steps: (1) node-gyp rebuild of the addon (binding.gyp), (2) the test guest
// from native/guest/*.S with GNU as/ld/objcopy into native/build/guest/.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'build');

function record(status) {
  // node-gyp rebuild removes build/, so create it again here.
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'status.json'), JSON.stringify(status, null, 2) + '\n');
}

function fail(reason) {
  record({ ok: false, reason });
  process.stderr.write(
    `xconf: native KVM addon not built (${reason.split('\n')[0].slice(0, 200)}); the model target still works. Reason recorded in native/build/status.json\n`,
  );
  process.exit(0);
}

// The informative part of a failed tool's output: compiler errors and
// node-gyp's own error, without its version/cwd/command boilerplate.
function tail(r) {
  const text = `${r.stderr ?? ''}\n${r.stdout ?? ''}\n${r.error ? String(r.error) : ''}`;
  const boiler = /gyp ERR! (node -v|node-gyp -v|not ok|cwd|command|System|stack\s+at )|^gyp info|^\s*$/;
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => !boiler.test(l));
  const errors = lines.filter((l) => /error|ERR!|not found|No such file|cannot|failed/i.test(l));
  return (errors.length ? errors : lines).slice(0, 3).join(' | ').slice(0, 600) || 'no output';
}

function run(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { cwd: here, encoding: 'utf8', ...opts });
}

function nodeGypCommand() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return [process.execPath, [fromNpm]];
  // npm bundles node-gyp; find it next to this node binary when run by hand.
  const bundled = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (existsSync(bundled)) return [process.execPath, [bundled]];
  return ['npx', ['--no-install', 'node-gyp']];
}

function buildAddon() {
  if (!existsSync(join(here, 'binding.gyp'))) {
    fail('native/binding.gyp is missing: this checkout has no KVM addon');
  }
  const [cmd, pre] = nodeGypCommand();
  const args = [...pre, 'rebuild'];
  // Use the installed Node headers instead of downloading them.
  if (!process.env.npm_config_nodedir && existsSync('/usr/include/node/node_api.h')) args.push('--nodedir=/usr');
  const r = run(cmd, args);
  if (r.status !== 0) fail(`node-gyp rebuild failed (exit ${r.status}): ${tail(r)}`);
  for (const addon of ['xconf_kvm', 'xconf_xen']) {
    if (!existsSync(join(out, 'Release', `${addon}.node`))) fail(`node-gyp rebuild produced no build/Release/${addon}.node`);
  }
}

function buildGuest() {
  const src = join(here, 'guest');
  const dst = join(out, 'guest');
  mkdirSync(dst, { recursive: true });
  for (const [mode, asFlag, ldEmu] of [
    [64, '--64', 'elf_x86_64'],
    [32, '--32', 'elf_i386'],
  ]) {
    const obj = join(dst, `guest${mode}.o`);
    const elf = join(dst, `guest${mode}.elf`);
    const bin = join(dst, `guest${mode}.bin`);
    const a = run('as', [asFlag, '-I', src, '-o', obj, join(src, `guest${mode}.S`)]);
    if (a.status !== 0) fail(`assembling native/guest/guest${mode}.S failed (exit ${a.status}): ${tail(a)}`);
    const ldArgs = ['-m', ldEmu, '-nostdlib', '-N', '-Ttext=0x10000', '-e', '_start', '-o', elf, obj];
    let l = run('ld', ['--no-warn-rwx-segments', ...ldArgs]);
    if (l.status !== 0 && /no-warn-rwx-segments/.test(l.stderr ?? '')) l = run('ld', ldArgs);
    if (l.status !== 0) fail(`linking guest${mode} failed (exit ${l.status}): ${tail(l)}`);
    const c = run('objcopy', ['-O', 'binary', elf, bin]);
    if (c.status !== 0) fail(`objcopy of guest${mode} failed (exit ${c.status}): ${tail(c)}`);
  }
  // The Xen target's PVH entry stub: an ELF with XEN_ELFNOTE_PHYS32_ENTRY (pvh.S).
  const obj = join(dst, 'pvh.o');
  const a = run('as', ['--64', '-I', src, '-o', obj, join(src, 'pvh.S')]);
  if (a.status !== 0) fail(`assembling native/guest/pvh.S failed (exit ${a.status}): ${tail(a)}`);
  const ldArgs = ['-m', 'elf_x86_64', '-nostdlib', '-T', join(src, 'pvh.ld'), '-o', join(dst, 'pvh.elf'), obj];
  let l = run('ld', ['--no-warn-rwx-segments', ...ldArgs]);
  if (l.status !== 0 && /no-warn-rwx-segments/.test(l.stderr ?? '')) l = run('ld', ldArgs);
  if (l.status !== 0) fail(`linking the PVH stub failed (exit ${l.status}): ${tail(l)}`);
  // The qemu target's -bios ROM: rom.S's reset path, then the same stub (rom.ld).
  const romObj = join(dst, 'rom.o');
  const ra = run('as', ['--64', '-I', src, '-o', romObj, join(src, 'rom.S')]);
  if (ra.status !== 0) fail(`assembling native/guest/rom.S failed (exit ${ra.status}): ${tail(ra)}`);
  const romElf = join(dst, 'rom.elf');
  const romArgs = ['-m', 'elf_x86_64', '-nostdlib', '-T', join(src, 'rom.ld'), '-o', romElf, romObj, obj];
  let rl = run('ld', ['--no-warn-rwx-segments', ...romArgs]);
  if (rl.status !== 0 && /no-warn-rwx-segments/.test(rl.stderr ?? '')) rl = run('ld', romArgs);
  if (rl.status !== 0) fail(`linking the ROM stub failed (exit ${rl.status}): ${tail(rl)}`);
  const rc = run('objcopy', ['-O', 'binary', '-j', '.rom', '-j', '.reset', '--gap-fill=0xff', romElf, join(dst, 'guest.rom')]);
  if (rc.status !== 0) fail(`objcopy of the ROM stub failed (exit ${rc.status}): ${tail(rc)}`);
  const size = statSync(join(dst, 'guest.rom')).size;
  if (size !== 0x10000) fail(`native/build/guest/guest.rom is ${size} bytes; QEMU's -bios image must be 65536`);
}

try {
  buildAddon();
  buildGuest();
  record({ ok: true });
} catch (err) {
  try {
    fail(`native build script error: ${err instanceof Error ? err.message : String(err)}`);
  } catch {
    process.exit(0);
  }
}
