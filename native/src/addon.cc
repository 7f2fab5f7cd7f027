// xconf KVM addon: a thin node-addon-api layer over /dev/kvm ioctls.
//
// Objects: System (/dev/kvm), Vm, Vcpu, Eventfd. Each owns its descriptors
// and mappings; close() releases them, and so does garbage collection. A Vcpu
// keeps its VM's core (fd and guest memory) alive while it exists, so memory
// is never unmapped under a vCPU. Structs cross the boundary as raw bytes in
// the kernel's layout; harness/drivers/kvm/addon.ts encodes and decodes them.

#include <fcntl.h>
#include <linux/kvm.h>
#include <napi.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "kcov.h"
#include "run_loop.h"
#include "util.h"

namespace xconf {

// kvm_cpuid2 and kvm_irq_routing end in __DECLARE_FLEX_ARRAY, which g++
// lays out with an extra 4 bytes (an empty struct has size 1 in C++), and
// the ioctl numbers derived from them then encode the wrong size. Use C
// layouts: an 8-byte header followed by the entries.
struct CpuidHeader {
  uint32_t nent;
  uint32_t padding;
};
struct RoutingHeader {
  uint32_t nr;
  uint32_t flags;
};
static_assert(sizeof(CpuidHeader) == 8 && sizeof(RoutingHeader) == 8, "C layout");
constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
constexpr unsigned long kSetGsiRouting = _IOW(KVMIO, 0x6a, RoutingHeader);

static_assert(sizeof(kvm_regs) == 144, "kvm_regs");
static_assert(sizeof(kvm_sregs) == 312, "kvm_sregs");
static_assert(sizeof(kvm_cpuid_entry2) == 40, "kvm_cpuid_entry2");
static_assert(sizeof(kvm_xen_hvm_config) == 56, "kvm_xen_hvm_config");
static_assert(sizeof(kvm_xen_hvm_attr) == 72, "kvm_xen_hvm_attr");
static_assert(sizeof(kvm_xen_vcpu_attr) == 72, "kvm_xen_vcpu_attr");
static_assert(sizeof(kvm_irq_routing_entry) == 48, "kvm_irq_routing_entry");

// ---------------------------------------------------------------- VM core --

struct Slot {
  uint32_t slot;
  uint32_t flags;
  uint64_t gpa;
  uint64_t size;
  void* hva;
};

struct VmCore {
  int fd = -1;
  int vcpuMmapSize = 0;
  std::mutex mu;  // guards slots (memory can be touched from JS while vCPUs run elsewhere)
  std::vector<Slot> slots;

  void Close() {
    std::lock_guard<std::mutex> lock(mu);
    for (Slot& s : slots) munmap(s.hva, s.size);
    slots.clear();
    if (fd >= 0) {
      close(fd);
      fd = -1;
    }
  }
  ~VmCore() { Close(); }

