// xconf_xen: dom0's side of the Xen target (harness/drivers/xen/). It runs in a
// Xen dom0 and reaches the hypervisor through Xen's own stable tool libraries,
// loaded with dlopen so this addon builds everywhere (npm install on any host)
// and says exactly which library is missing when it is not in a dom0:
//   libxenforeignmemory  guest memory through foreign mappings
//   libxenctrl           pause / unpause a domain, its state and its vCPUs', debug keys, console
//   libxenevtchn         dom0's end of interdomain event channels
//   libxengnttab         dom0 mapping a guest's grants, as a backend does
// Prototypes follow the libraries' public headers (tools/include/*.h in Xen).
#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <cstdint>
#include <string>
#include <vector>

#include <napi.h>

namespace {

struct Fn {
  // libxenforeignmemory
  void *(*fm_open)(void *logger, unsigned flags) = nullptr;
  int (*fm_close)(void *h) = nullptr;
  void *(*fm_map)(void *h, uint32_t dom, int prot, size_t pages, const unsigned long *arr, int *err) = nullptr;
  int (*fm_unmap)(void *h, void *addr, size_t pages) = nullptr;
  // libxenctrl
  void *(*xc_open)(void *logger, void *dombuild_logger, unsigned flags) = nullptr;
  int (*xc_pause)(void *xch, uint32_t domid) = nullptr;
  int (*xc_unpause)(void *xch, uint32_t domid) = nullptr;
  int (*xc_debug_keys)(void *xch, const char *keys) = nullptr;
  int (*xc_readconsolering)(void *xch, char *buffer, unsigned int *pnr_chars, int clear, int incremental,
                            uint32_t *pindex) = nullptr;
  int (*xc_getinfolist)(void *xch, uint32_t first_domain, unsigned int max_domains, void *info) = nullptr;
  int (*xc_vcpu_getinfo)(void *xch, uint32_t domid, uint32_t vcpu, void *info) = nullptr;
  int (*xc_hvm_getcontext_partial)(void *xch, uint32_t domid, uint16_t typecode, uint16_t instance, void *buf,
                                   uint32_t size) = nullptr;
  // libxenevtchn
  void *(*ev_open)(void *logger, unsigned flags) = nullptr;
  int (*ev_bind_interdomain)(void *h, uint32_t domid, uint32_t remote_port) = nullptr;
  int (*ev_bind_unbound)(void *h, uint32_t domid) = nullptr;
  int (*ev_notify)(void *h, uint32_t port) = nullptr;
  int (*ev_unbind)(void *h, uint32_t port) = nullptr;
  int (*ev_pending)(void *h) = nullptr;
  int (*ev_unmask)(void *h, uint32_t port) = nullptr;
  // libxengnttab
  void *(*gt_open)(void *logger, unsigned flags) = nullptr;
  void *(*gt_map)(void *h, uint32_t domid, uint32_t ref, int prot) = nullptr;
  int (*gt_unmap)(void *h, void *addr, uint32_t count) = nullptr;
  int (*gt_set_max)(void *h, uint32_t count) = nullptr;
};

Fn fn;
std::string load_error;
bool loaded = false;
void *fm = nullptr, *xch = nullptr, *xce = nullptr, *xgt = nullptr;

template <typename T>
bool sym(void *lib, const char *lib_name, const char *name, T &out) {
  out = reinterpret_cast<T>(dlsym(lib, name));
  if (!out) load_error = std::string(lib_name) + " has no " + name;
  return out != nullptr;
}

void *lib(const char *const *names) {
  for (const char *const *n = names; *n; n++) {
    void *h = dlopen(*n, RTLD_NOW | RTLD_LOCAL);
    if (h) return h;
  }
  load_error = std::string(names[0]) + " not found (" + dlerror() +
               "): the xen target runs in a Xen dom0 with Xen's tool libraries (npm run test:xen)";
  return nullptr;
}

bool load() {
  if (loaded) return true;
  if (!load_error.empty()) return false;
  static const char *const fm_names[] = {"libxenforeignmemory.so.1", "libxenforeignmemory.so", nullptr};
  static const char *const xc_names[] = {"libxenctrl.so.4.17", "libxenctrl.so", nullptr};
  static const char *const ev_names[] = {"libxenevtchn.so.1", "libxenevtchn.so", nullptr};
  static const char *const gt_names[] = {"libxengnttab.so.1", "libxengnttab.so", nullptr};
  void *l_fm = lib(fm_names), *l_xc = l_fm ? lib(xc_names) : nullptr;
  void *l_ev = l_xc ? lib(ev_names) : nullptr, *l_gt = l_ev ? lib(gt_names) : nullptr;
  if (!l_gt) return false;
  bool ok = sym(l_fm, "libxenforeignmemory", "xenforeignmemory_open", fn.fm_open) &&
            sym(l_fm, "libxenforeignmemory", "xenforeignmemory_close", fn.fm_close) &&
            sym(l_fm, "libxenforeignmemory", "xenforeignmemory_map", fn.fm_map) &&
            sym(l_fm, "libxenforeignmemory", "xenforeignmemory_unmap", fn.fm_unmap) &&
            sym(l_xc, "libxenctrl", "xc_interface_open", fn.xc_open) &&
            sym(l_xc, "libxenctrl", "xc_domain_pause", fn.xc_pause) &&
            sym(l_xc, "libxenctrl", "xc_domain_unpause", fn.xc_unpause) &&
            sym(l_xc, "libxenctrl", "xc_send_debug_keys", fn.xc_debug_keys) &&
            sym(l_xc, "libxenctrl", "xc_readconsolering", fn.xc_readconsolering) &&
            sym(l_xc, "libxenctrl", "xc_domain_getinfolist", fn.xc_getinfolist) &&
            sym(l_xc, "libxenctrl", "xc_vcpu_getinfo", fn.xc_vcpu_getinfo) &&
            sym(l_xc, "libxenctrl", "xc_domain_hvm_getcontext_partial", fn.xc_hvm_getcontext_partial) &&
            sym(l_ev, "libxenevtchn", "xenevtchn_open", fn.ev_open) &&
            sym(l_ev, "libxenevtchn", "xenevtchn_bind_interdomain", fn.ev_bind_interdomain) &&
            sym(l_ev, "libxenevtchn", "xenevtchn_bind_unbound_port", fn.ev_bind_unbound) &&
            sym(l_ev, "libxenevtchn", "xenevtchn_notify", fn.ev_notify) &&
            sym(l_ev, "libxenevtchn", "xenevtchn_unbind", fn.ev_unbind) &&
            sym(l_ev, "libxenevtchn", "xenevtchn_pending", fn.ev_pending) &&
            sym(l_ev, "libxenevtchn", "xenevtchn_unmask", fn.ev_unmask) &&
            sym(l_gt, "libxengnttab", "xengnttab_open", fn.gt_open) &&
            sym(l_gt, "libxengnttab", "xengnttab_map_grant_ref", fn.gt_map) &&
            sym(l_gt, "libxengnttab", "xengnttab_unmap", fn.gt_unmap) &&
            sym(l_gt, "libxengnttab", "xengnttab_set_max_grants", fn.gt_set_max);
  if (!ok) return false;
  if (!(fm = fn.fm_open(nullptr, 0))) load_error = std::string("xenforeignmemory_open: ") + strerror(errno);
  else if (!(xch = fn.xc_open(nullptr, nullptr, 0))) load_error = std::string("xc_interface_open: ") + strerror(errno);
  else if (!(xce = fn.ev_open(nullptr, 0))) load_error = std::string("xenevtchn_open: ") + strerror(errno);
  else if (!(xgt = fn.gt_open(nullptr, 0))) load_error = std::string("xengnttab_open: ") + strerror(errno);
  if (!load_error.empty()) {
    load_error += " (is this a Xen dom0 with /dev/xen/privcmd, evtchn and gntdev?)";
    return false;
  }
  loaded = true;
  return true;
}

void need(Napi::Env env) {
  if (!load()) throw Napi::Error::New(env, load_error);
}

Napi::Error errnoError(Napi::Env env, const char *what, int err) {
  Napi::Error e = Napi::Error::New(env, std::string(what) + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  return e;
}

uint32_t u32(const Napi::Value &v) { return v.As<Napi::Number>().Uint32Value(); }

// A foreign mapping of a range of a domain's guest frames, read and written by offset.
class Mapping : public Napi::ObjectWrap<Mapping> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Mapping",
                       {InstanceMethod("read", &Mapping::Read), InstanceMethod("write", &Mapping::Write),
                        InstanceMethod("waitU32", &Mapping::WaitU32), InstanceMethod("close", &Mapping::Close),
                        InstanceAccessor("size", &Mapping::Size, nullptr)});
  }

  // new Mapping(domid, firstGfn, pages)
  explicit Mapping(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Mapping>(info) {
    Napi::Env env = info.Env();
    need(env);
    uint32_t dom = u32(info[0]);
    double first = info[1].As<Napi::Number>().DoubleValue();
    pages_ = u32(info[2]);
    if (pages_ == 0 || pages_ > (1u << 20)) throw Napi::RangeError::New(env, "page count out of range");
    std::vector<unsigned long> gfns(pages_);
    std::vector<int> errs(pages_, 0);
    for (size_t i = 0; i < pages_; i++) gfns[i] = static_cast<unsigned long>(first) + i;
    addr_ = static_cast<uint8_t *>(fn.fm_map(fm, dom, PROT_READ | PROT_WRITE, pages_, gfns.data(), errs.data()));
    if (!addr_) throw errnoError(env, "xenforeignmemory_map", errno);
    for (size_t i = 0; i < pages_; i++) {
      if (errs[i]) {
        int e = -errs[i] > 0 ? -errs[i] : errs[i];
        fn.fm_unmap(fm, addr_, pages_);
        addr_ = nullptr;
        throw errnoError(env, ("mapping gfn 0x" + std::to_string(gfns[i]) + " of domain " + std::to_string(dom)).c_str(), e);
      }
    }
  }
  ~Mapping() override { unmap(); }

 private:
  uint8_t *addr_ = nullptr;
  size_t pages_ = 0;

  void unmap() {
    if (addr_) fn.fm_unmap(fm, addr_, pages_);
    addr_ = nullptr;
  }
  size_t size() const { return pages_ * 4096; }
  void check(Napi::Env env, double off, double len) {
    if (!addr_) throw Napi::Error::New(env, "mapping is closed");
    if (off < 0 || len < 0 || off + len > static_cast<double>(size())) throw Napi::RangeError::New(env, "outside the mapping");
  }
  Napi::Value Size(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), static_cast<double>(size())); }
  Napi::Value Read(const Napi::CallbackInfo &info) {
    double off = info[0].As<Napi::Number>().DoubleValue(), len = info[1].As<Napi::Number>().DoubleValue();
    check(info.Env(), off, len);
    auto b = Napi::Buffer<uint8_t>::New(info.Env(), static_cast<size_t>(len));
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    memcpy(b.Data(), addr_ + static_cast<size_t>(off), static_cast<size_t>(len));
    return b;
  }
  Napi::Value Write(const Napi::CallbackInfo &info) {
    double off = info[0].As<Napi::Number>().DoubleValue();
    auto b = info[1].As<Napi::Buffer<uint8_t>>();
    check(info.Env(), off, static_cast<double>(b.Length()));
    memcpy(addr_ + static_cast<size_t>(off), b.Data(), b.Length());
    __atomic_thread_fence(__ATOMIC_RELEASE);
    return info.Env().Undefined();
  }
  // waitU32(off, value, timeoutMs): wait until the u32 at off equals value; true if it did.
  Napi::Value WaitU32(const Napi::CallbackInfo &info) {
    double off = info[0].As<Napi::Number>().DoubleValue();
    uint32_t want = u32(info[1]);
    double timeout_ms = info[2].As<Napi::Number>().DoubleValue();
    check(info.Env(), off, 4);
    if (static_cast<size_t>(off) % 4) throw Napi::RangeError::New(info.Env(), "unaligned u32");
    volatile uint32_t *p = reinterpret_cast<volatile uint32_t *>(addr_ + static_cast<size_t>(off));
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned spins = 0;; spins++) {
      if (*p == want) {
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        return Napi::Boolean::New(info.Env(), true);
      }
      if (spins < 64) continue;
      clock_gettime(CLOCK_MONOTONIC, &t);
      double ms = (t.tv_sec - t0.tv_sec) * 1e3 + (t.tv_nsec - t0.tv_nsec) / 1e6;
      if (ms > timeout_ms) return Napi::Boolean::New(info.Env(), false);
      // dom0 and the guest may share a physical CPU: give it up rather than spin.
      struct timespec nap = {0, spins < 1000 ? 0 : 50000};
      if (nap.tv_nsec) nanosleep(&nap, nullptr);
      else sched_yield();
    }
  }
  Napi::Value Close(const Napi::CallbackInfo &info) {
    unmap();
    return info.Env().Undefined();
  }
};

