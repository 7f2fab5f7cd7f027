// The vCPU run loop: calls KVM_RUN until the guest needs JavaScript, serving
// the guest's own port writes (LOG) in native code, and stops a guest that
// runs too long with a per-thread POSIX timer whose signal kicks the vCPU out
// of KVM_RUN (and sets kvm_run.immediate_exit for the window outside it).
#pragma once

#include <linux/kvm.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace xconf {

struct VmCore;

struct VcpuCore {
  int fd = -1;
  uint32_t id = 0;
  struct kvm_run* run = nullptr;
  size_t runSize = 0;
  std::shared_ptr<VmCore> vm;
  std::atomic<bool> busy{false};
  uint32_t lastReason = UINT32_MAX;  // exit reason of the last KVM_RUN, UINT32_MAX: none
  void Close();
  ~VcpuCore() { Close(); }
};

enum class RunKind {
  Done,      // guest wrote PORT_DONE
  Yield,     // guest wrote PORT_YIELD
  Fault,     // guest wrote PORT_FAULT (exception outside a command)
  Timeout,   // the timer fired
  Exit,      // any other exit: decode kvm_run
};

struct RunOutcome {
  RunKind kind = RunKind::Exit;
  uint32_t value = 0;      // port data for Done/Yield/Fault
  uint64_t runs = 0;       // KVM_RUN calls made
  std::vector<uint32_t> logs;
  uint64_t logsDropped = 0;
  int err = 0;             // non-zero: a syscall failed
  std::string syscall;
};

constexpr size_t kMaxLogs = 1u << 16;

// Runs the vCPU. portBase = 0 disables the guest-port protocol (every exit
// returns). timeoutMs = 0: no timer. Never touches JavaScript.
void RunLoop(VcpuCore& vcpu, uint32_t timeoutMs, uint32_t portBase, RunOutcome& out);

int TimeoutSignal();

}  // namespace xconf
