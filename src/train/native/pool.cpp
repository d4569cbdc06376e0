// Max pooling with a 2×2 window at stride 2 (no padding, no dilation, floor mode: the
// tutorial's pool, and most students') on contiguous float CPU tensors, NCHW or
// channels-last. libtorch's own CPU kernels spend 8–18 ns per output on the small planes and
// few channels of a class's networks (the tutorial CNN's pools at batch 4; 6 channels last at
// evaluation's batch 1000), several times what a branch-free loop over the four taps needs
// (BENCHMARKS.md, "Max pooling, linear layers and the allocator's decay").
//
// Same results as libtorch's, bit for bit: each output takes its window's taps row by row,
// keeps the first largest value and its index (ih·W + iw within its plane), and a NaN wins
// as in libtorch (`val > max || isnan(val)`). The backward adds each output's gradient at its
// index (the windows do not overlap). Autograd records it as a custom function; any other
// window, device, type or layout takes libtorch's `max_pool2d`.
//
// With `relu`, it is a ReLU and then this pooling (the tutorial's `pool(F.relu(conv(x)))`) in
// one pass, bit for bit as the two: ReLU is monotone, so the window's largest ReLU is the
// ReLU of its largest value, won by the same tap (the first largest, or a NaN); and ReLU's
// backward passes a gradient where its output is not ≤ 0, so the winning tap gets the
// output's gradient where the window's maximum is > 0 or NaN, and no tap gets any otherwise.
// Such a window's index is stored as -1, and its backward adds +0 at its plane's first
// value (branch-free: which windows those are is as random as the signs of the activations).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstring>

#include "handle.h"