Napi::Value Available(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  bool ok = load();
  o.Set("ok", ok);
  if (!ok) o.Set("reason", load_error);
  return o;
}

Napi::Value Pause(const Napi::CallbackInfo &info) {
  need(info.Env());
  bool pause = info[1].ToBoolean();
  if ((pause ? fn.xc_pause : fn.xc_unpause)(xch, u32(info[0])) != 0) {
    throw errnoError(info.Env(), pause ? "xc_domain_pause" : "xc_domain_unpause", errno);
  }
  return info.Env().Undefined();
}

// evtchn(op, a, b): dom0's end of event channels. Returns the port or 0.
Napi::Value Evtchn(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  need(env);
  std::string op = info[0].As<Napi::String>();
  int r;
  if (op == "bind_interdomain") r = fn.ev_bind_interdomain(xce, u32(info[1]), u32(info[2]));
  else if (op == "bind_unbound") r = fn.ev_bind_unbound(xce, u32(info[1]));
  else if (op == "notify") r = fn.ev_notify(xce, u32(info[1]));
  else if (op == "unbind") r = fn.ev_unbind(xce, u32(info[1]));
  else if (op == "unmask") r = fn.ev_unmask(xce, u32(info[1]));
  else throw Napi::Error::New(env, "unknown evtchn op " + op);
  if (r < 0) throw errnoError(env, ("xenevtchn " + op).c_str(), errno);
  return Napi::Number::New(env, r);
}