  // The host address of [gpa, gpa+len) if it lies inside one slot.
  uint8_t* Translate(uint64_t gpa, uint64_t len) {
    for (Slot& s : slots) {
      if (gpa >= s.gpa && gpa - s.gpa <= s.size && len <= s.size - (gpa - s.gpa))
        return static_cast<uint8_t*>(s.hva) + (gpa - s.gpa);
    }
    return nullptr;
  }
};

static Napi::FunctionReference* g_vmCtor = nullptr;
static Napi::FunctionReference* g_vcpuCtor = nullptr;

// ------------------------------------------------------------------ Vcpu --

class Vcpu : public Napi::ObjectWrap<Vcpu> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Vcpu",
                       {
                           InstanceAccessor<&Vcpu::GetId>("id"),
                           InstanceAccessor<&Vcpu::GetFd>("fd"),
                           InstanceAccessor<&Vcpu::GetClosed>("closed"),
                           InstanceAccessor<&Vcpu::GetBusy>("busy"),
                           InstanceMethod<&Vcpu::GetRegs>("getRegs"),
                           InstanceMethod<&Vcpu::SetRegs>("setRegs"),
                           InstanceMethod<&Vcpu::GetSregs>("getSregs"),
                           InstanceMethod<&Vcpu::SetSregs>("setSregs"),
                           InstanceMethod<&Vcpu::SetCpuid>("setCpuid"),
                           InstanceMethod<&Vcpu::GetMpState>("getMpState"),
                           InstanceMethod<&Vcpu::SetMpState>("setMpState"),
                           InstanceMethod<&Vcpu::XenGetAttr>("xenGetAttr"),
                           InstanceMethod<&Vcpu::XenSetAttr>("xenSetAttr"),
                           InstanceMethod<&Vcpu::Run>("run"),
                           InstanceMethod<&Vcpu::RunAsync>("runAsync"),
                           InstanceMethod<&Vcpu::RunOnce>("runOnce"),
                           InstanceMethod<&Vcpu::ExitInfo>("exitInfo"),
                           InstanceMethod<&Vcpu::SetXenResult>("setXenResult"),
                           InstanceMethod<&Vcpu::Close>("close"),
                       });
  }

  explicit Vcpu(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Vcpu>(info) {
    // Only created by Vm.createVcpu, which passes an External with the core.
    if (info.Length() != 1 || !info[0].IsExternal())
      throw ArgError(info.Env(), "Vcpu objects are created by Vm.createVcpu()");
    core_ = *info[0].As<Napi::External<std::shared_ptr<VcpuCore>>>().Data();
  }

  std::shared_ptr<VcpuCore> core_;

 private:
  VcpuCore& Open(Napi::Env env, const char* op) {
    if (!core_ || core_->fd < 0) throw SysError(env, EBADF, op, "the vCPU is closed");
    return *core_;
  }
  VcpuCore& Idle(Napi::Env env, const char* op) {
    VcpuCore& c = Open(env, op);
    if (c.busy.load()) throw SysError(env, EBUSY, op, "the vCPU is running");
    return c;
  }

  Napi::Value GetId(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), core_ ? core_->id : 0);
  }
  Napi::Value GetFd(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), core_ ? core_->fd : -1);
  }
  Napi::Value GetClosed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), !core_ || core_->fd < 0);
  }
  Napi::Value GetBusy(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), core_ && core_->busy.load());
  }

  template <typename T>
  Napi::Value GetStruct(const Napi::CallbackInfo& info, unsigned long req, const char* name) {
    Napi::Env env = info.Env();
    VcpuCore& c = Idle(env, name);
    T v;
    std::memset(&v, 0, sizeof v);
    if (ioctl(c.fd, req, &v) < 0) throw SysError(env, errno, name);
    return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t*>(&v), sizeof v);
  }
  template <typename T>
  Napi::Value SetStruct(const Napi::CallbackInfo& info, unsigned long req, const char* name) {
    Napi::Env env = info.Env();
    Napi::Uint8Array b = ArgStruct(info, 0, "data", sizeof(T));
    VcpuCore& c = Idle(env, name);
    T v;
    std::memcpy(&v, b.Data(), sizeof v);
    if (ioctl(c.fd, req, &v) < 0) throw SysError(env, errno, name);
    return env.Undefined();
  }

  Napi::Value GetRegs(const Napi::CallbackInfo& info) {
    return GetStruct<kvm_regs>(info, KVM_GET_REGS, "ioctl(KVM_GET_REGS)");
  }
  Napi::Value SetRegs(const Napi::CallbackInfo& info) {
    return SetStruct<kvm_regs>(info, KVM_SET_REGS, "ioctl(KVM_SET_REGS)");
  }
  Napi::Value GetSregs(const Napi::CallbackInfo& info) {
    return GetStruct<kvm_sregs>(info, KVM_GET_SREGS, "ioctl(KVM_GET_SREGS)");
  }
  Napi::Value SetSregs(const Napi::CallbackInfo& info) {
    return SetStruct<kvm_sregs>(info, KVM_SET_SREGS, "ioctl(KVM_SET_SREGS)");
  }

  // setCpuid(entries: Uint8Array of n * sizeof(kvm_cpuid_entry2))
  Napi::Value SetCpuid(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Uint8Array b = ArgBytes(info, 0, "entries");
    const size_t esz = sizeof(kvm_cpuid_entry2);
    if (b.ByteLength() % esz != 0 || b.ByteLength() / esz > 4096)
      throw ArgError(env, "entries must be a whole number (at most 4096) of kvm_cpuid_entry2", true);
    VcpuCore& c = Idle(env, "ioctl(KVM_SET_CPUID2)");
    size_t n = b.ByteLength() / esz;
    std::vector<uint8_t> buf(sizeof(CpuidHeader) + n * esz);
    auto* hdr = reinterpret_cast<CpuidHeader*>(buf.data());
    hdr->nent = static_cast<uint32_t>(n);
    std::memcpy(buf.data() + sizeof(CpuidHeader), b.Data(), n * esz);
    if (ioctl(c.fd, kSetCpuid2, buf.data()) < 0) throw SysError(env, errno, "ioctl(KVM_SET_CPUID2)");
    return env.Undefined();
  }

  Napi::Value GetMpState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VcpuCore& c = Idle(env, "ioctl(KVM_GET_MP_STATE)");
    kvm_mp_state s{};
    if (ioctl(c.fd, KVM_GET_MP_STATE, &s) < 0) throw SysError(env, errno, "ioctl(KVM_GET_MP_STATE)");
    return Napi::Number::New(env, s.mp_state);
  }
  Napi::Value SetMpState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t state = ArgU32(info, 0, "state", 255);
    VcpuCore& c = Idle(env, "ioctl(KVM_SET_MP_STATE)");
    kvm_mp_state s{state};
    if (ioctl(c.fd, KVM_SET_MP_STATE, &s) < 0) throw SysError(env, errno, "ioctl(KVM_SET_MP_STATE)");
    return env.Undefined();
  }

  Napi::Value XenGetAttr(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Uint8Array b = ArgStruct(info, 0, "attr", sizeof(kvm_xen_vcpu_attr));
    VcpuCore& c = Idle(env, "ioctl(KVM_XEN_VCPU_GET_ATTR)");
    kvm_xen_vcpu_attr a;
    std::memcpy(&a, b.Data(), sizeof a);
    if (ioctl(c.fd, KVM_XEN_VCPU_GET_ATTR, &a) < 0) throw SysError(env, errno, "ioctl(KVM_XEN_VCPU_GET_ATTR)");
    return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t*>(&a), sizeof a);
  }
  Napi::Value XenSetAttr(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Uint8Array b = ArgStruct(info, 0, "attr", sizeof(kvm_xen_vcpu_attr));
    VcpuCore& c = Idle(env, "ioctl(KVM_XEN_VCPU_SET_ATTR)");
    kvm_xen_vcpu_attr a;
    std::memcpy(&a, b.Data(), sizeof a);
    if (ioctl(c.fd, KVM_XEN_VCPU_SET_ATTR, &a) < 0) throw SysError(env, errno, "ioctl(KVM_XEN_VCPU_SET_ATTR)");
    return env.Undefined();
  }

 public:
  // Decode the kvm_run exit data of the last exit into a plain object.
  static Napi::Object DecodeExit(Napi::Env env, const VcpuCore& c) {
    Napi::Object o = Napi::Object::New(env);
    const kvm_run* run = c.run;
    uint32_t reason = c.lastReason == UINT32_MAX ? run->exit_reason : c.lastReason;
    o.Set("reason", Napi::Number::New(env, reason));
    switch (reason) {
      case KVM_EXIT_IO: {
        Napi::Object io = Napi::Object::New(env);
        io.Set("direction", run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in");
        io.Set("size", Napi::Number::New(env, run->io.size));
        io.Set("port", Napi::Number::New(env, run->io.port));
        io.Set("count", Napi::Number::New(env, run->io.count));
        size_t n = static_cast<size_t>(run->io.size) * run->io.count;
        if (run->io.data_offset + n <= c.runSize)
          io.Set("data", Napi::Buffer<uint8_t>::Copy(
                             env, reinterpret_cast<const uint8_t*>(run) + run->io.data_offset, n));
        o.Set("io", io);
        break;
      }
      case KVM_EXIT_MMIO: {
        Napi::Object m = Napi::Object::New(env);
        m.Set("physAddr", Big(env, run->mmio.phys_addr));
        m.Set("len", Napi::Number::New(env, run->mmio.len));
        m.Set("isWrite", Napi::Boolean::New(env, run->mmio.is_write != 0));
        m.Set("data", Napi::Buffer<uint8_t>::Copy(env, run->mmio.data, std::min<uint32_t>(run->mmio.len, 8)));
        o.Set("mmio", m);
        break;
      }
      case KVM_EXIT_XEN: {
        Napi::Object x = Napi::Object::New(env);
        x.Set("type", Napi::Number::New(env, run->xen.type));
        x.Set("longmode", Napi::Number::New(env, run->xen.u.hcall.longmode));
        x.Set("cpl", Napi::Number::New(env, run->xen.u.hcall.cpl));
        x.Set("input", Big(env, run->xen.u.hcall.input));
        x.Set("result", Big(env, run->xen.u.hcall.result));
        Napi::Array p = Napi::Array::New(env, 6);
        for (uint32_t i = 0; i < 6; i++) p.Set(i, Big(env, run->xen.u.hcall.params[i]));
        x.Set("params", p);
        o.Set("xen", x);
        break;
      }
      case KVM_EXIT_FAIL_ENTRY: {
        Napi::Object f = Napi::Object::New(env);
        f.Set("hardwareReason", Big(env, run->fail_entry.hardware_entry_failure_reason));
        f.Set("cpu", Napi::Number::New(env, run->fail_entry.cpu));
        o.Set("failEntry", f);
        break;
      }
      case KVM_EXIT_INTERNAL_ERROR: {
        Napi::Object ie = Napi::Object::New(env);
        ie.Set("suberror", Napi::Number::New(env, run->internal.suberror));
        uint32_t n = std::min<uint32_t>(run->internal.ndata, 16);
        Napi::Array d = Napi::Array::New(env, n);
        for (uint32_t i = 0; i < n; i++) d.Set(i, Big(env, run->internal.data[i]));
        ie.Set("data", d);
        o.Set("internal", ie);
        break;
      }
      case KVM_EXIT_SYSTEM_EVENT: {
        Napi::Object se = Napi::Object::New(env);
        se.Set("type", Napi::Number::New(env, run->system_event.type));
        uint32_t n = std::min<uint32_t>(run->system_event.ndata, 16);
        Napi::Array d = Napi::Array::New(env, n);
        for (uint32_t i = 0; i < n; i++) d.Set(i, Big(env, run->system_event.data[i]));
        se.Set("data", d);
        o.Set("systemEvent", se);
        break;
      }
      case KVM_EXIT_HYPERCALL: {
        Napi::Object h = Napi::Object::New(env);
        h.Set("nr", Big(env, run->hypercall.nr));
        Napi::Array a = Napi::Array::New(env, 6);
        for (uint32_t i = 0; i < 6; i++) a.Set(i, Big(env, run->hypercall.args[i]));
        h.Set("args", a);
        o.Set("hypercall", h);
        break;
      }
      case KVM_EXIT_EXCEPTION: {
        Napi::Object e = Napi::Object::New(env);
        e.Set("exception", Napi::Number::New(env, run->ex.exception));
        e.Set("errorCode", Napi::Number::New(env, run->ex.error_code));
        o.Set("exception", e);
        break;
      }
      default:
        break;
    }
    return o;
  }

  static Napi::Object BuildOutcome(Napi::Env env, const VcpuCore& c, const RunOutcome& out) {
    static const char* kinds[] = {"done", "yield", "fault", "timeout", "exit"};
    Napi::Object o = Napi::Object::New(env);
    o.Set("kind", kinds[static_cast<int>(out.kind)]);
    o.Set("value", Napi::Number::New(env, out.value));
    o.Set("runs", Napi::Number::New(env, static_cast<double>(out.runs)));
    Napi::Array logs = Napi::Array::New(env, out.logs.size());
    for (size_t i = 0; i < out.logs.size(); i++) logs.Set(static_cast<uint32_t>(i), out.logs[i]);
    o.Set("logs", logs);
    o.Set("logsDropped", Napi::Number::New(env, static_cast<double>(out.logsDropped)));
    if (out.kind == RunKind::Exit) o.Set("exit", DecodeExit(env, c));
    return o;
  }

 private:
  struct RunArgs {
    uint32_t timeoutMs;
    uint32_t portBase;
  };
  static RunArgs ParseRunArgs(const Napi::CallbackInfo& info) {
    return RunArgs{ArgU32(info, 0, "timeoutMs", 86400000u), ArgU32(info, 1, "portBase", 0xfffc)};
  }

  // run(timeoutMs, portBase): run until the guest needs JavaScript.
  Napi::Value Run(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RunArgs a = ParseRunArgs(info);
    VcpuCore& c = Idle(env, "ioctl(KVM_RUN)");
    c.busy = true;
    RunOutcome out;
    RunLoop(c, a.timeoutMs, a.portBase, out);
    c.busy = false;
    if (out.err != 0) throw SysError(env, out.err, out.syscall);
    return BuildOutcome(env, c, out);
  }

  class RunWorker : public Napi::AsyncWorker {
   public:
    RunWorker(Napi::Env env, std::shared_ptr<VcpuCore> core, RunArgs args)
        : Napi::AsyncWorker(env, "xconf:kvm-run"), core_(std::move(core)), args_(args),
          deferred_(Napi::Promise::Deferred::New(env)) {}
    Napi::Promise Promise() { return deferred_.Promise(); }
    void Execute() override { RunLoop(*core_, args_.timeoutMs, args_.portBase, out_); }
    void OnOK() override {
      Napi::Env env = Env();
      core_->busy = false;
      if (out_.err != 0) {
        deferred_.Reject(SysError(env, out_.err, out_.syscall).Value());
        return;
      }
      deferred_.Resolve(BuildOutcome(env, *core_, out_));
    }
    void OnError(const Napi::Error& e) override {
      core_->busy = false;
      deferred_.Reject(e.Value());
    }

   private:
    std::shared_ptr<VcpuCore> core_;
    RunArgs args_;
    RunOutcome out_;
    Napi::Promise::Deferred deferred_;
  };

  // runAsync(timeoutMs, portBase): the same loop on a libuv pool thread, so
  // several vCPUs can run at once. Resolves with the same object as run().
  Napi::Value RunAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RunArgs a = ParseRunArgs(info);
    Idle(env, "ioctl(KVM_RUN)");
    core_->busy = true;
    auto* w = new RunWorker(env, core_, a);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  // runOnce(): one KVM_RUN, no timer, no port protocol; returns the exit
  // reason (KVM_EXIT_INTR on EINTR). For benchmarks and single stepping.
  Napi::Value RunOnce(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VcpuCore& c = Idle(env, "ioctl(KVM_RUN)");
    c.run->immediate_exit = 0;
    if (ioctl(c.fd, KVM_RUN, 0) < 0) {
      int e = errno;
      if (e != EINTR) {
        c.lastReason = UINT32_MAX;
        throw SysError(env, e, "ioctl(KVM_RUN)");
      }
      c.lastReason = KVM_EXIT_INTR;
    } else {
      c.lastReason = c.run->exit_reason;
    }
    return Napi::Number::New(env, c.lastReason);
  }

  Napi::Value ExitInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VcpuCore& c = Idle(env, "exitInfo");
    return DecodeExit(env, c);
  }

  // setXenResult(value): the answer to a KVM_EXIT_XEN hypercall; KVM puts it
  // in the guest's rax on the next KVM_RUN.
  Napi::Value SetXenResult(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t v = ArgU64(info, 0, "result");
    VcpuCore& c = Idle(env, "setXenResult");
    if (c.lastReason != KVM_EXIT_XEN)
      throw SysError(env, EINVAL, "setXenResult", "the last exit was not KVM_EXIT_XEN");
    c.run->xen.u.hcall.result = v;
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!core_) return env.Undefined();
    if (core_->busy.load()) throw SysError(env, EBUSY, "close", "the vCPU is running");
    core_->Close();
    return env.Undefined();
  }
};

