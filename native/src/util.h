// Small helpers shared by the addon's classes: errno errors and checked
// argument conversion. Arguments are validated in TypeScript first; these
// checks are the second line, so a bad call never reaches an ioctl.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace xconf {

// An Error carrying code ('EINVAL'), errno (positive number) and syscall
// ('ioctl(KVM_CREATE_VM)'), like Node's system errors.
inline Napi::Error SysError(Napi::Env env, int err, const std::string& syscall,
                            const std::string& detail = std::string()) {
  const char* name = strerrorname_np(err);
  std::string code = name ? name : ("E" + std::to_string(err));
  std::string msg = syscall + " failed: " + code + " (" + std::strerror(err) + ")";
  if (!detail.empty()) msg += ": " + detail;
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

inline Napi::Error ArgError(Napi::Env env, const std::string& msg, bool range = false) {
  Napi::Error e = range ? static_cast<Napi::Error>(Napi::RangeError::New(env, msg))
                        : static_cast<Napi::Error>(Napi::TypeError::New(env, msg));
  e.Set("code", Napi::String::New(env, range ? "ERR_OUT_OF_RANGE" : "ERR_INVALID_ARG_TYPE"));
  return e;
}

// An unsigned integer argument given as a number (safe integer) or a bigint.
inline uint64_t ArgU64(const Napi::CallbackInfo& info, size_t i, const char* what,
                       uint64_t max = UINT64_MAX) {
  Napi::Env env = info.Env();
  if (info.Length() <= i) throw ArgError(env, std::string(what) + " is required");
  Napi::Value v = info[i];
  uint64_t out = 0;
  if (v.IsBigInt()) {
    bool lossless = false;
    out = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw ArgError(env, std::string(what) + " must fit in 64 unsigned bits", true);
  } else if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d > 9007199254740991.0 || d != static_cast<double>(static_cast<uint64_t>(d)))
      throw ArgError(env, std::string(what) + " must be a non-negative safe integer", true);
    out = static_cast<uint64_t>(d);
  } else {
    throw ArgError(env, std::string(what) + " must be a number or bigint");
  }
  if (out > max) throw ArgError(env, std::string(what) + " is out of range", true);
  return out;
}

inline uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* what,
                       uint32_t max = UINT32_MAX) {
  return static_cast<uint32_t>(ArgU64(info, i, what, max));
}

inline int32_t ArgI32(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsNumber()) throw ArgError(env, std::string(what) + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int32_t>(d)))
    throw ArgError(env, std::string(what) + " must be a 32-bit integer", true);
  return static_cast<int32_t>(d);
}

// A byte buffer argument (Buffer or any Uint8Array) of an exact or bounded size.
inline Napi::Uint8Array ArgBytes(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw ArgError(env, std::string(what) + " must be a Uint8Array or Buffer");
  return info[i].As<Napi::Uint8Array>();
}

inline Napi::Uint8Array ArgStruct(const Napi::CallbackInfo& info, size_t i, const char* what, size_t size) {
  Napi::Uint8Array a = ArgBytes(info, i, what);
  if (a.ByteLength() != size)
    throw ArgError(info.Env(), std::string(what) + " must be exactly " + std::to_string(size) + " bytes", true);
  return a;
}

inline Napi::BigInt Big(Napi::Env env, uint64_t v) { return Napi::BigInt::New(env, v); }

}  // namespace xconf
