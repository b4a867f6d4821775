// Argument helpers for the bindings: every check throws a JavaScript error with a `code` property
// (never aborts). The TypeScript layer validates first; these checks keep native code memory-safe
// whatever it is called with.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace svdq_addon {

inline Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

[[noreturn]] inline void throw_arg(Napi::Env env, const std::string& name, const std::string& expected) {
  throw make_error(env, "ERR_SVDQ_ARGUMENT", "invalid argument '" + name + "': expected " + expected);
}

inline int64_t get_int(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t lo, int64_t hi) {
  if (info.Length() <= i || !info[i].IsNumber()) throw_arg(info.Env(), name, "an integer");
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= static_cast<double>(lo) && v <= static_cast<double>(hi)) || v != static_cast<double>(static_cast<int64_t>(v)))
    throw_arg(info.Env(), name, "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int64_t>(v);
}

inline double get_number(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) throw_arg(info.Env(), name, "a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

// A typed array of the given element type holding at least `min_elems` elements.
template <typename T>
T* get_array(const Napi::CallbackInfo& info, size_t i, const char* name, napi_typedarray_type type,
             int64_t min_elems, const char* type_name) {
  if (info.Length() <= i || !info[i].IsTypedArray()) throw_arg(info.Env(), name, std::string("a ") + type_name);
  Napi::TypedArray ta = info[i].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != type) throw_arg(info.Env(), name, std::string("a ") + type_name);
  if (static_cast<int64_t>(ta.ElementLength()) < min_elems)
    throw_arg(info.Env(), name, std::string("a ") + type_name + " of at least " + std::to_string(min_elems) +
                                    " elements, got " + std::to_string(ta.ElementLength()));
  auto* base = static_cast<uint8_t*>(ta.ArrayBuffer().Data());
  if (base == nullptr && min_elems > 0) throw_arg(info.Env(), name, "an attached (not transferred) buffer");
  return reinterpret_cast<T*>(base + ta.ByteOffset());
}

}  // namespace svdq_addon
