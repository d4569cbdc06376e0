//! Training-time augmentation, batched on the device: one affine grid per batch does every
//! image's RandomResizedCrop (torchvision's defaults: scale 0.08–1, ratio 3/4–4/3, back to
//! 32×32, bilinear) and RandomHorizontalFlip (p = 0.5) in a single `grid_sample`.

use super::rng::EpochRng;
use tch::Tensor;

pub const SIZE: i64 = 32;
pub const SCALE: (f64, f64) = (0.08, 1.0);
pub const RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

/// Which augmentations a job uses.
#[derive(Debug, Clone, Copy)]
pub struct AugmentParams {
    pub crop: bool,
    pub flip: bool,
}

/// One image's crop box (in pixels of the 32×32 input) and flip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImagePlan {
    pub top: i64,
    pub left: i64,
    pub height: i64,
    pub width: i64,
    pub flip: bool,
}

impl ImagePlan {
    pub const IDENTITY: ImagePlan = ImagePlan { top: 0, left: 0, height: SIZE, width: SIZE, flip: false };
}

impl AugmentParams {
    /// Draws a plan for `n` images.
    pub fn sample(&self, rng: &mut EpochRng, n: usize) -> Vec<ImagePlan> {
        (0..n)
            .map(|_| {
                let mut plan = if self.crop { random_resized_crop(rng) } else { ImagePlan::IDENTITY };
                plan.flip = self.flip && rng.uniform() < 0.5;
                plan
            })
            .collect()
    }
}

/// torchvision's `RandomResizedCrop.get_params` for a 32×32 image.
pub fn random_resized_crop(rng: &mut EpochRng) -> ImagePlan {
    let area = (SIZE * SIZE) as f64;
    let (lo, hi) = (RATIO.0.ln(), RATIO.1.ln());
    for _ in 0..10 {
        let target = area * (SCALE.0 + (SCALE.1 - SCALE.0) * rng.uniform_f64());
        let aspect = (lo + (hi - lo) * rng.uniform_f64()).exp();
        let width = (target * aspect).sqrt().round() as i64;
        let height = (target / aspect).sqrt().round() as i64;
        if 0 < width && width <= SIZE && 0 < height && height <= SIZE {
            let top = rng.below((SIZE - height + 1) as u64) as i64;
            let left = rng.below((SIZE - width + 1) as u64) as i64;
            return ImagePlan { top, left, height, width, flip: false };
        }
    }
    // A square image always fits the ratio range, so the fallback is the whole image.
    ImagePlan::IDENTITY
}

/// Applies each image's plan to a normalised float batch [B, 3, 32, 32].
///
/// The result equals torchvision's crop followed by a bilinear resize to 32×32: sample points
/// are clamped to the centres of the box's border pixels, so no pixel outside the box leaks
/// in (crops never shrink the image, so antialiasing would change nothing).
pub fn apply(images: &Tensor, plan: &[ImagePlan]) -> Tensor {
    let size = SIZE as f32;
    // Normalised coordinate of pixel k's centre, with align_corners = false.
    let centre = |k: i64| (2 * k + 1) as f32 / size - 1.0;
    let b = plan.len() as i64;
    // N.B.: -1 and 1 are the outer edges of the border pixels, so a box maps to
    // x_in = x_out * w/W + (2·left + w)/W - 1 (x_out negated for a flip).
    let mut values: Vec<f32> = Vec::with_capacity(plan.len() * 10);
    for p in plan {
        let sx = p.width as f32 / size * if p.flip { -1.0 } else { 1.0 };
        let tx = (2 * p.left + p.width) as f32 / size - 1.0;
        let sy = p.height as f32 / size;
        let ty = (2 * p.top + p.height) as f32 / size - 1.0;
        values.extend([sx, 0.0, tx, 0.0, sy, ty]);
    }
    for p in plan {
        values.extend([centre(p.left), centre(p.top), centre(p.left + p.width - 1), centre(p.top + p.height - 1)]);
    }
    let all = Tensor::from_slice(&values).to_device(images.device()).to_kind(images.kind());
    let theta = all.narrow(0, 0, 6 * b).view([b, 2, 3]);
    let bounds = all.narrow(0, 6 * b, 4 * b).view([b, 1, 1, 4]);
    let grid = Tensor::affine_grid_generator(&theta, [b, 3, SIZE, SIZE], false)
        .clamp_tensor(Some(bounds.narrow(3, 0, 2)), Some(bounds.narrow(3, 2, 2)));
    // interpolation 0 = bilinear, padding 1 = border.
    images.grid_sampler_2d(&grid, 0, 1, false)
}
