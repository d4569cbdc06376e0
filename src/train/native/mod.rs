//! libtorch operations tch does not expose, compiled from the C++ beside this file by build.rs.

use tch::Tensor;

extern "C" {
    fn trainyard_thnn_conv2d(
        input: *mut std::ffi::c_void,
        weight: *mut std::ffi::c_void,
        bias: *mut std::ffi::c_void,
        kh: i64,
        kw: i64,
        sh: i64,
        sw: i64,
        ph: i64,
        pw: i64,
        err: *mut std::ffi::c_char,
        err_len: usize,
    ) -> *mut std::ffi::c_void;
    fn trainyard_members_conv2d(
        input: *mut std::ffi::c_void,
        weight: *mut std::ffi::c_void,
        bias: *mut std::ffi::c_void,
        g: i64,
        stride: i64,
        pad: i64,
        err: *mut std::ffi::c_char,
        err_len: usize,
    ) -> *mut std::ffi::c_void;
    fn trainyard_linear(
        input: *mut std::ffi::c_void,
        weight: *mut std::ffi::c_void,
        bias: *mut std::ffi::c_void,
        relu: i32,
        err: *mut std::ffi::c_char,
        err_len: usize,
    ) -> *mut std::ffi::c_void;
    fn trainyard_normalised_rows(
        images: *mut std::ffi::c_void,
        rows: *mut std::ffi::c_void,
        scale: *mut std::ffi::c_void,
        shift: *mut std::ffi::c_void,
        members: i64,
        err: *mut std::ffi::c_char,
        err_len: usize,
    ) -> *mut std::ffi::c_void;
    fn trainyard_max_pool2d(
        input: *mut std::ffi::c_void,
        k: i64,
        stride: i64,
        relu: i32,
        err: *mut std::ffi::c_char,
        err_len: usize,
    ) -> *mut std::ffi::c_void;
    fn trainyard_max_pool2d_indexed(
        input: *mut std::ffi::c_void,
        relu: i32,
        indices: *mut *mut std::ffi::c_void,
        err: *mut std::ffi::c_char,
        err_len: usize,
    ) -> *mut std::ffi::c_void;
    fn trainyard_max_pool2d_backward(
        grad_out: *mut std::ffi::c_void,
        indices: *mut std::ffi::c_void,
        input: *mut std::ffi::c_void,
        err: *mut std::ffi::c_char,
        err_len: usize,
    ) -> *mut std::ffi::c_void;
    fn trainyard_batch_norm_backward(
        grad_out: *mut std::ffi::c_void,
        input: *mut std::ffi::c_void,
        weight: *mut std::ffi::c_void,
        running_mean: *mut std::ffi::c_void,
        running_var: *mut std::ffi::c_void,
        save_mean: *mut std::ffi::c_void,
        save_invstd: *mut std::ffi::c_void,
        eps: f64,
        grad_weight: *mut std::ffi::c_void,
        grad_bias: *mut std::ffi::c_void,
        want_gx: i32,
        err: *mut std::ffi::c_char,
        err_len: usize,
    ) -> *mut std::ffi::c_void;
    fn trainyard_conv2d_backward(
        grad_out: *mut std::ffi::c_void,
        input: *mut std::ffi::c_void,
        weight: *mut std::ffi::c_void,
        grad_weight: *mut std::ffi::c_void,
        grad_bias: *mut std::ffi::c_void,
        g: i64,
        stride: i64,
        pad: i64,
        want_gx: i32,
        grouped: i32,
        err: *mut std::ffi::c_char,
        err_len: usize,
    ) -> *mut std::ffi::c_void;
}

/// Runs `f` with a buffer for libtorch's message; `f` returns a new `at::Tensor*` (which the
/// result then owns) or null with the message written. Panics with `op` and that message, as
/// tch's own operations do on a bad shape.
fn owned(op: &str, f: impl FnOnce(*mut std::ffi::c_char, usize) -> *mut std::ffi::c_void) -> Tensor {
    let mut err = [0 as std::ffi::c_char; 512];
    let out = f(err.as_mut_ptr(), err.len());
    if out.is_null() {
        // SAFETY: the C++ side wrote a NUL-terminated message into `err` (all zeros otherwise).
        panic!("{op}: {}", unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) }.to_string_lossy());
    }
    // SAFETY: a non-null result is a new `at::Tensor*` nobody else owns.
    unsafe { Tensor::from_ptr(out as *mut _) }
}