// gntMap(domid, ref, writable): map one grant as a backend does; returns a handle id.
std::vector<void *> grant_maps;
Napi::Value GntMap(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  need(env);
  void *p = fn.gt_map(xgt, u32(info[0]), u32(info[1]), info[2].ToBoolean() ? PROT_READ | PROT_WRITE : PROT_READ);
  if (!p) throw errnoError(env, "xengnttab_map_grant_ref", errno);
  grant_maps.push_back(p);
  return Napi::Number::New(env, static_cast<double>(grant_maps.size() - 1));
}

Napi::Value GntUnmap(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  need(env);
  uint32_t id = u32(info[0]);
  if (id >= grant_maps.size() || !grant_maps[id]) throw Napi::RangeError::New(env, "no such grant mapping");
  int r = fn.gt_unmap(xgt, grant_maps[id], 1);
  if (r != 0) throw errnoError(env, "xengnttab_unmap", errno);
  grant_maps[id] = nullptr;
  return env.Undefined();
}

Napi::Value GntSetMax(const Napi::CallbackInfo &info) {
  need(info.Env());
  if (fn.gt_set_max(xgt, u32(info[0])) != 0) throw errnoError(info.Env(), "xengnttab_set_max_grants", errno);
  return info.Env().Undefined();
}

// debugKeys(keys): what `xl debug-keys` does; the handlers print into Xen's console ring.
Napi::Value DebugKeys(const Napi::CallbackInfo &info) {
  need(info.Env());
  std::string keys = info[0].As<Napi::String>();
  if (fn.xc_debug_keys(xch, keys.c_str()) != 0) throw errnoError(info.Env(), "xc_send_debug_keys", errno);
  return info.Env().Undefined();
}

