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

// A fused group's convolution member by member on libtorch's own kernel, as one autograd node:
// x [G·B, Cin, H, W] (member after member), w [G·Cout, Cin, kh, kw], b [G·Cout] → [G·B, Cout,
// OH, OW]. Each member's forward and backward are the `_slow_conv2d` calls its solo run makes
// (`thnn_conv2d`), on its own slices: the same bits as alone where the solo run takes that
// kernel too (the tutorial CNN at batch ≤ 4; a larger solo convolution runs oneDNN's).
// Without AVX-512, oneDNN's grouped convolution computes its weights' gradient through an
// im2col that costs more than the whole of these for few input channels per member
// (BENCHMARKS.md, "Fused groups member by member").
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Each member's `_slow_conv2d_forward` on its own slices.
at::Tensor members_forward(const at::Tensor& xc, const at::Tensor& w, const at::Tensor& b, int64_t g, int64_t stride,
                           int64_t pad) {
  const int64_t batch = xc.size(0) / g, cout = w.size(0) / g, kh = w.size(2), kw = w.size(3);
  const int64_t oh = (xc.size(2) + 2 * pad - kh) / stride + 1, ow = (xc.size(3) + 2 * pad - kw) / stride + 1;
  auto out = at::empty({xc.size(0), cout, oh, ow}, xc.options());
  for (int64_t m = 0; m < g; m++) {
    auto o = out.narrow(0, m * batch, batch);
    at::_slow_conv2d_forward_out(o, xc.narrow(0, m * batch, batch), w.narrow(0, m * cout, cout), {kh, kw},
                                 b.narrow(0, m * cout, cout), {stride, stride}, {pad, pad});
  }
  return out;
}

// Each member's `_slow_conv2d_backward` on its own slices of `go`, `x` and `w` (the call
// autograd makes for `thnn_conv2d`), handed to `each(m, batch, cout, gx, gw, gb)` in member order.
template <typename F>
void members_backward(const at::Tensor& go, const at::Tensor& x, const at::Tensor& w, int64_t g, int64_t stride,
                      int64_t pad, std::array<bool, 3> mask, F&& each) {
  const int64_t batch = x.size(0) / g, cout = w.size(0) / g, kh = w.size(2), kw = w.size(3);
  for (int64_t m = 0; m < g; m++) {
    auto [i, wt, bs] = at::_slow_conv2d_backward(go.narrow(0, m * batch, batch), x.narrow(0, m * batch, batch),
                                                 w.narrow(0, m * cout, cout), {kh, kw}, {stride, stride},
                                                 {pad, pad}, mask);
    each(m, batch, cout, i, wt, bs);
  }
}

struct MembersConv : public torch::autograd::Function<MembersConv> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                            int64_t g, int64_t stride, int64_t pad) {
    auto out = members_forward(x, w, b, g, stride, pad);
    ctx->save_for_backward({x, w});
    ctx->saved_data["g"] = g;
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["pad"] = pad;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1];
    const int64_t g = ctx->saved_data["g"].toInt(), stride = ctx->saved_data["stride"].toInt(),
                  pad = ctx->saved_data["pad"].toInt();
    const std::array<bool, 3> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2)};
    std::vector<at::Tensor> gx, gw, gb;
    members_backward(grads[0].contiguous(), x, w, g, stride, pad, mask,
                     [&](int64_t, int64_t, int64_t, const at::Tensor& i, const at::Tensor& wt, const at::Tensor& bs) {
                       if (mask[0]) gx.push_back(i);
                       if (mask[1]) gw.push_back(wt);
                       if (mask[2]) gb.push_back(bs);
                     });
    const auto joined = [](const std::vector<at::Tensor>& parts) { return parts.empty() ? at::Tensor() : at::cat(parts); };
    return {joined(gx), joined(gw), joined(gb), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" void* trainyard_members_conv2d(void* input, void* weight, void* bias, int64_t g, int64_t stride, int64_t pad,
                                          char* err, size_t err_len) {
  return trainyard::guarded(err, err_len, [&] {
    const auto &x = trainyard::tensor(input), &w = trainyard::tensor(weight), &b = trainyard::tensor(bias);
    TORCH_CHECK(g >= 1 && x.dim() == 4 && w.dim() == 4 && b.dim() == 1 && x.size(0) % g == 0 && w.size(0) % g == 0 &&
                    b.size(0) == w.size(0) && x.is_contiguous() && x.size(1) == w.size(1) && stride >= 1 && pad >= 0,
                "members_conv2d takes a contiguous x [G·B, Cin, H, W], w [G·Cout, Cin, kh, kw] and b [G·Cout] for G = ", g,
                ", a stride of at least 1 and a padding of at least 0");
    if (!c10::GradMode::is_enabled()) return members_forward(x, w, b, g, stride, pad);
    return MembersConv::apply(x, w, b, g, stride, pad);
  });
}

