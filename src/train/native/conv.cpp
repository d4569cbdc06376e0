// libtorch's own CPU convolution (im2col + GEMM, `thnn_conv2d`), which tch does not expose:
// at small batches it is faster than oneDNN's (BENCHMARKS.md, "Convolution paths"). It goes
// through libtorch's dispatcher, so autograd records it and its backward is libtorch's
// `_slow_conv2d_backward`. Tensors cross as handle.h says.
#include <ATen/ops/thnn_conv2d.h>

#include <optional>

#include "handle.h"

extern "C" void* trainyard_thnn_conv2d(void* input, void* weight, void* bias, int64_t kh, int64_t kw, int64_t sh,
                                       int64_t sw, int64_t ph, int64_t pw, char* err, size_t err_len) {
  return trainyard::guarded(err, err_len, [&] {
    std::optional<at::Tensor> b;
    if (bias != nullptr) b = trainyard::tensor(bias);
    return at::thnn_conv2d(trainyard::tensor(input), trainyard::tensor(weight), {kh, kw}, b, {sh, sw}, {ph, pw});
  });
}