/// A 2-d convolution by libtorch's own CPU kernel (`thnn_conv2d`: im2col and a matrix
/// product per image) instead of oneDNN's, with autograd as for `conv2d`: the same result to
/// float summation order. Panics with libtorch's message on a bad shape, as tch's own
/// operations do.
pub fn thnn_conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, stride: i64, pad: i64) -> Tensor {
    let size = w.size();
    owned("thnn_conv2d", |err, len| {
        // SAFETY: tch's handles are `at::Tensor*`; the C++ side only reads them.
        unsafe {
            trainyard_thnn_conv2d(
                x.as_ptr() as *mut _,
                w.as_ptr() as *mut _,
                b.map_or(std::ptr::null_mut(), |b| b.as_ptr() as *mut _),
                size[2],
                size[3],
                stride,
                stride,
                pad,
                pad,
                err,
                len,
            )
        }
    })
}

/// A fused group's convolution member by member on libtorch's own kernel, as one autograd
/// node (conv.cpp): x [G·B, Cin, H, W] (member after member, contiguous), w [G·Cout, Cin, k,
/// k], b [G·Cout] → [G·B, Cout, OH, OW], each member's values and gradients the bits of its
/// `thnn_conv2d` alone.
pub fn members_conv2d(x: &Tensor, w: &Tensor, b: &Tensor, g: i64, stride: i64, pad: i64) -> Tensor {
    // SAFETY: as for `thnn_conv2d`.
    owned("members_conv2d", |err, len| unsafe {
        trainyard_members_conv2d(
            x.as_ptr() as *mut _,
            w.as_ptr() as *mut _,
            b.as_ptr() as *mut _,
            g,
            stride,
            pad,
            err,
            len,
        )
    })
}

/// `x.max_pool2d([k, k], [stride, stride], [0, 0], [1, 1], false)`, bit for bit, forward and
/// backward: a 2×2 window at stride 2 on a contiguous float CPU tensor, NCHW or channels-last,
/// by a branch-free loop of ours (pool.cpp; the result in the input's layout); anything else
/// by libtorch's kernel.
pub fn max_pool2d(x: &Tensor, k: i64, stride: i64) -> Tensor {
    // SAFETY: as for `thnn_conv2d`.
    owned("max_pool2d", |err, len| unsafe { trainyard_max_pool2d(x.as_ptr() as *mut _, k, stride, 0, err, len) })
}

/// `x.relu().max_pool2d([k, k], [stride, stride], [0, 0], [1, 1], false)`, bit for bit,
/// forward and backward, in one pass where `max_pool2d` takes its loop (a ReLU is monotone:
/// the window's largest value after it is its largest value's ReLU, from the same tap; pool.cpp
/// says how the gradient follows), and as those two operations elsewhere.
pub fn relu_max_pool2d(x: &Tensor, k: i64, stride: i64) -> Tensor {
    // SAFETY: as for `thnn_conv2d`.
    owned("relu_max_pool2d", |err, len| unsafe { trainyard_max_pool2d(x.as_ptr() as *mut _, k, stride, 1, err, len) })
}

/// Without autograd (`crate::train::backprop`): a 2×2 max pooling at stride 2 of a float CPU
/// tensor [N, C, H, W], contiguous or channels-last (after a ReLU, with `relu`), by
/// `max_pool2d`'s loop, in `x`'s layout, and its indices for `max_pool2d_backward`.
pub fn max_pool2d_indexed(x: &Tensor, relu: bool) -> (Tensor, Tensor) {
    let mut indices: *mut std::ffi::c_void = std::ptr::null_mut();
    // SAFETY: as for `thnn_conv2d`; on success the C++ side wrote a new `at::Tensor*` into
    // `indices`, which nobody else owns.
    let values = owned("max_pool2d_indexed", |err, len| unsafe {
        trainyard_max_pool2d_indexed(x.as_ptr() as *mut _, relu.into(), &mut indices, err, len)
    });
    // SAFETY: `owned` returned, so the C++ side succeeded and `indices` is its new handle.
    (values, unsafe { Tensor::from_ptr(indices as *mut _) })
}

