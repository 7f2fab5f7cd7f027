// KCOV handles per thread and the process-wide coverage sets (see kcov.h).
// The device protocol is the kernel's Documentation/dev-tools/kcov.rst:
// KCOV_INIT_TRACE with the buffer size in words, mmap of that many words,
// KCOV_ENABLE with KCOV_TRACE_PC on the thread to trace; word 0 of the buffer
// counts the PCs that follow it.
#include "kcov.h"

#include <fcntl.h>
#include <linux/kcov.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <unordered_set>
#include <vector>

namespace xconf {
namespace kcov {
namespace {

const char kDevice[] = "/sys/kernel/debug/kcov";

struct Handle {
  int fd = -1;
  uint64_t* area = nullptr;
  uint64_t words = 0;
};

std::mutex g_mu;                  // guards everything below
std::atomic<uint64_t> g_words{0}; // 0: not started
std::vector<Handle*> g_handles;
std::unordered_set<uint64_t> g_pcs, g_edges;
uint64_t g_overflows = 0;
std::atomic<uint32_t> g_failed{0};
thread_local bool t_armed = false;

std::string Open(uint64_t words, Handle** out, int* code) {
  int fd = open(kDevice, O_RDWR | O_CLOEXEC);
  if (fd < 0) return *code = errno, std::string("open(") + kDevice + ")";
  if (ioctl(fd, KCOV_INIT_TRACE, static_cast<unsigned long>(words)) < 0) {
    *code = errno;
    std::string e = "ioctl(KCOV_INIT_TRACE)";
    close(fd);
    return e;
  }
  void* p = mmap(nullptr, words * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    *code = errno;
    std::string e = "mmap(kcov)";
    close(fd);
    return e;
  }
  if (ioctl(fd, KCOV_ENABLE, KCOV_TRACE_PC) < 0) {
    *code = errno;
    std::string e = "ioctl(KCOV_ENABLE)";
    munmap(p, words * sizeof(uint64_t));
    close(fd);
    return e;
  }
  auto* h = new Handle{fd, static_cast<uint64_t*>(p), words};
  __atomic_store_n(&h->area[0], 0, __ATOMIC_RELAXED);
  *out = h;
  return "";
}

// An edge is the pair (previous PC, PC) within one thread's trace, folded to 64 bits.
inline uint64_t Edge(uint64_t prev, uint64_t pc) { return (prev * 0x9E3779B97F4A7C15ull) ^ pc; }

}  // namespace

std::string Start(uint64_t words, int* code) {
  *code = EINVAL;
  if (words < 2) return "kcov buffer must hold at least 2 words";
  if (t_armed) return "";
  Handle* h = nullptr;
  std::string err = Open(words, &h, code);
  if (!err.empty()) return err;
  std::lock_guard<std::mutex> lock(g_mu);
  g_handles.push_back(h);
  t_armed = true;
  g_words.store(words);
  return "";
}

bool Started() { return g_words.load() != 0; }

void Arm() {
  if (t_armed) return;
  uint64_t words = g_words.load();
  if (words == 0) return;
  t_armed = true;  // one attempt per thread
  Handle* h = nullptr;
  int code = 0;
  if (!Open(words, &h, &code).empty()) {
    g_failed.fetch_add(1);
    return;
  }
  std::lock_guard<std::mutex> lock(g_mu);
  g_handles.push_back(h);
}

uint32_t FailedThreads() { return g_failed.load(); }

Totals Collect() {
  std::lock_guard<std::mutex> lock(g_mu);
  Totals t;
  for (Handle* h : g_handles) {
    uint64_t n = __atomic_load_n(&h->area[0], __ATOMIC_ACQUIRE);
    if (n >= h->words - 1) {
      n = h->words - 1;
      g_overflows++;
    }
    uint64_t prev = 0;
    for (uint64_t i = 1; i <= n; i++) {
      uint64_t pc = h->area[i];
      if (g_pcs.insert(pc).second) t.newPcs++;
      if (g_edges.insert(Edge(prev, pc)).second) t.newEdges++;
      prev = pc;
    }
    t.records += n;
    __atomic_store_n(&h->area[0], 0, __ATOMIC_RELEASE);
  }
  t.pcs = g_pcs.size();
  t.edges = g_edges.size();
  t.overflows = g_overflows;
  t.threads = static_cast<uint32_t>(g_handles.size());
  return t;
}

}  // namespace kcov
}  // namespace xconf
