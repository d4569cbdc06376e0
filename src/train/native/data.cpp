// A mini-batch of a uint8 split, gathered and normalised in one pass: what `index_select`,
// `to(float)`, `mul_(scale)` and `sub_(shift)` (and, for a fused group, the permute to its
// members' channels side by side, channels last) make in five passes and as many dispatches.
//
// Each value is fl(fl(x·scale) − shift) in float, as libtorch's two scalar operations round
// it (a float tensor's scalar operand is taken as a float; `sub_` is `add` with alpha −1,
// whose vector path is fmadd(shift, −1, x): one rounding of x − shift). build.rs compiles this
// with -ffp-contract=off, so the compiler does not fuse the two into one rounding.
#include <ATen/ATen.h>

#include <string>

#include "handle.h"

namespace {

// images [N, C, H, W] uint8 contiguous on the CPU; rows [K] int64; scale and shift [C] float.
// members 0: [K, C, H, W] contiguous. members g ≥ 1: rows member after member (K = g·B), into
// [B, g·C, H, W] channels last in memory (member m's channel c at g·C position m·C + c).
at::Tensor normalised_rows(const at::Tensor& images, const at::Tensor& rows, const at::Tensor& scale,
                           const at::Tensor& shift, int64_t members) {
  TORCH_CHECK(images.device().is_cpu() && images.scalar_type() == at::kByte && images.dim() == 4 &&
                  images.is_contiguous(),
              "images must be contiguous uint8 [N, C, H, W] on the CPU");
  TORCH_CHECK(rows.device().is_cpu() && rows.scalar_type() == at::kLong && rows.dim() == 1,
              "rows must be int64 [K] on the CPU");
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  TORCH_CHECK(scale.scalar_type() == at::kFloat && shift.scalar_type() == at::kFloat && scale.numel() == c &&
                  shift.numel() == c && scale.device().is_cpu() && shift.device().is_cpu(),
              "scale and shift must be ", c, " floats on the CPU");
  TORCH_CHECK(members >= 0, "members must be at least 0");
  const auto idx = rows.contiguous();
  const int64_t k = idx.numel();
  TORCH_CHECK(members == 0 || k % members == 0, k, " rows do not split among ", members, " members");
  const int64_t* r = idx.data_ptr<int64_t>();
  for (int64_t i = 0; i < k; i++) {
    TORCH_CHECK(r[i] >= 0 && r[i] < n, "row ", r[i], " is out of range for ", n, " images");
  }
  const auto s = scale.contiguous(), t = shift.contiguous();
  const float* sc = s.data_ptr<float>();
  const float* sh = t.data_ptr<float>();
  const uint8_t* src = images.data_ptr<uint8_t>();
  const int64_t plane = h * w, image = c * plane;
  if (members == 0) {
    auto out = at::empty({k, c, h, w}, images.options().dtype(at::kFloat));
    float* o = out.data_ptr<float>();
    for (int64_t i = 0; i < k; i++) {
      const uint8_t* x = src + r[i] * image;
      for (int64_t ch = 0; ch < c; ch++) {
        const float a = sc[ch], b = sh[ch];
        for (int64_t p = 0; p < plane; p++) {
          const float v = static_cast<float>(x[ch * plane + p]) * a;
          o[ch * plane + p] = v - b;
        }
      }
      o += image;
    }
    return out;
  }
  const int64_t g = members, batch = k / g;
  auto out = at::empty({batch, h, w, g * c}, images.options().dtype(at::kFloat));
  float* o = out.data_ptr<float>();
  for (int64_t b = 0; b < batch; b++) {
    for (int64_t m = 0; m < g; m++) {
      const uint8_t* x = src + r[m * batch + b] * image;
      float* y = o + b * plane * g * c + m * c;
      for (int64_t ch = 0; ch < c; ch++) {
        const float a = sc[ch], bias = sh[ch];
        for (int64_t p = 0; p < plane; p++) {
          const float v = static_cast<float>(x[ch * plane + p]) * a;
          y[p * g * c + ch] = v - bias;
        }
      }
    }
  }
  return out.permute({0, 3, 1, 2});
}

}  // namespace

extern "C" void* trainyard_normalised_rows(void* images, void* rows, void* scale, void* shift, int64_t members,
                                           char* err, size_t err_len) {
  return trainyard::guarded(err, err_len, [&] {
    return normalised_rows(trainyard::tensor(images), trainyard::tensor(rows), trainyard::tensor(scale),
                           trainyard::tensor(shift), members);
  });
}