/// The gradient of `max_pool2d_indexed`'s input `x` from its output's gradient and indices:
/// what `max_pool2d`'s autograd node computes.
pub fn max_pool2d_backward(grad: &Tensor, indices: &Tensor, x: &Tensor) -> Tensor {
    // SAFETY: as for `thnn_conv2d`.
    owned("max_pool2d_backward", |err, len| unsafe {
        trainyard_max_pool2d_backward(
            grad.as_ptr() as *mut _,
            indices.as_ptr() as *mut _,
            x.as_ptr() as *mut _,
            err,
            len,
        )
    })
}

/// Without autograd (`crate::train::backprop`): the backward of `thnn_conv2d` (g = 1) or
/// `members_conv2d` (g members) of `x` by `w`, from the output's gradient: each member's
/// `_slow_conv2d_backward`, as autograd calls it; with `grouped`, of a grouped `conv2d` in g
/// groups of `x` [B, G·Cin, H, W] (a group's members side by side, oneDNN's on channels-last
/// activations): `convolution_backward`, as autograd's node calls it. The weight's and bias's
/// gradients are added into `gw` and `gb` (as autograd accumulates into `.grad`). Returns the
/// input's gradient when `want_gx`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    grad: &Tensor,
    x: &Tensor,
    w: &Tensor,
    gw: &Tensor,
    gb: &Tensor,
    g: i64,
    stride: i64,
    pad: i64,
    want_gx: bool,
    grouped: bool,
) -> Option<Tensor> {
    // SAFETY: as for `thnn_conv2d`; the C++ side writes into `gw` and `gb` only.
    let gx = owned("conv2d_backward", |err, len| unsafe {
        trainyard_conv2d_backward(
            grad.as_ptr() as *mut _,
            x.as_ptr() as *mut _,
            w.as_ptr() as *mut _,
            gw.as_ptr() as *mut _,
            gb.as_ptr() as *mut _,
            g,
            stride,
            pad,
            want_gx.into(),
            grouped.into(),
            err,
            len,
        )
    });
    want_gx.then_some(gx)
}

/// Without autograd (`crate::train::backprop`): batch normalisation's backward in training, as
/// autograd's node for `native_batch_norm` computes it (norm.cpp), from the output's gradient,
/// the input, the weight, the running statistics and the batch's `save_mean` and `save_invstd`
/// (what `native_batch_norm` returned): the weight's and bias's gradients added into `gw` and
/// `gb`. Returns the input's gradient when `want_gx`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    grad: &Tensor,
    x: &Tensor,
    w: &Tensor,
    stats: [&Tensor; 2],
    saved: [&Tensor; 2],
    eps: f64,
    gw: &Tensor,
    gb: &Tensor,
    want_gx: bool,
) -> Option<Tensor> {
    // SAFETY: as for `thnn_conv2d`; the C++ side writes into `gw` and `gb` only.
    let gx = owned("batch_norm_backward", |err, len| unsafe {
        trainyard_batch_norm_backward(
            grad.as_ptr() as *mut _,
            x.as_ptr() as *mut _,
            w.as_ptr() as *mut _,
            stats[0].as_ptr() as *mut _,
            stats[1].as_ptr() as *mut _,
            saved[0].as_ptr() as *mut _,
            saved[1].as_ptr() as *mut _,
            eps,
            gw.as_ptr() as *mut _,
            gb.as_ptr() as *mut _,
            want_gx.into(),
            err,
            len,
        )
    });
    want_gx.then_some(gx)
}

/// A linear layer: `x.linear(w, b)` for x [B, in], w [out, in], b [out], or a fused group's
/// `b.baddbmm(x, w^T)` for x [G, B, in], w [G, out, in], b [G, 1, out], whose backward writes
/// the weight's gradient in the weight's own [out, in] order (linear.cpp) rather than
/// transposed: the same sums of products, without a strided add over every weight.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    linear_maybe_relu(x, w, b, false)
}

