// How the native operations cross to Rust (src/train/native/mod.rs, `owned`): tensors as tch's
// handles (`at::Tensor*`); the result a new handle the caller owns, or null with libtorch's
// message in `err` (never an exception across the C boundary).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstring>
#include <exception>

namespace trainyard {

inline const at::Tensor& tensor(void* handle) { return *static_cast<at::Tensor*>(handle); }

// `f()`'s tensor as a new handle, or null with the exception's message written into `err`.
template <typename F>
void* guarded(char* err, size_t err_len, F&& f) {
  try {
    return new at::Tensor(f());
  } catch (const std::exception& e) {
    if (err_len > 0) {
      std::strncpy(err, e.what(), err_len - 1);
      err[err_len - 1] = '\0';
    }
    return nullptr;
  }
}

}  // namespace trainyard
