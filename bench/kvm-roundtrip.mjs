// Round-trip cost of a guest exit served through the xconf KVM addon,
// against a minimal C VMM (bench/kvm-roundtrip.c) running the same guest.
// Prints figures; not a test. Usage: node bench/kvm-roundtrip.mjs [exits] [rounds]
// The three exit loops run interleaved for several rounds and the medians are
// compared, because exit costs on a shared host drift by 10-20% over seconds.
//
//   C            KVM_RUN + I/O exit in a C loop (the floor)
//   runOnce      one N-API crossing per exit (JS sees every exit)
//   run (native) the addon's run loop serves the exits without returning to
//                JS; one crossing per batch
//   GuestVm      the xconf guest in long mode: batches of 128 LOG commands
//                through the TypeScript wrapper (needs `npm run build`)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const exits = Number(process.argv[2] ?? 50000);
const rounds = Number(process.argv[3] ?? 5);
const TARGET = 1.3;

function fail(msg) {
  process.stderr.write(`kvm-roundtrip: ${msg}\n`);
  process.exit(1);
}

// ---- the C baseline
const work = mkdtempSync(join(tmpdir(), 'xconf-bench-'));
const exe = join(work, 'kvm-roundtrip');
const cc = spawnSync('cc', ['-O2', '-o', exe, join(here, 'kvm-roundtrip.c')], { encoding: 'utf8' });
if (cc.status !== 0) fail(`cc failed: ${cc.stderr || cc.error}`);
function runC(n) {
  const r = spawnSync(exe, [String(n)], { encoding: 'utf8' });
  if (r.status !== 0) fail(`C baseline failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

// ---- the addon
const addonPath = join(root, 'native', 'build', 'Release', 'xconf_kvm.node');
if (!existsSync(addonPath)) fail('native/build/Release/xconf_kvm.node is missing: run npm ci');
const native = createRequire(import.meta.url)(addonPath);

/** A VM with one vCPU in real mode at 0x1000 running `code`. */
function realModeVm(sys, code) {
  const vm = sys.createVm(0);
  vm.setMemory(0, 0, 0x10000, 0);
  vm.write(0x1000, Buffer.from(code));
  const v = vm.createVcpu(0);
  const s = v.getSregs();
  s.writeBigUInt64LE(0n, 0); // cs.base
  s.writeUInt16LE(0, 12); // cs.selector
  v.setSregs(s);
  const r = Buffer.alloc(144);
  r.writeBigUInt64LE(0x1000n, 128); // rip
  r.writeBigUInt64LE(2n, 136); // rflags
  v.setRegs(r);
  return { vm, v };
}

const KVM_EXIT_IO = 2;
const sys = new native.System('/dev/kvm');

function benchRunOnce(n) {
  const { vm, v } = realModeVm(sys, [0xe6, 0x10, 0xeb, 0xfc]); // out %al,$0x10; jmp back
  for (let i = 0; i < 1000; i++) v.runOnce();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    if (v.runOnce() !== KVM_EXIT_IO) fail('unexpected exit in runOnce loop');
  }
  const ns = Number(process.hrtime.bigint() - t0);
  vm.close();
  return { exits: n, ns, nsPerExit: ns / n };
}

function benchNativeLoop(n) {
  // mov $n,%ecx; mov $0x703,%dx; 1: out %eax,%dx; addr32 loop 1b;
  // mov $0x700,%dx; out %eax,%dx; jmp start   (0x703 = LOG, 0x700 = DONE)
  const code = Buffer.from([0x66, 0xb9, 0, 0, 0, 0, 0xba, 0x03, 0x07, 0x66, 0xef, 0x67, 0xe2, 0xfb, 0xba, 0x00, 0x07, 0x66, 0xef, 0xeb, 0xeb]);
  const perBatch = 50000;
  code.writeUInt32LE(perBatch, 2);
  const { vm, v } = realModeVm(sys, code);
  v.run(10000, 0x700); // warm up: one batch
  let done = 0;
  let crossings = 0;
  const t0 = process.hrtime.bigint();
  while (done < n) {
    const r = v.run(60000, 0x700);
    if (r.kind !== 'done') fail(`native loop stopped: ${r.kind}`);
    done += perBatch + 1; // the LOG exits plus the DONE exit
    crossings++;
  }
  const ns = Number(process.hrtime.bigint() - t0);
  vm.close();
  return { exits: done, ns, nsPerExit: ns / done, crossings };
}

async function benchGuestVm(n) {
  const dist = join(root, 'dist', 'drivers', 'kvm', 'addon.js');
  if (!existsSync(dist)) return undefined;
  const { GuestVm } = await import(dist);
  const g = GuestVm.create({ mode: 64 });
  try {
    const batch = Array.from({ length: 128 }, (_, i) => ({ op: 'log', value: i }));
    await g.run(0, batch);
    let logs = 0;
    let kvmRuns = 0;
    const t0 = process.hrtime.bigint();
    while (logs < n) {
      const r = await g.run(0, batch);
      if (r.status !== 'done') fail(`GuestVm batch: ${r.status}`);
      logs += r.logs.length;
      kvmRuns += r.kvmRuns;
    }
    const ns = Number(process.hrtime.bigint() - t0);
    return { exits: kvmRuns, ns, nsPerExit: ns / kvmRuns };
  } finally {
    g.close();
  }
}

const fmt = (x) => `${(x / 1000).toFixed(2)} µs`;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const samples = { c: [], once: [], loop: [] };
let loopInfo;
for (let i = 0; i < rounds; i++) {
  samples.c.push(runC(exits).nsPerExit);
  samples.once.push(benchRunOnce(exits).nsPerExit);
  loopInfo = benchNativeLoop(exits);
  samples.loop.push(loopInfo.nsPerExit);
}
const guest = await benchGuestVm(Math.min(exits, 20000));
const base = median(samples.c);
const once = median(samples.once);
const loop = median(samples.loop);
const spread = (xs) => `${fmt(Math.min(...xs))}..${fmt(Math.max(...xs))}`;

let module = 'unknown';
for (const m of ['kvm_intel', 'kvm_amd', 'kvm_pvm']) if (existsSync(`/sys/module/${m}`)) module = m;
console.log(`KVM I/O-exit round trip: ${module}, node ${process.version}, ${exits} exits x ${rounds} rounds, medians`);
const rows = [
  ['C (KVM_RUN loop)', base, spread(samples.c)],
  ['addon runOnce (1 crossing/exit)', once, spread(samples.once)],
  ['addon run, native loop', loop, `${spread(samples.loop)}; ${loopInfo.crossings} crossings per ${loopInfo.exits} exits`],
];
for (const [name, ns, note] of rows) {
  console.log(`  ${name.padEnd(34)} ${fmt(ns).padStart(10)}  ${`${(ns / base).toFixed(2)}x`.padStart(6)}  ${note}`);
}
if (guest) {
  console.log(`  ${'GuestVm, 128 LOG commands/batch'.padEnd(34)} ${fmt(guest.nsPerExit).padStart(10)}  per command (guest work included; ${guest.exits} exits)`);
} else {
  console.log(`  GuestVm batches: skipped (run \`npm run build\` first)`);
}
const worst = Math.max(once, loop) / base;
console.log(`target <= ${TARGET}x of C: runOnce ${(once / base).toFixed(2)}x, native loop ${(loop / base).toFixed(2)}x -> ${worst <= TARGET ? 'met' : 'NOT met'}`);

sys.close();
rmSync(work, { recursive: true, force: true });