namespace {

struct Shape {
  int64_t n, c, h, w, oh, ow;
};

// Whether `v` replaces the window's running maximum `m`: larger, or NaN (libtorch's rule).
// N.B.: branch-free selects below: on real activations the comparison goes either way at
// random, and a mispredicted branch per tap cost more than the whole rest of the loop.
inline bool takes(float v, float m) { return (v > m) | (v != v); }

// The largest of a 2×2 window's taps, given row by row (a b / c d), by libtorch's rule, and
// which tap won (0–3).
inline float window_max(float a, float b, float c, float d, int32_t& tap) {
  float m = a;
  int32_t won = 0;
  const auto offer = [&](float v, int32_t k) {
    const bool t = takes(v, m);
    m = t ? v : m;
    won = t ? k : won;
  };
  offer(b, 1);
  offer(c, 2);
  offer(d, 3);
  tap = won;
  return m;
}

// libtorch's index (ih·W + iw within the plane) of tap `tap` of the window whose first tap is
// at `first`, in a plane `w` wide.
inline int64_t tap_index(int64_t first, int32_t tap, int64_t w) { return first + (tap >> 1) * w + (tap & 1); }

// A window's maximum `m` after a ReLU, and whether its tap takes the gradient (ReLU's
// backward: not where the output is ≤ 0; so where m > 0 or m is NaN).
inline bool passes(float m) { return !(m <= 0.0f); }

// The ReLU of a window's maximum `m`, given its first tap `a`; a window whose tap takes no
// gradient gets tap -1. Such a window's ReLUs are all zeros and the first wins, ReLU(a):
// −0 where a is −0 (libtorch's ReLU keeps it), else +0.
// N.B.: selects without branches, as in `window_max`: the signs are as random.
inline float relu_of(float m, float a, int32_t& tap) {
  const bool p = passes(m);
  tap |= -static_cast<int32_t>(!p);
  return p ? m : (a == 0.0f ? a : 0.0f);
}

// A window's index, or -1 for tap -1 (all bits set either way: a branch-free select).
inline int64_t index_of(int64_t first, int32_t tap, int64_t w) {
  return tap_index(first, tap, w) | static_cast<int64_t>(tap >> 31);
}

// `to[i] += v` where i ≥ 0; for i = -1, `to[0] += +0` (a no-op but for a zero's sign), so the
// scatter runs without a branch.
inline void add_at(float* to, int64_t i, float v) {
  const int64_t keep = ~(i >> 63);
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  bits &= static_cast<uint32_t>(keep);
  std::memcpy(&v, &bits, sizeof v);
  to[i & keep] += v;
}

// Outputs are computed in runs of up to `RUN`: first each one's value and winning tap (0–3,
// a 32-bit lane beside the value, so the loop vectorises), then, for autograd, the taps
// turned into libtorch's 64-bit indices (ih·W + iw within the plane).
constexpr int64_t RUN = 64;

// Each output of a plane's rows from its 2×2 window (stride 2), taps in libtorch's order.
template <bool Index, bool Relu>
void forward_nchw(const float* x, float* y, int64_t* ind, const Shape& p, int64_t from, int64_t to) {
  int32_t taps[RUN];
  for (int64_t q = from; q < to; ++q) {
    const float* xp = x + q * p.h * p.w;
    for (int64_t oh = 0; oh < p.oh; ++oh) {
      const int64_t base = 2 * oh * p.w;
      const float* r0 = xp + base;
      const float* r1 = r0 + p.w;
      float* yr = y + (q * p.oh + oh) * p.ow;
      for (int64_t o0 = 0; o0 < p.ow; o0 += RUN) {
        const int64_t n = std::min(RUN, p.ow - o0);
        for (int64_t j = 0; j < n; ++j) {
          const int64_t ix = 2 * (o0 + j);
          const float m = window_max(r0[ix], r0[ix + 1], r1[ix], r1[ix + 1], taps[j]);
          yr[o0 + j] = Relu ? relu_of(m, r0[ix], taps[j]) : m;
        }
        if (Index) {
          int64_t* ir = ind + (q * p.oh + oh) * p.ow + o0;
          for (int64_t j = 0; j < n; ++j) ir[j] = index_of(base + 2 * (o0 + j), taps[j], p.w);
        }
      }
    }
  }
}

template <bool Index, bool Relu>
void forward_cl(const float* x, float* y, int64_t* ind, const Shape& p, int64_t from, int64_t to) {
  const int64_t c = p.c;
  int32_t taps[RUN];
  for (int64_t b = from; b < to; ++b) {
    for (int64_t oh = 0; oh < p.oh; ++oh) {
      for (int64_t ow = 0; ow < p.ow; ++ow) {
        const int64_t o = ((b * p.oh + oh) * p.ow + ow) * c;
        const int64_t at = 2 * oh * p.w + 2 * ow;
        const float* pa = x + (b * p.h * p.w + at) * c;
        const float* pb = pa + c;
        const float* pc = pa + p.w * c;
        const float* pd = pc + c;
        for (int64_t c0 = 0; c0 < c; c0 += RUN) {
          const int64_t n = std::min(RUN, c - c0);
          for (int64_t j = 0; j < n; ++j) {
            const int64_t ch = c0 + j;
            const float m = window_max(pa[ch], pb[ch], pc[ch], pd[ch], taps[j]);
            y[o + ch] = Relu ? relu_of(m, pa[ch], taps[j]) : m;
          }
          if (Index) {
            for (int64_t j = 0; j < n; ++j) ind[o + c0 + j] = index_of(at, taps[j], p.w);
          }
        }
      }
    }
  }
}

void backward_nchw(const float* go, const int64_t* ind, float* gi, const Shape& p, int64_t from, int64_t to) {
  const int64_t outs = p.oh * p.ow;
  for (int64_t q = from; q < to; ++q) {
    float* gp = gi + q * p.h * p.w;
    for (int64_t o = 0; o < outs; ++o) add_at(gp, ind[q * outs + o], go[q * outs + o]);
  }
}

void backward_cl(const float* go, const int64_t* ind, float* gi, const Shape& p, int64_t from, int64_t to) {
  const int64_t c = p.c;
  for (int64_t b = from; b < to; ++b) {
    for (int64_t o = 0; o < p.oh * p.ow; ++o) {
      const int64_t at = (b * p.oh * p.ow + o) * c;
      // N.B.: `add_at` with index -1 adds +0 at this image's first position, channel `ch`.
      float* gb = gi + b * p.h * p.w * c;
      for (int64_t ch = 0; ch < c; ++ch) {
        const int64_t i = ind[at + ch];
        add_at(gb + ch, (i * c) | (i >> 63), go[at + ch]);
      }
    }
  }
}

// `f(from, to)` over the planes (NCHW) or images (channels-last) of `p`, split across torch's
// intra-op threads in chunks of at least about 32k outputs (a batch-4 step's pools run whole
// on the calling thread). Planes, and images, are independent in both directions.
template <typename F>
void each_chunk(const Shape& p, bool cl, const F& f) {
  const int64_t units = cl ? p.n : p.n * p.c;
  const int64_t per_unit = std::max<int64_t>(1, cl ? p.oh * p.ow * p.c : p.oh * p.ow);
  at::parallel_for(0, units, std::max<int64_t>(1, 32768 / per_unit), f);
}

// The layout this kernel runs on, if any: contiguous NCHW, or channels-last (not both: a
// tensor with one channel or a 1×1 plane is both, and then NCHW's order is its order).
enum class Layout { Nchw, ChannelsLast, Other };

Layout layout_of(const at::Tensor& x) {
  if (!x.device().is_cpu() || x.scalar_type() != at::kFloat || x.dim() != 4) return Layout::Other;
  if (x.is_contiguous()) return Layout::Nchw;
  if (x.is_contiguous(at::MemoryFormat::ChannelsLast)) return Layout::ChannelsLast;
  return Layout::Other;
}

// A 2×2 window at stride 2: floor(H/2) × floor(W/2) outputs.
Shape shape_of(const at::Tensor& x) {
  const auto d = x.sizes();
  return Shape{d[0], d[1], d[2], d[3], d[2] / 2, d[3] / 2};
}

at::MemoryFormat format_of(Layout l) {
  return l == Layout::ChannelsLast ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// Values and, with `Index`, indices of `x`'s pooling (after a ReLU, with `Relu`), in `x`'s
// layout.
template <bool Index, bool Relu>
std::pair<at::Tensor, at::Tensor> pool(const at::Tensor& x, Layout l) {
  const Shape p = shape_of(x);
  const auto opts = x.options().memory_format(format_of(l));
  at::Tensor y = at::empty({p.n, p.c, p.oh, p.ow}, opts);
  at::Tensor ind;
  if (Index) ind = at::empty({p.n, p.c, p.oh, p.ow}, opts.dtype(at::kLong));
  int64_t* ip = Index ? ind.data_ptr<int64_t>() : nullptr;
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const bool cl = l == Layout::ChannelsLast;
  each_chunk(p, cl, [&](int64_t from, int64_t to) {
    if (cl) {
      forward_cl<Index, Relu>(xp, yp, ip, p, from, to);
    } else {
      forward_nchw<Index, Relu>(xp, yp, ip, p, from, to);
    }
  });
  return {y, ind};
}

// The gradient of the input of shape `shape` (in layout `l`) from the output's gradient and
// the forward's indices: each output's gradient added at its window's winning tap.
at::Tensor pool_backward(const at::Tensor& grad, const at::Tensor& ind, at::IntArrayRef shape, Layout l) {
  const auto format = format_of(l);
  const at::Tensor go = grad.contiguous(format);
  // N.B.: `at::zeros` ignores a memory format in its options; `at::empty` keeps it.
  at::Tensor gi = at::empty(shape, go.options().memory_format(format)).zero_();
  const Shape p = shape_of(gi);
  const float* gop = go.data_ptr<float>();
  const int64_t* ip = ind.data_ptr<int64_t>();
  float* gip = gi.data_ptr<float>();
  const bool cl = l == Layout::ChannelsLast;
  each_chunk(p, cl, [&](int64_t from, int64_t to) {
    if (cl) {
      backward_cl(gop, ip, gip, p, from, to);
    } else {
      backward_nchw(gop, ip, gip, p, from, to);
    }
  });
  return gi;
}

struct MaxPool : public torch::autograd::Function<MaxPool> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, bool relu) {
    const Layout l = layout_of(x);
    auto [y, ind] = relu ? pool<true, true>(x, l) : pool<true, false>(x, l);
    ctx->save_for_backward({ind});
    ctx->saved_data["shape"] = x.sizes();
    ctx->saved_data["cl"] = l == Layout::ChannelsLast;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor ind = ctx->get_saved_variables()[0];
    const auto shape = ctx->saved_data["shape"].toIntVector();
    const Layout l = ctx->saved_data["cl"].toBool() ? Layout::ChannelsLast : Layout::Nchw;
    return {pool_backward(grads[0], ind, shape, l), at::Tensor()};
  }
};

