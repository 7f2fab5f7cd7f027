// KCOV as a fuzz run's coverage source (`xconf fuzz --target=kvm --kcov`): the
// native addon traces every thread that enters KVM (native/src/kcov.cc), and
// the live kernels built by ci/live-kvm instrument arch/x86/kvm/xen.o alone, so
// what is counted is xen.c's code. The kernel must have CONFIG_KCOV and
// debugfs mounted; without them the run stops with one line saying so.

import { existsSync } from 'node:fs';
import { DriverError } from '../errors.js';
import { loadAddon } from '../drivers/kvm/native.js';
import type { CoverageSource } from './corpus.js';

export const KCOV_DEVICE = '/sys/kernel/debug/kcov';
/** 1 Mi PCs per thread (8 MiB): a sequence of 60 steps, alloc_many included, fits. */
export const KCOV_WORDS = 1 << 20;

/** Start KCOV in this process; `guide` false only measures (the corpus is not used). */
export function openKcov(guide: boolean): CoverageSource {
  const loaded = loadAddon();
  if (!loaded.ok) throw new DriverError(`--kcov: ${loaded.reason}`, { code: loaded.code, errno: loaded.errno });
  if (!existsSync(KCOV_DEVICE)) {
    const why = existsSync('/sys/kernel/debug/gcov') || existsSync('/sys/kernel/debug/kvm')
      ? 'this kernel has no CONFIG_KCOV'
      : 'debugfs is not mounted (mount -t debugfs debugfs /sys/kernel/debug) or the kernel has no CONFIG_KCOV';
    throw new DriverError(`--kcov: ${KCOV_DEVICE} is missing: ${why}; ci/live-kvm's 6.12 kernel has it (KCOV on arch/x86/kvm/xen.o)`, { code: 'ENOKCOV' });
  }
  const addon = loaded.addon;
  try {
    addon.kcovStart(KCOV_WORDS);
  } catch (e) {
    const err = e as Error & { code?: string; errno?: number; syscall?: string };
    throw new DriverError(`--kcov: ${err.message}`, { code: err.code ?? 'EKCOV', errno: err.errno, syscall: err.syscall });
  }
  return { name: 'KCOV trace-pc of the kernel code built with KCOV (xen.o on the live kernels)', guide, collect: () => addon.kcovCollect() };
}