// -------------------------------------------------------------------- Vm --

class Vm : public Napi::ObjectWrap<Vm> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Vm",
                       {
                           InstanceAccessor<&Vm::GetFd>("fd"),
                           InstanceAccessor<&Vm::GetClosed>("closed"),
                           InstanceMethod<&Vm::CheckExtension>("checkExtension"),
                           InstanceMethod<&Vm::EnableCap>("enableCap"),
                           InstanceMethod<&Vm::SetTssAddr>("setTssAddr"),
                           InstanceMethod<&Vm::CreateIrqchip>("createIrqchip"),
                           InstanceMethod<&Vm::SetMemory>("setMemory"),
                           InstanceMethod<&Vm::RemoveMemory>("removeMemory"),
                           InstanceMethod<&Vm::Read>("read"),
                           InstanceMethod<&Vm::ReadInto>("readInto"),
                           InstanceMethod<&Vm::Write>("write"),
                           InstanceMethod<&Vm::Hva>("hva"),
                           InstanceMethod<&Vm::XenHvmConfig>("xenHvmConfig"),
                           InstanceMethod<&Vm::XenGetAttr>("xenGetAttr"),
                           InstanceMethod<&Vm::XenSetAttr>("xenSetAttr"),
                           InstanceMethod<&Vm::XenEvtchnSend>("xenEvtchnSend"),
                           InstanceMethod<&Vm::SetGsiRouting>("setGsiRouting"),
                           InstanceMethod<&Vm::Irqfd>("irqfd"),
                           InstanceMethod<&Vm::CreateVcpu>("createVcpu"),
                           InstanceMethod<&Vm::Close>("close"),
                           InstanceMethod<&Vm::CloseInBackground>("closeInBackground"),
                       });
  }

  explicit Vm(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Vm>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw ArgError(info.Env(), "Vm objects are created by System.createVm()");
    core_ = *info[0].As<Napi::External<std::shared_ptr<VmCore>>>().Data();
  }

 private:
  std::shared_ptr<VmCore> core_;
  std::vector<std::shared_ptr<VcpuCore>> vcpus_;

  VmCore& Open(Napi::Env env, const char* op) {
    if (!core_ || core_->fd < 0) throw SysError(env, EBADF, op, "the VM is closed");
    return *core_;
  }
  bool AnyBusy() {
    for (auto& v : vcpus_)
      if (v->busy.load()) return true;
    return false;
  }

  Napi::Value GetFd(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), core_ ? core_->fd : -1);
  }
  Napi::Value GetClosed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), !core_ || core_->fd < 0);
  }

  Napi::Value CheckExtension(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t cap = ArgU32(info, 0, "cap", INT32_MAX);
    VmCore& vm = Open(env, "ioctl(KVM_CHECK_EXTENSION)");
    int r = ioctl(vm.fd, KVM_CHECK_EXTENSION, cap);
    if (r < 0) throw SysError(env, errno, "ioctl(KVM_CHECK_EXTENSION)");
    return Napi::Number::New(env, r);
  }

  // enableCap(cap, flags, args: Uint8Array(32) = four u64)
  Napi::Value EnableCap(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t cap = ArgU32(info, 0, "cap");
    uint32_t flags = ArgU32(info, 1, "flags");
    Napi::Uint8Array args = ArgStruct(info, 2, "args", 32);
    VmCore& vm = Open(env, "ioctl(KVM_ENABLE_CAP)");
    kvm_enable_cap ec;
    std::memset(&ec, 0, sizeof ec);
    ec.cap = cap;
    ec.flags = flags;
    std::memcpy(ec.args, args.Data(), 32);
    if (ioctl(vm.fd, KVM_ENABLE_CAP, &ec) < 0) throw SysError(env, errno, "ioctl(KVM_ENABLE_CAP)");
    return env.Undefined();
  }

  Napi::Value SetTssAddr(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t addr = ArgU32(info, 0, "addr");
    VmCore& vm = Open(env, "ioctl(KVM_SET_TSS_ADDR)");
    if (ioctl(vm.fd, KVM_SET_TSS_ADDR, static_cast<unsigned long>(addr)) < 0)
      throw SysError(env, errno, "ioctl(KVM_SET_TSS_ADDR)");
    return env.Undefined();
  }

  Napi::Value CreateIrqchip(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VmCore& vm = Open(env, "ioctl(KVM_CREATE_IRQCHIP)");
    if (ioctl(vm.fd, KVM_CREATE_IRQCHIP, 0) < 0) throw SysError(env, errno, "ioctl(KVM_CREATE_IRQCHIP)");
    return env.Undefined();
  }

  // setMemory(slot, gpa, size, flags): maps anonymous memory and registers
  // it; returns the host virtual address as a bigint.
  Napi::Value SetMemory(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t slot = ArgU32(info, 0, "slot", 0x7fff);
    uint64_t gpa = ArgU64(info, 1, "gpa", (1ull << 52) - 1);
    uint64_t size = ArgU64(info, 2, "size", 1ull << 40);
    uint32_t flags = ArgU32(info, 3, "flags", 0xff);
    long page = sysconf(_SC_PAGESIZE);
    if (size == 0 || size % page != 0 || gpa % page != 0)
      throw ArgError(env, "gpa and size must be page aligned and size non-zero", true);
    VmCore& vm = Open(env, "ioctl(KVM_SET_USER_MEMORY_REGION)");
    std::lock_guard<std::mutex> lock(vm.mu);
    for (const Slot& s : vm.slots) {
      if (s.slot == slot)
        throw SysError(env, EEXIST, "ioctl(KVM_SET_USER_MEMORY_REGION)", "slot already in use");
    }
    void* hva = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (hva == MAP_FAILED) throw SysError(env, errno, "mmap");
    kvm_userspace_memory_region r{};
    r.slot = slot;
    r.flags = flags;
    r.guest_phys_addr = gpa;
    r.memory_size = size;
    r.userspace_addr = reinterpret_cast<uint64_t>(hva);
    if (ioctl(vm.fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
      int e = errno;
      munmap(hva, size);
      throw SysError(env, e, "ioctl(KVM_SET_USER_MEMORY_REGION)");
    }
    vm.slots.push_back(Slot{slot, flags, gpa, size, hva});
    return Big(env, reinterpret_cast<uint64_t>(hva));
  }

  Napi::Value RemoveMemory(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t slot = ArgU32(info, 0, "slot", 0x7fff);
    VmCore& vm = Open(env, "ioctl(KVM_SET_USER_MEMORY_REGION)");
    if (AnyBusy()) throw SysError(env, EBUSY, "ioctl(KVM_SET_USER_MEMORY_REGION)", "a vCPU is running");
    std::lock_guard<std::mutex> lock(vm.mu);
    auto it = std::find_if(vm.slots.begin(), vm.slots.end(), [&](const Slot& s) { return s.slot == slot; });
    if (it == vm.slots.end())
      throw SysError(env, ENOENT, "ioctl(KVM_SET_USER_MEMORY_REGION)", "no such slot");
    kvm_userspace_memory_region r{};
    r.slot = slot;
    r.guest_phys_addr = it->gpa;
    r.memory_size = 0;
    if (ioctl(vm.fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
      throw SysError(env, errno, "ioctl(KVM_SET_USER_MEMORY_REGION)");
    munmap(it->hva, it->size);
    vm.slots.erase(it);
    return env.Undefined();
  }

  // read(gpa, len) -> Buffer (a copy). The range must lie inside one slot.
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t gpa = ArgU64(info, 0, "gpa");
    uint64_t len = ArgU64(info, 1, "len", 1ull << 30);
    VmCore& vm = Open(env, "read");
    std::lock_guard<std::mutex> lock(vm.mu);
    uint8_t* p = vm.Translate(gpa, len);
    if (p == nullptr) throw ArgError(env, "guest range is not inside one memory slot", true);
    return Napi::Buffer<uint8_t>::Copy(env, p, len);
  }

  // readInto(gpa, dst): fills dst (a Uint8Array the caller owns) from guest memory.
  // No allocation here: the hot path of the VMM layer reads small structs per exit.
  Napi::Value ReadInto(const Napi::CallbackInfo& info) { return Copy(info, "readInto", "dst", false); }

  Napi::Value Write(const Napi::CallbackInfo& info) { return Copy(info, "write", "data", true); }

  // Between guest memory at gpa (arg 0) and the caller's bytes (arg 1), either way.
  Napi::Value Copy(const Napi::CallbackInfo& info, const char* what, const char* bytesName, bool toGuest) {
    Napi::Env env = info.Env();
    uint64_t gpa = ArgU64(info, 0, "gpa");
    Napi::Uint8Array bytes = ArgBytes(info, 1, bytesName);
    VmCore& vm = Open(env, what);
    std::lock_guard<std::mutex> lock(vm.mu);
    uint8_t* p = vm.Translate(gpa, bytes.ByteLength());
    if (p == nullptr) throw ArgError(env, "guest range is not inside one memory slot", true);
    if (toGuest) std::memcpy(p, bytes.Data(), bytes.ByteLength());
    else std::memcpy(bytes.Data(), p, bytes.ByteLength());
    return env.Undefined();
  }

  Napi::Value Hva(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t gpa = ArgU64(info, 0, "gpa");
    VmCore& vm = Open(env, "hva");
    std::lock_guard<std::mutex> lock(vm.mu);
    uint8_t* p = vm.Translate(gpa, 1);
    if (p == nullptr) throw ArgError(env, "gpa is not inside a memory slot", true);
    return Big(env, reinterpret_cast<uint64_t>(p));
  }

  Napi::Value XenHvmConfig(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Uint8Array b = ArgStruct(info, 0, "config", sizeof(kvm_xen_hvm_config));
    VmCore& vm = Open(env, "ioctl(KVM_XEN_HVM_CONFIG)");
    kvm_xen_hvm_config c;
    std::memcpy(&c, b.Data(), sizeof c);
    if (ioctl(vm.fd, KVM_XEN_HVM_CONFIG, &c) < 0) throw SysError(env, errno, "ioctl(KVM_XEN_HVM_CONFIG)");
    return env.Undefined();
  }

  Napi::Value XenGetAttr(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Uint8Array b = ArgStruct(info, 0, "attr", sizeof(kvm_xen_hvm_attr));
    VmCore& vm = Open(env, "ioctl(KVM_XEN_HVM_GET_ATTR)");
    kvm_xen_hvm_attr a;
    std::memcpy(&a, b.Data(), sizeof a);
    if (ioctl(vm.fd, KVM_XEN_HVM_GET_ATTR, &a) < 0) throw SysError(env, errno, "ioctl(KVM_XEN_HVM_GET_ATTR)");
    return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t*>(&a), sizeof a);
  }

  Napi::Value XenSetAttr(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Uint8Array b = ArgStruct(info, 0, "attr", sizeof(kvm_xen_hvm_attr));
    VmCore& vm = Open(env, "ioctl(KVM_XEN_HVM_SET_ATTR)");
    kvm_xen_hvm_attr a;
    std::memcpy(&a, b.Data(), sizeof a);
    if (ioctl(vm.fd, KVM_XEN_HVM_SET_ATTR, &a) < 0) throw SysError(env, errno, "ioctl(KVM_XEN_HVM_SET_ATTR)");
    return env.Undefined();
  }

  // xenEvtchnSend(port, vcpu, priority)
  Napi::Value XenEvtchnSend(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    kvm_irq_routing_xen_evtchn e{};
    e.port = ArgU32(info, 0, "port");
    e.vcpu = ArgU32(info, 1, "vcpu");
    e.priority = ArgU32(info, 2, "priority");
    VmCore& vm = Open(env, "ioctl(KVM_XEN_HVM_EVTCHN_SEND)");
    if (ioctl(vm.fd, KVM_XEN_HVM_EVTCHN_SEND, &e) < 0) throw SysError(env, errno, "ioctl(KVM_XEN_HVM_EVTCHN_SEND)");
    return env.Undefined();
  }

  // setGsiRouting(entries: Uint8Array of n * sizeof(kvm_irq_routing_entry))
  Napi::Value SetGsiRouting(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Uint8Array b = ArgBytes(info, 0, "entries");
    const size_t esz = sizeof(kvm_irq_routing_entry);
    if (b.ByteLength() % esz != 0 || b.ByteLength() / esz > 4096)
      throw ArgError(env, "entries must be a whole number (at most 4096) of kvm_irq_routing_entry", true);
    VmCore& vm = Open(env, "ioctl(KVM_SET_GSI_ROUTING)");
    size_t n = b.ByteLength() / esz;
    std::vector<uint8_t> buf(sizeof(RoutingHeader) + n * esz);
    auto* r = reinterpret_cast<RoutingHeader*>(buf.data());
    r->nr = static_cast<uint32_t>(n);
    r->flags = 0;
    std::memcpy(buf.data() + sizeof(RoutingHeader), b.Data(), n * esz);
    if (ioctl(vm.fd, kSetGsiRouting, buf.data()) < 0) throw SysError(env, errno, "ioctl(KVM_SET_GSI_ROUTING)");
    return env.Undefined();
  }

  // irqfd(fd, gsi, flags, resamplefd)
  Napi::Value Irqfd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    kvm_irqfd f{};
    f.fd = static_cast<uint32_t>(ArgI32(info, 0, "fd"));
    f.gsi = ArgU32(info, 1, "gsi");
    f.flags = ArgU32(info, 2, "flags");
    f.resamplefd = static_cast<uint32_t>(ArgI32(info, 3, "resamplefd"));
    VmCore& vm = Open(env, "ioctl(KVM_IRQFD)");
    if (ioctl(vm.fd, KVM_IRQFD, &f) < 0) throw SysError(env, errno, "ioctl(KVM_IRQFD)");
    return env.Undefined();
  }

  Napi::Value CreateVcpu(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t id = ArgU32(info, 0, "id", 4095);
    VmCore& vm = Open(env, "ioctl(KVM_CREATE_VCPU)");
    int fd = ioctl(vm.fd, KVM_CREATE_VCPU, static_cast<unsigned long>(id));
    if (fd < 0) throw SysError(env, errno, "ioctl(KVM_CREATE_VCPU)");
    auto core = std::make_shared<VcpuCore>();
    core->fd = fd;
    core->id = id;
    core->vm = core_;
    core->runSize = static_cast<size_t>(vm.vcpuMmapSize);
    void* run = mmap(nullptr, core->runSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (run == MAP_FAILED) {
      int e = errno;
      core->Close();
      throw SysError(env, e, "mmap(kvm_run)");
    }
    core->run = static_cast<kvm_run*>(run);
    vcpus_.push_back(core);
    Napi::External<std::shared_ptr<VcpuCore>> ext = Napi::External<std::shared_ptr<VcpuCore>>::New(
        env, new std::shared_ptr<VcpuCore>(core),
        [](Napi::Env, std::shared_ptr<VcpuCore>* p) { delete p; });
    return g_vcpuCtor->New({ext});
  }

  // close(): closes the VM's vCPUs, unmaps its memory and closes its fd.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!core_) return env.Undefined();
    if (AnyBusy()) throw SysError(env, EBUSY, "close", "a vCPU of this VM is running");
    for (auto& v : vcpus_) v->Close();
    vcpus_.clear();
    core_->Close();
    return env.Undefined();
  }

  // closeInBackground(): close() at once for JavaScript (the VM and its vCPUs read as
  // closed), but the unmaps and closes, on the last of which the kernel tears the VM
  // down (milliseconds, more under emulation), run on a detached thread.
  Napi::Value CloseInBackground(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!core_) return env.Undefined();
    if (AnyBusy()) throw SysError(env, EBUSY, "close", "a vCPU of this VM is running");
    auto maps = std::make_unique<std::vector<std::pair<void*, size_t>>>();
    auto fds = std::make_unique<std::vector<int>>();
    for (auto& v : vcpus_) {
      if (v->run) maps->emplace_back(v->run, v->runSize);
      if (v->fd >= 0) fds->push_back(v->fd);
      v->run = nullptr;
      v->fd = -1;
      v->vm.reset();
    }
    vcpus_.clear();
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      for (Slot& s : core_->slots) maps->emplace_back(s.hva, s.size);
      core_->slots.clear();
      if (core_->fd >= 0) fds->push_back(core_->fd);
      core_->fd = -1;
    }
    std::thread([maps = std::move(maps), fds = std::move(fds)]() {
      for (auto& m : *maps) munmap(m.first, m.second);
      for (int fd : *fds) close(fd);
    }).detach();
    return env.Undefined();
  }
};

