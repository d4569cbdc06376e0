//! Max pooling 2×2 at stride 2 alone: libtorch's kernel against ours
//! (`trainyard::train::native::max_pool2d`), NCHW and channels-last, forward without autograd
//! (evaluation) and forward with backward (training), µs per call on one torch thread, on the
//! shapes of the tutorial CNN's two pools: solo at batch 4, a group of 8 members at batch 4,
//! evaluation at batch 1000. `cargo bench --bench pool` (BENCHMARKS.md, "Max pooling, linear layers and the allocator's decay").

use std::time::Instant;
use tch::{Device, Kind, Tensor};
use trainyard::train::native::max_pool2d;

fn micros(n: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() / n as f64 * 1e6
}

fn main() {
    tch::set_num_threads(1);
    let opts = (Kind::Float, Device::Cpu);
    let theirs = |x: &Tensor| x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
    let ours = |x: &Tensor| max_pool2d(x, 2, 2);
    println!("| input | layout | forward: libtorch | ours | forward and backward: libtorch | ours |");
    println!("|---|---|---|---|---|---|");
    for s in
        [[4i64, 6, 28, 28], [4, 16, 10, 10], [4, 48, 28, 28], [4, 128, 10, 10], [1000, 6, 28, 28], [1000, 16, 10, 10]]
    {
        let x = Tensor::randn(s, opts).relu();
        let cl = x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
        let n = if s[0] == 1000 { 30 } else { 3000 };
        for (layout, x) in [("NCHW", &x), ("channels-last", &cl)] {
            let xg = x.detach().set_requires_grad(true);
            let up = Tensor::randn(theirs(x).size().as_slice(), opts);
            let train = |pool: &dyn Fn(&Tensor) -> Tensor| (pool(&xg) * &up).sum(Kind::Float).backward();
            let r = [
                micros(n, || drop(tch::no_grad(|| theirs(x)))),
                micros(n, || drop(tch::no_grad(|| ours(x)))),
                micros(n, || train(&theirs)),
                micros(n, || train(&ours)),
            ];
            println!("| {s:?} | {layout} | {:.1} | {:.1} | {:.1} | {:.1} |", r[0], r[1], r[2], r[3]);
        }
    }
}
