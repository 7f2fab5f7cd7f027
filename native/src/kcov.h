// KCOV for a coverage-guided fuzz run (xconf fuzz --kcov): each thread that
// enters KVM (the main thread, the libuv workers that run KVM_RUN) gets its own
// /sys/kernel/debug/kcov handle in KCOV_TRACE_PC mode, enabled for the rest of
// the thread's life. Only what the kernel built with KCOV instrumentation is
// recorded; the live kernels instrument arch/x86/kvm/xen.o alone, so every PC
// is one of xen.c's. Collect() folds what the threads recorded since the last
// call into the process-wide PC and edge sets and says how many were new.
#pragma once

#include <cstdint>
#include <string>

namespace xconf {
namespace kcov {

struct Totals {
  uint64_t newPcs = 0, newEdges = 0;  // first seen in this collect
  uint64_t pcs = 0, edges = 0;        // seen since Start
  uint64_t records = 0;               // PCs read in this collect
  uint64_t overflows = 0;             // collects that found a full buffer (PCs lost)
  uint32_t threads = 0;               // threads with a handle
};

// Open the calling thread's handle and make every later Arm() open one for its
// thread. words: buffer size per thread, in 64-bit words. Returns "" or the
// failing call, with its errno in *code (ENOENT: the kernel has no CONFIG_KCOV
// or debugfs is not mounted).
std::string Start(uint64_t words, int* code);
bool Started();
// Give the calling thread a handle if KCOV was started and it has none. Never
// fails the caller: a thread whose open fails is counted (FailedThreads) and
// runs uncovered.
void Arm();
uint32_t FailedThreads();
// Call only while no thread is inside KVM (between steps): a thread's buffer is
// read, then its count reset.
Totals Collect();

}  // namespace kcov
}  // namespace xconf