// ---------------------------------------------------------------- System --

class System : public Napi::ObjectWrap<System> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "System",
                       {
                           InstanceAccessor<&System::GetFd>("fd"),
                           InstanceAccessor<&System::GetClosed>("closed"),
                           InstanceMethod<&System::ApiVersion>("apiVersion"),
                           InstanceMethod<&System::CheckExtension>("checkExtension"),
                           InstanceMethod<&System::VcpuMmapSize>("vcpuMmapSize"),
                           InstanceMethod<&System::SupportedCpuid>("supportedCpuid"),
                           InstanceMethod<&System::CreateVm>("createVm"),
                           InstanceMethod<&System::CreateVmAsync>("createVmAsync"),
                           InstanceMethod<&System::Close>("close"),
                       });
  }

  // new System(path): opens the KVM device.
  explicit System(const Napi::CallbackInfo& info) : Napi::ObjectWrap<System>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw ArgError(env, "path must be a string");
    std::string path = info[0].As<Napi::String>().Utf8Value();
    if (path.empty() || path.size() > 4096 || path.find('\0') != std::string::npos)
      throw ArgError(env, "path is not a valid file name", true);
    fd_ = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) throw SysError(env, errno, "open(" + path + ")");
  }
  ~System() {
    if (fd_ >= 0) close(fd_);
  }

 private:
  int fd_ = -1;

  int Fd(Napi::Env env, const char* op) {
    if (fd_ < 0) throw SysError(env, EBADF, op, "/dev/kvm handle is closed");
    return fd_;
  }

  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }
  Napi::Value GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), fd_ < 0); }

  Napi::Value ApiVersion(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int r = ioctl(Fd(env, "ioctl(KVM_GET_API_VERSION)"), KVM_GET_API_VERSION, 0);
    if (r < 0) throw SysError(env, errno, "ioctl(KVM_GET_API_VERSION)");
    return Napi::Number::New(env, r);
  }

  Napi::Value CheckExtension(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t cap = ArgU32(info, 0, "cap", INT32_MAX);
    int r = ioctl(Fd(env, "ioctl(KVM_CHECK_EXTENSION)"), KVM_CHECK_EXTENSION, cap);
    if (r < 0) throw SysError(env, errno, "ioctl(KVM_CHECK_EXTENSION)");
    return Napi::Number::New(env, r);
  }

  Napi::Value VcpuMmapSize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int r = ioctl(Fd(env, "ioctl(KVM_GET_VCPU_MMAP_SIZE)"), KVM_GET_VCPU_MMAP_SIZE, 0);
    if (r < 0) throw SysError(env, errno, "ioctl(KVM_GET_VCPU_MMAP_SIZE)");
    return Napi::Number::New(env, r);
  }

  // supportedCpuid() -> Buffer of n * kvm_cpuid_entry2
  Napi::Value SupportedCpuid(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd = Fd(env, "ioctl(KVM_GET_SUPPORTED_CPUID)");
    for (uint32_t n = 64; n <= 4096; n *= 2) {
      std::vector<uint8_t> buf(sizeof(CpuidHeader) + n * sizeof(kvm_cpuid_entry2));
      auto* c = reinterpret_cast<CpuidHeader*>(buf.data());
      c->nent = n;
      if (ioctl(fd, kGetSupportedCpuid, buf.data()) == 0)
        return Napi::Buffer<uint8_t>::Copy(env, buf.data() + sizeof(CpuidHeader),
                                           std::min(c->nent, n) * sizeof(kvm_cpuid_entry2));
      if (errno != E2BIG) throw SysError(env, errno, "ioctl(KVM_GET_SUPPORTED_CPUID)");
    }
    throw SysError(env, E2BIG, "ioctl(KVM_GET_SUPPORTED_CPUID)");
  }

  // createVm(type) -> Vm
  Napi::Value CreateVm(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t type = ArgU32(info, 0, "type", 255);
    int sys = Fd(env, "ioctl(KVM_CREATE_VM)");
    int mmapSize = ioctl(sys, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (mmapSize < 0) throw SysError(env, errno, "ioctl(KVM_GET_VCPU_MMAP_SIZE)");
    int fd;
    do {
      fd = ioctl(sys, KVM_CREATE_VM, static_cast<unsigned long>(type));
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) throw SysError(env, errno, "ioctl(KVM_CREATE_VM)");
    return WrapVm(env, fd, mmapSize);
  }

  static Napi::Value WrapVm(Napi::Env env, int fd, int mmapSize, std::vector<Slot> slots = {}) {
    auto core = std::make_shared<VmCore>();
    core->fd = fd;
    core->vcpuMmapSize = mmapSize;
    core->slots = std::move(slots);
    Napi::External<std::shared_ptr<VmCore>> ext = Napi::External<std::shared_ptr<VmCore>>::New(
        env, new std::shared_ptr<VmCore>(core), [](Napi::Env, std::shared_ptr<VmCore>* p) { delete p; });
    return g_vmCtor->New({ext});
  }

  // What createVmAsync does to the new VM before handing it over, all on the pool thread.
  struct VmSetup {
    uint32_t tssAddr = 0;    // KVM_SET_TSS_ADDR when non-zero
    bool irqchip = false;    // KVM_CREATE_IRQCHIP
    uint64_t memSize = 0;    // slot 0 at gpa 0 of this many bytes when non-zero
    uint64_t prefault = 0;   // bytes from gpa 0 touched now, so the caller's first writes fault nothing
  };

  // KVM_CREATE_VM (and the setup above) on a libuv pool thread, on a duplicate of the
  // /dev/kvm descriptor (so closing the System meanwhile cannot hand the ioctl someone
  // else's descriptor).
  class CreateVmWorker : public Napi::AsyncWorker {
   public:
    CreateVmWorker(Napi::Env env, int sys, unsigned long type, VmSetup setup)
        : Napi::AsyncWorker(env, "xconf:kvm-create-vm"), sys_(sys), type_(type), setup_(setup),
          deferred_(Napi::Promise::Deferred::New(env)) {}
    ~CreateVmWorker() override {
      if (sys_ >= 0) close(sys_);
      if (fd_ >= 0) close(fd_);  // created, but never handed to JavaScript
      if (hva_ != nullptr) munmap(hva_, setup_.memSize);
    }
    Napi::Promise Promise() { return deferred_.Promise(); }
    void Execute() override {
      kcov::Arm();  // VM creation runs xen.c's init on this pool thread
      mmapSize_ = ioctl(sys_, KVM_GET_VCPU_MMAP_SIZE, 0);
      if (mmapSize_ < 0) return Fail("ioctl(KVM_GET_VCPU_MMAP_SIZE)");
      do {
        fd_ = ioctl(sys_, KVM_CREATE_VM, type_);
      } while (fd_ < 0 && errno == EINTR);
      if (fd_ < 0) return Fail("ioctl(KVM_CREATE_VM)");
      if (setup_.tssAddr != 0 && ioctl(fd_, KVM_SET_TSS_ADDR, static_cast<unsigned long>(setup_.tssAddr)) < 0)
        return Fail("ioctl(KVM_SET_TSS_ADDR)");
      if (setup_.irqchip && ioctl(fd_, KVM_CREATE_IRQCHIP, 0) < 0) return Fail("ioctl(KVM_CREATE_IRQCHIP)");
      if (setup_.memSize != 0) {
        void* hva = mmap(nullptr, setup_.memSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (hva == MAP_FAILED) return Fail("mmap");
        hva_ = hva;
        kvm_userspace_memory_region r{};
        r.slot = 0;
        r.guest_phys_addr = 0;
        r.memory_size = setup_.memSize;
        r.userspace_addr = reinterpret_cast<uint64_t>(hva);
        if (ioctl(fd_, KVM_SET_USER_MEMORY_REGION, &r) < 0) return Fail("ioctl(KVM_SET_USER_MEMORY_REGION)");
        std::memset(hva, 0, std::min(setup_.prefault, setup_.memSize));
      }
    }
    void OnOK() override {
      Napi::Env env = Env();
      if (err_ != 0) {
        deferred_.Reject(SysError(env, err_, syscall_).Value());
        return;
      }
      std::vector<Slot> slots;
      if (hva_ != nullptr) slots.push_back(Slot{0, 0, 0, setup_.memSize, hva_});
      int fd = fd_;
      fd_ = -1;
      hva_ = nullptr;
      deferred_.Resolve(WrapVm(env, fd, mmapSize_, std::move(slots)));
    }
    void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

   private:
    void Fail(const char* syscall) {
      err_ = errno;
      syscall_ = syscall;
    }
    int sys_;
    unsigned long type_;
    VmSetup setup_;
    int fd_ = -1;
    void* hva_ = nullptr;
    int mmapSize_ = 0;
    int err_ = 0;
    std::string syscall_;
    Napi::Promise::Deferred deferred_;
  };

  // createVmAsync(type, tssAddr, irqchip, memSize, prefault) -> Promise<Vm>: createVm()
  // and the VM's first setup off the JavaScript thread, so a VMM can have the next VM
  // made while it runs the current one. tssAddr 0, irqchip false, memSize 0: not done.
  Napi::Value CreateVmAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t type = ArgU32(info, 0, "type", 255);
    VmSetup setup;
    if (info.Length() > 1) {
      setup.tssAddr = ArgU32(info, 1, "tssAddr");
      if (!info[2].IsBoolean()) throw ArgError(env, "irqchip must be a boolean");
      setup.irqchip = info[2].As<Napi::Boolean>().Value();
      setup.memSize = ArgU64(info, 3, "memSize", 1ull << 40);
      setup.prefault = ArgU64(info, 4, "prefault", 1ull << 40);
      long page = sysconf(_SC_PAGESIZE);
      if (setup.memSize % page != 0) throw ArgError(env, "memSize must be page aligned", true);
    }
    int sys = fcntl(Fd(env, "ioctl(KVM_CREATE_VM)"), F_DUPFD_CLOEXEC, 0);
    if (sys < 0) throw SysError(env, errno, "fcntl(F_DUPFD_CLOEXEC)");
    auto* w = new CreateVmWorker(env, sys, type, setup);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
    return info.Env().Undefined();
  }
};

