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
}

/// A 2-d convolution by libtorch's own CPU kernel (`thnn_conv2d`: im2col and a matrix
/// product per image) instead of oneDNN's, with autograd as for `conv2d`: the same result to
/// float summation order. Panics with libtorch's message on a bad shape, as tch's own
/// operations do.
pub fn thnn_conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, stride: i64, pad: i64) -> Tensor {
    let size = w.size();
    let mut err = [0 as std::ffi::c_char; 512];
    // SAFETY: tch's handles are `at::Tensor*`; the C++ side only reads them and returns a new
    // handle (which `from_ptr` then owns) or null with its message written into `err`.
    unsafe {
        let out = trainyard_thnn_conv2d(
            x.as_ptr() as *mut _,
            w.as_ptr() as *mut _,
            b.map_or(std::ptr::null_mut(), |b| b.as_ptr() as *mut _),
            size[2],
            size[3],
            stride,
            stride,
            pad,
            pad,
            err.as_mut_ptr(),
            err.len(),
        );
        if out.is_null() {
            panic!("thnn_conv2d: {}", std::ffi::CStr::from_ptr(err.as_ptr()).to_string_lossy());
        }
        Tensor::from_ptr(out as *mut _)
    }
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
}
