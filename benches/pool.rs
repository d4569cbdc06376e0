//! Max pooling 2×2 at stride 2 alone: libtorch's kernel against ours
//! (`trainyard::train::native::max_pool2d`), NCHW and channels-last, forward without autograd
//! (evaluation) and forward with backward (training), µs per call on one torch thread, on the
//! shapes of the tutorial CNN's two pools: solo at batch 4, a group of 8 members at batch 4,
//! evaluation at batch 1000; then a ReLU and the pooling, libtorch's two operations against
//! ours in one pass (`relu_max_pool2d`). `cargo bench --bench pool` (BENCHMARKS.md, "Max
//! pooling, linear layers and the allocator's decay"; "ReLU and max pooling in one pass").

use std::time::Instant;
use tch::{Device, Kind, Tensor};
use trainyard::train::native::{max_pool2d, relu_max_pool2d};

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

/// µs per call of each of `pools` on `x` forward without autograd, then of each forward and
/// backward, on `x`'s shape in both layouts: a table row per layout.
fn rows(s: [i64; 4], x: &Tensor, pools: &[&dyn Fn(&Tensor) -> Tensor]) {
    let opts = (Kind::Float, Device::Cpu);
    let cl = x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
    let n = if s[0] == 1000 { 30 } else { 3000 };
    for (layout, x) in [("NCHW", x), ("channels-last", &cl)] {
        let xg = x.detach().set_requires_grad(true);
        let up = Tensor::randn(pools[0](x).size().as_slice(), opts);
        let train = |pool: &dyn Fn(&Tensor) -> Tensor| (pool(&xg) * &up).sum(Kind::Float).backward();
        let mut r: Vec<f64> = pools.iter().map(|f| micros(n, || drop(tch::no_grad(|| f(x))))).collect();
        r.extend(pools.iter().map(|f| micros(n, || train(*f))));
        let cells: Vec<String> = r.iter().map(|t| format!("{t:.1}")).collect();
        println!("| {s:?} | {layout} | {} |", cells.join(" | "));
    }
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
        rows(s, &Tensor::randn(s, opts).relu(), &[&theirs, &ours]);
    }
    let theirs = |x: &Tensor| x.relu().max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
    let ours_apart = |x: &Tensor| max_pool2d(&x.relu(), 2, 2);
    let ours = |x: &Tensor| relu_max_pool2d(x, 2, 2);
    println!();
    println!(
        "| input | layout | ReLU and pooling, forward: libtorch | ReLU, then ours | ours in one | forward and \
         backward: libtorch | ReLU, then ours | ours in one |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for s in [[4i64, 6, 28, 28], [4, 16, 10, 10], [4, 48, 28, 28], [4, 128, 10, 10], [1000, 6, 28, 28]] {
        // Signed values: a ReLU's zeros, whole windows of them.
        rows(s, &Tensor::randn(s, opts), &[&theirs, &ours_apart, &ours]);
    }
}