// --------------------------------------------------------------- Eventfd --

class Eventfd : public Napi::ObjectWrap<Eventfd> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Eventfd",
                       {
                           InstanceAccessor<&Eventfd::GetFd>("fd"),
                           InstanceAccessor<&Eventfd::GetClosed>("closed"),
                           InstanceMethod<&Eventfd::Signal>("signal"),
                           InstanceMethod<&Eventfd::Read>("read"),
                           InstanceMethod<&Eventfd::Close>("close"),
                       });
  }

  // new Eventfd(initval): a non-blocking, close-on-exec eventfd.
  explicit Eventfd(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Eventfd>(info) {
    Napi::Env env = info.Env();
    uint32_t init = ArgU32(info, 0, "initval");
    fd_ = eventfd(init, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd_ < 0) throw SysError(env, errno, "eventfd");
  }
  ~Eventfd() {
    if (fd_ >= 0) close(fd_);
  }

 private:
  int fd_ = -1;
  int Fd(Napi::Env env, const char* op) {
    if (fd_ < 0) throw SysError(env, EBADF, op, "the eventfd is closed");
    return fd_;
  }
  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }
  Napi::Value GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), fd_ < 0); }

  Napi::Value Signal(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t v = info.Length() > 0 ? ArgU64(info, 0, "value", UINT64_MAX - 1) : 1;
    if (v == 0) throw ArgError(env, "value must be at least 1", true);
    ssize_t r = write(Fd(env, "write(eventfd)"), &v, sizeof v);
    if (r != static_cast<ssize_t>(sizeof v)) throw SysError(env, r < 0 ? errno : EIO, "write(eventfd)");
    return env.Undefined();
  }

  // read() -> bigint counter, or null when it is zero.
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t v = 0;
    ssize_t r = read(Fd(env, "read(eventfd)"), &v, sizeof v);
    if (r < 0) {
      if (errno == EAGAIN) return env.Null();
      throw SysError(env, errno, "read(eventfd)");
    }
    return Big(env, v);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
    return info.Env().Undefined();
  }
};