/// `linear(x, w, b).relu()`, bit for bit, forward and backward, as one autograd node (ReLU's
/// backward, `threshold_backward`, runs first in the linear layer's own).
pub fn linear_relu(x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    linear_maybe_relu(x, w, b, true)
}

fn linear_maybe_relu(x: &Tensor, w: &Tensor, b: &Tensor, relu: bool) -> Tensor {
    // SAFETY: as for `thnn_conv2d`.
    owned("linear", |err, len| unsafe {
        trainyard_linear(x.as_ptr() as *mut _, w.as_ptr() as *mut _, b.as_ptr() as *mut _, relu.into(), err, len)
    })
}

/// `images` ([N, C, H, W] uint8, contiguous, on the CPU) at `rows` ([K] int64), in float and
/// normalised per channel, fl(fl(x·scale[c]) − shift[c]) (`scale`, `shift`: [C] float), in one
/// pass (data.cpp): bit for bit what `index_select`, `to_kind(Float)`, `g_mul_` and `g_sub_`
/// make. `members` 0: [K, C, H, W] contiguous; `members` g ≥ 1: the rows member after member,
/// as [K/g, g·C, H, W] with the members' channels side by side, channels last in memory (a
/// fused group's first convolution's input). Panics with the reason on a bad row or shape.
pub fn normalised_rows(images: &Tensor, rows: &Tensor, scale: &Tensor, shift: &Tensor, members: i64) -> Tensor {
    // SAFETY: as for `thnn_conv2d`.
    owned("normalised_rows", |err, len| unsafe {
        trainyard_normalised_rows(
            images.as_ptr() as *mut _,
            rows.as_ptr() as *mut _,
            scale.as_ptr() as *mut _,
            shift.as_ptr() as *mut _,
            members,
            err,
            len,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn thnn_conv2d_computes_what_conv2d_does_forward_and_backward() {
        tch::manual_seed(3);
        let opts = (Kind::Float, Device::Cpu);
        let x = Tensor::randn([4, 3, 12, 12], opts).set_requires_grad(true);
        let w = Tensor::randn([6, 3, 5, 5], opts).set_requires_grad(true);
        let b = Tensor::randn([6], opts).set_requires_grad(true);
        let grads = |y: Tensor| {
            (&y * &y).sum(Kind::Float).backward();
            let g = [x.grad().copy(), w.grad().copy(), b.grad().copy()];
            for t in [&x, &w, &b] {
                let _ = t.grad().zero_();
            }
            (y.detach(), g)
        };
        let (y0, g0) = grads(x.conv2d(&w, Some(&b), [2, 2], [1, 1], [1, 1], 1));
        let (y1, g1) = grads(thnn_conv2d(&x, &w, Some(&b), 2, 1));
        assert_eq!(y0.size(), [4, 6, 5, 5]);
        let close = |a: &Tensor, b: &Tensor| {
            (a - b).abs().max().double_value(&[]) <= 1e-4 * (1.0 + b.abs().max().double_value(&[]))
        };
        assert!(close(&y1, &y0), "outputs differ");
        for (a, b) in g1.iter().zip(&g0) {
            assert!(close(a, b), "gradients differ");
        }
        let r = std::panic::catch_unwind(|| thnn_conv2d(&Tensor::zeros([1, 2, 8, 8], opts), &w, None, 1, 0));
        let msg = r.err().and_then(|e| e.downcast_ref::<String>().cloned()).unwrap_or_default();
        assert!(msg.starts_with("thnn_conv2d: "), "{msg}");
    }

    /// Values, and the input's gradient for an upstream gradient `up`, by `pool`.
    fn pool_and_grad(x: &Tensor, up: &Tensor, pool: impl Fn(&Tensor) -> Tensor) -> (Tensor, Tensor) {
        let x = x.detach().set_requires_grad(true);
        let y = pool(&x);
        (&y * up).sum(Kind::Float).backward();
        (y.detach(), x.grad())
    }

    #[test]
    fn max_pooling_and_relu_then_max_pooling_equal_libtorchs_bit_for_bit_in_both_layouts() {
        let opts = (Kind::Float, tch::Device::Cpu);
        tch::manual_seed(7);
        // Ties (ReLU's zeros), -inf and NaN among the values.
        let x = Tensor::randn([3, 5, 11, 13], opts).relu();
        let _ = x.get(0).get(1).get(2).fill_(f64::NAN);
        let _ = x.get(1).get(2).narrow(0, 0, 4).fill_(f64::NEG_INFINITY);
        let big = Tensor::randn([64, 6, 28, 28], opts);
        // Negative values (whole windows of them: a ReLU's zeros), NaN and -inf among them.
        let signed = Tensor::randn([2, 3, 9, 10], opts) - 0.5;
        let _ = signed.get(0).get(0).get(3).narrow(0, 2, 3).fill_(f64::NAN);
        let _ = signed.get(1).get(2).narrow(0, 0, 4).fill_(f64::NEG_INFINITY);
        // −0 first in windows of values ≤ 0 (the ReLU keeps it, and the pooling then too).
        let _ = signed.get(0).get(1).narrow(0, 4, 2).fill_(-1.0);
        let _ = signed.get(0).get(1).get(4).narrow(0, 0, 9).fill_(-0.0);
        for input in [x, big, signed] {
            for (k, s) in [(2, 2), (3, 2), (3, 3), (1, 1), (2, 1)] {
                let cl = input.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
                for x in [input.contiguous(), cl, input.transpose(2, 3)] {
                    for relu in [false, true] {
                        let theirs = |x: &Tensor| {
                            let x = if relu { x.relu() } else { x.shallow_clone() };
                            x.max_pool2d([k, k], [s, s], [0, 0], [1, 1], false)
                        };
                        let ours = |x: &Tensor| if relu { relu_max_pool2d(x, k, s) } else { max_pool2d(x, k, s) };
                        let up = Tensor::randn(theirs(&x).size().as_slice(), opts);
                        let (y0, g0) = pool_and_grad(&x, &up, theirs);
                        let (y1, g1) = pool_and_grad(&x, &up, ours);
                        let what = format!("relu {relu}, k {k} stride {s} on {:?} strides {:?}", x.size(), x.stride());
                        assert_eq!(y1.size(), y0.size(), "{what}");
                        assert_eq!(y1.stride(), y0.stride(), "{what}: the output keeps the input's layout");
                        // Bit for bit: NaN where libtorch has NaN, the same bits everywhere else (a zero's
                        // sign too).
                        let same = |a: &Tensor, b: &Tensor| {
                            let bits = |t: &Tensor| t.contiguous().view_dtype(Kind::Int);
                            bits(a).eq_tensor(&bits(b)).logical_or(&a.isnan().logical_and(&b.isnan())).all()
                        };
                        assert!(bool::try_from(same(&y1, &y0)).unwrap(), "{what}: values differ");
                        assert!(bool::try_from(same(&g1, &g0)).unwrap(), "{what}: gradients differ");
                        // Without autograd (evaluation), the same values.
                        let y2 = tch::no_grad(|| ours(&x));
                        assert!(bool::try_from(same(&y2, &y0)).unwrap(), "{what}: values without autograd differ");
                    }
                }
            }
        }
        let r = std::panic::catch_unwind(|| max_pool2d(&Tensor::zeros([1, 2, 3, 3], opts), 4, 1));
        let msg = r.err().and_then(|e| e.downcast_ref::<String>().cloned()).unwrap_or_default();
        assert!(msg.starts_with("max_pool2d: "), "{msg}");
    }

    #[test]
    fn a_linear_layer_with_its_relu_in_one_node_equals_the_two_bit_for_bit() {
        let opts = (Kind::Float, tch::Device::Cpu);
        tch::manual_seed(5);
        // Small integers, so that many outputs are exactly 0 (ReLU's edge) and many negative.
        let int = |shape: &[i64]| Tensor::randint_low(-3, 4, shape, opts);
        for (x, w, b) in
            [(int(&[4, 30]), int(&[7, 30]), int(&[7])), (int(&[3, 4, 30]), int(&[3, 7, 30]), int(&[3, 1, 7]))]
        {
            let run = |f: &dyn Fn(&Tensor, &Tensor, &Tensor) -> Tensor| {
                let leaves: Vec<Tensor> = [&x, &w, &b].iter().map(|t| t.detach().set_requires_grad(true)).collect();
                for _ in 0..2 {
                    let y = f(&leaves[0], &leaves[1], &leaves[2]);
                    (&y * &y.sin()).sum(Kind::Float).backward();
                }
                let y = f(&leaves[0], &leaves[1], &leaves[2]);
                let mut out = vec![y.detach()];
                out.extend(leaves.iter().map(|t| t.grad()));
                out
            };
            let one = run(&|x, w, b| linear_relu(x, w, b));
            let two = run(&|x, w, b| linear(x, w, b).relu());
            assert!(one[0].eq(0.0).sum(Kind::Int64).int64_value(&[]) > 0, "some outputs at ReLU's edge");
            for (name, (a, e)) in
                ["output", "input's gradient", "weight's gradient", "bias's gradient"].iter().zip(one.iter().zip(&two))
            {
                assert_eq!(a.size(), e.size(), "{name}");
                assert!(a.equal(e), "{name} differs");
            }
            let y = tch::no_grad(|| linear_relu(&x, &w, &b));
            assert!(y.equal(&two[0]), "without autograd");
        }
    }

    #[test]
    fn a_linear_layer_computes_what_libtorchs_does_forward_and_backward() {
        let opts = (Kind::Float, tch::Device::Cpu);
        tch::manual_seed(3);
        // A single model's layer, and a group of 3 members' (batch 4, 30 → 7).
        for (x, w, b) in [
            (Tensor::randn([4, 30], opts), Tensor::randn([7, 30], opts), Tensor::randn([7], opts)),
            (Tensor::randn([3, 4, 30], opts), Tensor::randn([3, 7, 30], opts), Tensor::randn([3, 1, 7], opts)),
        ] {
            let theirs = |x: &Tensor, w: &Tensor, b: &Tensor| {
                if w.dim() == 2 {
                    x.linear(w, Some(b))
                } else {
                    b.baddbmm(x, &w.transpose(1, 2), 1, 1)
                }
            };
            let run = |f: &dyn Fn(&Tensor, &Tensor, &Tensor) -> Tensor| {
                let leaves: Vec<Tensor> = [&x, &w, &b].iter().map(|t| t.detach().set_requires_grad(true)).collect();
                // Twice: the second backward adds into the gradients the first made (ours, in
                // place by the matrix product).
                for _ in 0..2 {
                    let y = f(&leaves[0], &leaves[1], &leaves[2]);
                    (&y * &y).sum(Kind::Float).backward();
                }
                let y = f(&leaves[0], &leaves[1], &leaves[2]);
                let mut out = vec![y.detach()];
                out.extend(leaves.iter().map(|t| t.grad()));
                out
            };
            let (ours, libtorch) = (run(&|x, w, b| linear(x, w, b)), run(&theirs));
            for (name, (a, e)) in ["output", "input's gradient", "weight's gradient", "bias's gradient"]
                .iter()
                .zip(ours.iter().zip(&libtorch))
            {
                assert_eq!(a.size(), e.size(), "{name}");
                // The weight's gradient is in the weight's layout: nothing transposed is left.
                assert!(a.is_contiguous(), "{name}");
                let d = (a - e).abs().max().double_value(&[]);
                assert!(d <= 1e-6 * (1.0 + e.abs().max().double_value(&[])), "{name} differs by {d}");
            }
            // Without autograd: libtorch's forward itself.
            let y = tch::no_grad(|| linear(&x, &w, &b));
            assert!(y.equal(&libtorch[0]));
        }
        let r = std::panic::catch_unwind(|| {
            linear(&Tensor::zeros([2, 5], opts), &Tensor::zeros([3, 4], opts), &Tensor::zeros([3], opts))
        });
        let msg = r.err().and_then(|e| e.downcast_ref::<String>().cloned()).unwrap_or_default();
        assert!(msg.starts_with("linear: "), "{msg}");
    }
}