namespace {

// A convolution's backward without autograd (src/train/backprop.rs): for a single model (g = 1)
// or a fused group member by member, each member's `_slow_conv2d_backward` on its own slices
// (the call autograd makes for `thnn_conv2d` and `MembersConv`), its weight's and bias's
// gradients added into `gw` and `gb` (as autograd accumulates them into `.grad`). Returns the
// input's gradient with `want_gx`, else an undefined tensor.
at::Tensor members_conv2d_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& w, at::Tensor gw,
                                   at::Tensor gb, int64_t g, int64_t stride, int64_t pad, int32_t want_gx) {
  const auto go = grad_out.contiguous();
  TORCH_CHECK(g >= 1 && x.dim() == 4 && w.dim() == 4 && go.dim() == 4 && x.size(0) % g == 0 &&
                  w.size(0) % g == 0 && go.size(0) == x.size(0) && go.size(1) * g == w.size(0) &&
                  gw.sizes() == w.sizes() && gb.dim() == 1 && gb.size(0) == w.size(0) && x.is_contiguous() &&
                  stride >= 1 && pad >= 0,
              "conv2d_backward takes a contiguous x [G·B, Cin, H, W], w and its gradient [G·Cout, Cin, kh, kw], "
              "the bias's gradient [G·Cout] and the output's [G·B, Cout, OH, OW] for G = ",
              g, ", a stride of at least 1 and a padding of at least 0");
  at::Tensor gx = want_gx != 0 && g > 1 ? at::empty(x.sizes(), x.options()) : at::Tensor();
  members_backward(go, x, w, g, stride, pad, {want_gx != 0, true, true},
                   [&](int64_t m, int64_t batch, int64_t cout, const at::Tensor& i, const at::Tensor& wt,
                       const at::Tensor& bs) {
                     if (want_gx != 0 && g == 1) gx = i;
                     if (want_gx != 0 && g > 1) gx.narrow(0, m * batch, batch).copy_(i);
                     gw.narrow(0, m * cout, cout).add_(wt);
                     gb.narrow(0, m * cout, cout).add_(bs);
                   });
  return gx;
}

// A fused group's grouped convolution's backward without autograd (src/train/backprop.rs):
// `at::conv2d` of x [B, G·Cin, H, W] (the members' channels side by side, channels last) by w
// [G·Cout, Cin, kh, kw] in g groups, oneDNN's where it has AVX-512. The call autograd's
// `ConvolutionBackward0` node makes (`at::convolution_backward`, on the same tensors), the
// weight's and bias's gradients added into `gw` and `gb` (as autograd accumulates them into
// `.grad`). Returns the input's gradient with `want_gx`, else an undefined tensor.
at::Tensor grouped_conv2d_backward(const at::Tensor& go, const at::Tensor& x, const at::Tensor& w, at::Tensor gw,
                                   at::Tensor gb, int64_t g, int64_t stride, int64_t pad, int32_t want_gx) {
  TORCH_CHECK(g >= 1 && x.dim() == 4 && w.dim() == 4 && go.dim() == 4 && w.size(0) % g == 0 &&
                  x.size(1) == g * w.size(1) && go.size(0) == x.size(0) && go.size(1) == w.size(0) &&
                  gw.sizes() == w.sizes() && gb.dim() == 1 && gb.size(0) == w.size(0) && stride >= 1 && pad >= 0,
              "grouped_conv2d_backward takes x [B, G·Cin, H, W], w and its gradient [G·Cout, Cin, kh, kw], the "
              "bias's gradient [G·Cout] and the output's [B, G·Cout, OH, OW] for G = ",
              g, ", a stride of at least 1 and a padding of at least 0");
  auto [gx, gwn, gbn] = at::convolution_backward(go, x, w, at::IntArrayRef{w.size(0)}, {stride, stride}, {pad, pad},
                                                 {1, 1}, false, {0, 0}, g, {want_gx != 0, true, true});
  gw.add_(gwn);
  gb.add_(gbn);
  return gx;
}

}  // namespace

// The backward of a convolution without autograd: `grouped` says which of the two above.
extern "C" void* trainyard_conv2d_backward(void* grad_out, void* input, void* weight, void* grad_weight,
                                           void* grad_bias, int64_t g, int64_t stride, int64_t pad, int32_t want_gx,
                                           int32_t grouped, char* err, size_t err_len) {
  return trainyard::guarded(err, err_len, [&]() -> at::Tensor {
    const auto &go = trainyard::tensor(grad_out), &x = trainyard::tensor(input), &w = trainyard::tensor(weight);
    const auto &gw = trainyard::tensor(grad_weight), &gb = trainyard::tensor(grad_bias);
    return grouped != 0 ? grouped_conv2d_backward(go, x, w, gw, gb, g, stride, pad, want_gx)
                        : members_conv2d_backward(go, x, w, gw, gb, g, stride, pad, want_gx);
  });
}