// ------------------------------------------------------------------ kcov --

// kcovStart(words): KCOV for this thread and every pool thread that later
// enters KVM (kcov.h). Throws a system error naming the failing call.
static Napi::Value KcovStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t words = ArgU64(info, 0, "words", uint64_t(1) << 26);
  int code = 0;
  std::string call = kcov::Start(words, &code);
  if (!call.empty()) throw SysError(env, code, call);
  return env.Undefined();
}

// kcovCollect(): what the threads recorded since the last call, folded into the
// process-wide sets: { newPcs, newEdges, pcs, edges, records, overflows, threads, failedThreads }.
static Napi::Value KcovCollect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!kcov::Started()) throw SysError(env, EINVAL, "kcov", "kcovStart was not called");
  kcov::Totals t = kcov::Collect();
  Napi::Object o = Napi::Object::New(env);
  o.Set("newPcs", Napi::Number::New(env, static_cast<double>(t.newPcs)));
  o.Set("newEdges", Napi::Number::New(env, static_cast<double>(t.newEdges)));
  o.Set("pcs", Napi::Number::New(env, static_cast<double>(t.pcs)));
  o.Set("edges", Napi::Number::New(env, static_cast<double>(t.edges)));
  o.Set("records", Napi::Number::New(env, static_cast<double>(t.records)));
  o.Set("overflows", Napi::Number::New(env, static_cast<double>(t.overflows)));
  o.Set("threads", Napi::Number::New(env, t.threads));
  o.Set("failedThreads", Napi::Number::New(env, kcov::FailedThreads()));
  return o;
}

