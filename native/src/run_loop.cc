#include "kcov.h"
#include "run_loop.h"

#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

namespace xconf {

void VcpuCore::Close() {
  if (run) {
    munmap(run, runSize);
    run = nullptr;
  }
  if (fd >= 0) {
    close(fd);
    fd = -1;
  }
  vm.reset();
}

namespace {

// One per thread that has run a vCPU with a timeout; never freed (threads of
// Node's pool live as long as the process).
struct ThreadWatch {
  timer_t timer{};
  volatile sig_atomic_t fired = 0;
  std::atomic<struct kvm_run*> run{nullptr};
};

int g_signal = 0;
std::once_flag g_install_once;
int g_install_err = 0;

void OnTimer(int, siginfo_t* si, void*) {
  if (si == nullptr || si->si_code != SI_TIMER) return;
  auto* w = static_cast<ThreadWatch*>(si->si_value.sival_ptr);
  if (w == nullptr) return;
  w->fired = 1;
  struct kvm_run* r = w->run.load(std::memory_order_relaxed);
  if (r != nullptr) r->immediate_exit = 1;
}

void InstallHandler() {
  g_signal = SIGRTMIN + 6;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = OnTimer;
  sa.sa_flags = SA_SIGINFO;  // no SA_RESTART: KVM_RUN must return EINTR
  sigemptyset(&sa.sa_mask);
  if (sigaction(g_signal, &sa, nullptr) != 0) g_install_err = errno;
}

// The calling thread's watch, created on first use. Returns nullptr and sets
// err/syscall on failure.
ThreadWatch* CurrentWatch(int& err, std::string& syscall) {
  thread_local ThreadWatch* watch = nullptr;
  if (watch != nullptr) return watch;
  std::call_once(g_install_once, InstallHandler);
  if (g_install_err != 0) {
    err = g_install_err;
    syscall = "sigaction";
    return nullptr;
  }
  auto* w = new ThreadWatch();
  struct sigevent sev;
  std::memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = g_signal;
  sev.sigev_value.sival_ptr = w;
  sev._sigev_un._tid = gettid();
  if (timer_create(CLOCK_MONOTONIC, &sev, &w->timer) != 0) {
    err = errno;
    syscall = "timer_create";
    delete w;
    return nullptr;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, g_signal);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  watch = w;
  return watch;
}

void Arm(ThreadWatch* w, uint32_t ms) {
  struct itimerspec its;
  std::memset(&its, 0, sizeof its);
  its.it_value.tv_sec = ms / 1000;
  its.it_value.tv_nsec = static_cast<long>(ms % 1000) * 1000000L;
  timer_settime(w->timer, 0, &its, nullptr);
}

void Disarm(ThreadWatch* w) {
  struct itimerspec its;
  std::memset(&its, 0, sizeof its);
  timer_settime(w->timer, 0, &its, nullptr);
}

}  // namespace

int TimeoutSignal() {
  std::call_once(g_install_once, InstallHandler);
  return g_signal;
}

void RunLoop(VcpuCore& vcpu, uint32_t timeoutMs, uint32_t portBase, RunOutcome& out) {
  kcov::Arm();  // a coverage-guided fuzz run traces this thread's KVM_RUN (no-op otherwise)
  struct kvm_run* run = vcpu.run;
  ThreadWatch* w = nullptr;
  run->immediate_exit = 0;
  if (timeoutMs != 0) {
    w = CurrentWatch(out.err, out.syscall);
    if (w == nullptr) return;
    w->fired = 0;
    w->run.store(run, std::memory_order_relaxed);
    Arm(w, timeoutMs);
  }

  for (;;) {
    int r = ioctl(vcpu.fd, KVM_RUN, 0);
    out.runs++;
    if (r < 0) {
      int e = errno;
      if (e == EINTR) {
        if (w != nullptr && w->fired) {
          out.kind = RunKind::Timeout;
          vcpu.lastReason = KVM_EXIT_INTR;
          break;
        }
        continue;  // some other signal: go back in
      }
      out.err = e;
      out.syscall = "ioctl(KVM_RUN)";
      vcpu.lastReason = UINT32_MAX;
      break;
    }
    uint32_t reason = run->exit_reason;
    vcpu.lastReason = reason;
    if (reason == KVM_EXIT_IO && portBase != 0 && run->io.direction == KVM_EXIT_IO_OUT &&
        run->io.size == 4 && run->io.count == 1 && run->io.port >= portBase &&
        run->io.port < portBase + 4) {
      uint32_t v;
      std::memcpy(&v, reinterpret_cast<char*>(run) + run->io.data_offset, sizeof v);
      unsigned which = run->io.port - portBase;
      if (which == 3) {  // LOG: served here, the guest goes on
        if (out.logs.size() < kMaxLogs) out.logs.push_back(v);
        else out.logsDropped++;
        continue;
      }
      out.value = v;
      out.kind = which == 0 ? RunKind::Done : which == 1 ? RunKind::Yield : RunKind::Fault;
      break;
    }
    if (reason == KVM_EXIT_INTR) {
      if (w != nullptr && w->fired) {
        out.kind = RunKind::Timeout;
        break;
      }
      continue;
    }
    out.kind = RunKind::Exit;
    break;
  }

  if (w != nullptr) {
    Disarm(w);
    w->run.store(nullptr, std::memory_order_relaxed);
  }
}

}  // namespace xconf
