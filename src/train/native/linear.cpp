// A linear layer whose backward writes the weight's gradient in the weight's own layout.
//
// libtorch's `linear` is `addmm(b, x, w.t())` (a fused group's, `baddbmm(b, x, w^T)`), and
// autograd's gradient for `w.t()` is `x.t() @ grad`, an [in, out] matrix that reaches the
// weight's [out, in] gradient transposed: accumulating it there is a strided add over every
// weight (for the MLP's 3072→120 layer, 368,640 values read across rows each step). Here
// the backward computes `grad.t() @ x` instead: the same sums of products, straight into
// [out, in] order. The forward is libtorch's own.
//
// With `relu`, a ReLU follows in the same node (the tutorial's `F.relu(fc(x))`): libtorch's
// `relu_` on the product, and in the backward its `threshold_backward(grad, output, 0)` first,
// as ReLU's own autograd node computes it: the same bits, one node and one tensor fewer.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "handle.h"

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// x [B, in], w [out, in], b [out]; or a group's x [G, B, in], w [G, out, in], b [G, 1, out].
at::Tensor forward_of(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return w.dim() == 2 ? at::addmm(b, x, w.t()) : at::baddbmm(b, x, w.transpose(1, 2));
}

struct Linear : public torch::autograd::Function<Linear> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                            bool relu) {
    auto y = forward_of(x, w, b);
    ctx->saved_data["relu"] = relu;
    if (relu) {
      at::relu_(y);
      ctx->save_for_backward({x, w, y});
    } else {
      ctx->save_for_backward({x, w});
    }
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1];
    const at::Tensor go = ctx->saved_data["relu"].toBool() ? at::threshold_backward(grads[0], saved[2], 0) : grads[0];
    at::Tensor gx, gw, gb;
    // A weight whose gradient already exists (the engine binds them to one buffer after the
    // first step) gets the product added in place by the matrix product itself (beta = 1):
    // no [out, in] temporary and no separate pass to add it. Autograd then has nothing to
    // accumulate for it (an undefined gradient is a zero one).
    at::Tensor into = ctx->needs_input_grad(1) ? w.grad() : at::Tensor();
    const bool in_place = into.defined() && into.is_contiguous() && into.sizes() == w.sizes();
    if (w.dim() == 2) {
      if (ctx->needs_input_grad(0)) gx = go.mm(w);
      if (in_place) {
        into.addmm_(go.t(), x);
      } else if (ctx->needs_input_grad(1)) {
        gw = go.t().mm(x);
      }
      if (ctx->needs_input_grad(2)) gb = go.sum(0);
    } else {
      if (ctx->needs_input_grad(0)) gx = go.bmm(w);
      if (in_place) {
        into.baddbmm_(go.transpose(1, 2), x);
      } else if (ctx->needs_input_grad(1)) {
        gw = go.transpose(1, 2).bmm(x);
      }
      if (ctx->needs_input_grad(2)) gb = go.sum(1, true);
    }
    return {gx, gw, gb, at::Tensor()};
  }
};

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool relu) {
  const bool shapes = (w.dim() == 2 && x.dim() == 2 && b.dim() == 1) || (w.dim() == 3 && x.dim() == 3 && b.dim() == 3);
  if (!shapes) {
    auto y = w.dim() == 2 ? at::linear(x, w, b) : forward_of(x, w, b);
    return relu ? at::relu(y) : y;
  }
  if (c10::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || b.requires_grad())) {
    return Linear::apply(x, w, b, relu);
  }
  auto y = forward_of(x, w, b);
  return relu ? at::relu_(y) : y;
}

}  // namespace

extern "C" void* trainyard_linear(void* input, void* weight, void* bias, int32_t relu, char* err, size_t err_len) {
  return trainyard::guarded(err, err_len, [&] {
    return linear(trainyard::tensor(input), trainyard::tensor(weight), trainyard::tensor(bias), relu != 0);
  });
}