// ------------------------------------------------------------------ init --

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Function vm = Vm::Init(env);
  Napi::Function vcpu = Vcpu::Init(env);
  g_vmCtor = new Napi::FunctionReference(Napi::Persistent(vm));
  g_vcpuCtor = new Napi::FunctionReference(Napi::Persistent(vcpu));
  exports.Set("System", System::Init(env));
  exports.Set("Vm", vm);
  exports.Set("Vcpu", vcpu);
  exports.Set("Eventfd", Eventfd::Init(env));

  Napi::Object sizes = Napi::Object::New(env);
  sizes.Set("kvm_regs", Napi::Number::New(env, sizeof(kvm_regs)));
  sizes.Set("kvm_sregs", Napi::Number::New(env, sizeof(kvm_sregs)));
  sizes.Set("kvm_cpuid_entry2", Napi::Number::New(env, sizeof(kvm_cpuid_entry2)));
  sizes.Set("kvm_xen_hvm_config", Napi::Number::New(env, sizeof(kvm_xen_hvm_config)));
  sizes.Set("kvm_xen_hvm_attr", Napi::Number::New(env, sizeof(kvm_xen_hvm_attr)));
  sizes.Set("kvm_xen_vcpu_attr", Napi::Number::New(env, sizeof(kvm_xen_vcpu_attr)));
  sizes.Set("kvm_irq_routing_entry", Napi::Number::New(env, sizeof(kvm_irq_routing_entry)));
  exports.Set("structSizes", sizes);
  exports.Set("timeoutSignal", Napi::Number::New(env, TimeoutSignal()));
  exports.Set("kcovStart", Napi::Function::New(env, KcovStart, "kcovStart"));
  exports.Set("kcovCollect", Napi::Function::New(env, KcovCollect, "kcovCollect"));
  exports.Set("abiVersion", Napi::Number::New(env, 2));
  return exports;
}

}  // namespace xconf

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return xconf::Init(env, exports); }

NODE_API_MODULE(xconf_kvm, InitModule)
