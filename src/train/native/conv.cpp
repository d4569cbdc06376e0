// libtorch's own CPU convolution (im2col + GEMM, `thnn_conv2d`), which tch does not expose:
// at small batches it is faster than oneDNN's (BENCHMARKS.md, "Convolution paths"). It goes
// through libtorch's dispatcher, so autograd records it and its backward is libtorch's
// `_slow_conv2d_backward`.
//
// Tensors cross as tch's handles (`at::Tensor*`); the result is a new handle the caller owns
// (tch frees it), or null with libtorch's message in `err`.
#include <ATen/core/Tensor.h>
#include <ATen/ops/thnn_conv2d.h>
#include <cstring>
#include <exception>
#include <optional>

extern "C" void* trainyard_thnn_conv2d(void* input, void* weight, void* bias, int64_t kh, int64_t kw, int64_t sh,
                                       int64_t sw, int64_t ph, int64_t pw, char* err, size_t err_len) {
  try {
    const auto& x = *static_cast<at::Tensor*>(input);
    const auto& w = *static_cast<at::Tensor*>(weight);
    std::optional<at::Tensor> b;
    if (bias != nullptr) b = *static_cast<at::Tensor*>(bias);
    return new at::Tensor(at::thnn_conv2d(x, w, {kh, kw}, b, {sh, sw}, {ph, pw}));
  } catch (const std::exception& e) {
    if (err_len > 0) {
      std::strncpy(err, e.what(), err_len - 1);
      err[err_len - 1] = '\0';
    }
    return nullptr;
  }
}
