// Batch normalisation's backward without autograd (src/train/backprop.rs): the call autograd's
// node for `native_batch_norm` makes (`native_batch_norm_backward`, in training), which tch
// does not expose, with the weight's and bias's gradients added into `gw` and `gb` (as autograd
// accumulates them into `.grad`). Tensors cross as handle.h says.
#include <ATen/ATen.h>

#include "handle.h"

// The input's gradient with `want_gx`, else an undefined tensor.
extern "C" void* trainyard_batch_norm_backward(void* grad_out, void* input, void* weight, void* running_mean,
                                               void* running_var, void* save_mean, void* save_invstd, double eps,
                                               void* grad_weight, void* grad_bias, int32_t want_gx, char* err,
                                               size_t err_len) {
  return trainyard::guarded(err, err_len, [&]() -> at::Tensor {
    const auto &x = trainyard::tensor(input), &w = trainyard::tensor(weight);
    at::Tensor gw = trainyard::tensor(grad_weight), gb = trainyard::tensor(grad_bias);
    TORCH_CHECK(x.dim() >= 2 && w.dim() == 1 && w.size(0) == x.size(1) && gw.sizes() == w.sizes() &&
                    gb.sizes() == w.sizes(),
                "batch_norm_backward takes an input [B, C, …], a weight and the gradients of weight and bias [C]");
    auto [gx, gwt, gbs] = at::native_batch_norm_backward(
        trainyard::tensor(grad_out), x, w, trainyard::tensor(running_mean), trainyard::tensor(running_var),
        trainyard::tensor(save_mean), trainyard::tensor(save_invstd), true, eps, {want_gx != 0, true, true});
    gw.add_(gwt);
    gb.add_(gbs);
    return gx;
  });
}