// Whether this kernel takes `x` with a `k`×`k` window at stride `s`.
bool fits(const at::Tensor& x, Layout l, int64_t k, int64_t s) {
  return l != Layout::Other && k == 2 && s == 2 && x.size(2) >= 2 && x.size(3) >= 2;
}

at::Tensor max_pool(const at::Tensor& x, int64_t k, int64_t s, bool relu) {
  const Layout l = layout_of(x);
  if (!fits(x, l, k, s)) {
    return at::max_pool2d(relu ? at::relu(x) : x, {k, k}, {s, s});
  }
  if (c10::GradMode::is_enabled() && x.requires_grad()) return MaxPool::apply(x, relu);
  return relu ? pool<false, true>(x, l).first : pool<false, false>(x, l).first;
}

}  // namespace

extern "C" void* trainyard_max_pool2d(void* input, int64_t k, int64_t s, int32_t relu, char* err, size_t err_len) {
  return trainyard::guarded(err, err_len, [&] { return max_pool(trainyard::tensor(input), k, s, relu != 0); });
}

// Without autograd (src/train/backprop.rs): the values of a 2×2 pooling at stride 2 (after a
// ReLU, with `relu`), its indices written to `*indices` as a new handle the caller owns.
extern "C" void* trainyard_max_pool2d_indexed(void* input, int32_t relu, void** indices, char* err, size_t err_len) {
  return trainyard::guarded(err, err_len, [&] {
    const auto& x = trainyard::tensor(input);
    const Layout l = layout_of(x);
    TORCH_CHECK(fits(x, l, 2, 2),
                "max_pool2d_indexed takes a float CPU tensor [N, C, H, W], contiguous or channels-last, H and W at "
                "least 2");
    auto [y, ind] = relu != 0 ? pool<true, true>(x, l) : pool<true, false>(x, l);
    *indices = new at::Tensor(ind);
    return y;
  });
}

// The input's gradient of `max_pool2d_indexed` of `input`, from the output's gradient and the
// indices.
extern "C" void* trainyard_max_pool2d_backward(void* grad_out, void* indices, void* input, char* err, size_t err_len) {
  return trainyard::guarded(err, err_len, [&] {
    const auto &x = trainyard::tensor(input), &ind = trainyard::tensor(indices), &go = trainyard::tensor(grad_out);
    const Layout l = layout_of(x);
    TORCH_CHECK(fits(x, l, 2, 2) && ind.scalar_type() == at::kLong && go.sizes() == ind.sizes() &&
                    go.size(2) == x.size(2) / 2 && go.size(3) == x.size(3) / 2,
                "max_pool2d_backward takes the input of max_pool2d_indexed, its indices and a gradient of its output's shape");
    return pool_backward(go, ind, x.sizes(), l);
  });
}