// readConsole(index): what Xen's console ring gained since `index` (0: from its oldest
// byte), read incrementally in chunks, never clearing it (`xl dmesg` keeps everything).
// Returns { text, index } with the index to read on from.
Napi::Value ReadConsole(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  need(env);
  uint32_t index = u32(info[0]);
  std::string text;
  std::vector<char> buf(256 * 1024);
  for (;;) {
    unsigned int n = static_cast<unsigned int>(buf.size());
    if (fn.xc_readconsolering(xch, buf.data(), &n, 0, 1, &index) != 0) throw errnoError(env, "xc_readconsolering", errno);
    text.append(buf.data(), n);
    if (n < buf.size()) break;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("text", Napi::String::New(env, text));
  o.Set("index", Napi::Number::New(env, index));
  return o;
}

// domainInfo(domid): XEN_DOMCTL_getdomaininfo's flags (public/domctl.h, interface 0x15:
// struct xen_domctl_getdomaininfo has domid_t domain at 0 and uint32_t flags at 4), or
// null when no such domain exists.
Napi::Value DomainInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  need(env);
  uint32_t domid = u32(info[0]);
  alignas(8) uint8_t buf[1024] = {};  // one xc_domaininfo_t (112 bytes in 4.17), with room
  int n = fn.xc_getinfolist(xch, domid, 1, buf);
  if (n < 0) throw errnoError(env, "xc_domain_getinfolist", errno);
  uint16_t got;
  uint32_t flags;
  memcpy(&got, buf, 2);
  memcpy(&flags, buf + 4, 4);
  if (n == 0 || got != domid) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("flags", Napi::Number::New(env, flags));
  return o;
}

// vcpuInfo(domid, vcpu): XEN_DOMCTL_getvcpuinfo (struct xen_domctl_getvcpuinfo: vcpu u32,
// then the u8s online, blocked, running). blocked is the vCPU's _VPF_blocked.
Napi::Value VcpuInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  need(env);
  alignas(8) uint8_t buf[64] = {};
  uint32_t vcpu = u32(info[1]);
  memcpy(buf, &vcpu, 4);
  if (fn.xc_vcpu_getinfo(xch, u32(info[0]), vcpu, buf) != 0) throw errnoError(env, "xc_vcpu_getinfo", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("online", Napi::Boolean::New(env, buf[4] != 0));
  o.Set("blocked", Napi::Boolean::New(env, buf[5] != 0));
  o.Set("running", Napi::Boolean::New(env, buf[6] != 0));
  return o;
}

// vcpuRax(domid, vcpu): rax of an HVM vCPU's saved state (HVM_SAVE_CODE(CPU) = 2,
// struct hvm_hw_cpu: fpu_regs[512], then rax), as a BigInt.
Napi::Value VcpuRax(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  need(env);
  std::vector<uint8_t> buf(4096);
  if (fn.xc_hvm_getcontext_partial(xch, u32(info[0]), 2, static_cast<uint16_t>(u32(info[1])), buf.data(),
                                   static_cast<uint32_t>(buf.size())) != 0) {
    throw errnoError(env, "xc_domain_hvm_getcontext_partial", errno);
  }
  uint64_t rax;
  memcpy(&rax, buf.data() + 512, 8);
  return Napi::BigInt::New(env, rax);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("domainInfo", Napi::Function::New(env, DomainInfo));
  exports.Set("vcpuInfo", Napi::Function::New(env, VcpuInfo));
  exports.Set("vcpuRax", Napi::Function::New(env, VcpuRax));
  exports.Set("debugKeys", Napi::Function::New(env, DebugKeys));
  exports.Set("readConsole", Napi::Function::New(env, ReadConsole));
  exports.Set("available", Napi::Function::New(env, Available));
  exports.Set("Mapping", Mapping::Init(env));
  exports.Set("pause", Napi::Function::New(env, Pause));
  exports.Set("evtchn", Napi::Function::New(env, Evtchn));
  exports.Set("gntMap", Napi::Function::New(env, GntMap));
  exports.Set("gntUnmap", Napi::Function::New(env, GntUnmap));
  exports.Set("gntSetMax", Napi::Function::New(env, GntSetMax));
  return exports;
}

}  // namespace

NODE_API_MODULE(xconf_xen, Init)
