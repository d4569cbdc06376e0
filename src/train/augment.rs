//! Training-time augmentation, batched on the device: one affine grid per batch does every
//! image's RandomResizedCrop (torchvision's defaults: scale 0.08–1, ratio 3/4–4/3, back to
//! the image's size, bilinear) and RandomHorizontalFlip (p = 0.5) in a single `grid_sample`.

use super::rng::EpochRng;
use tch::Tensor;

pub const SCALE: (f64, f64) = (0.08, 1.0);
pub const RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

/// Which augmentations a job uses, on images of which size.
#[derive(Debug, Clone, Copy)]
pub struct AugmentParams {
    pub crop: bool,
    pub flip: bool,
    pub height: i64,
    pub width: i64,
}

/// One image's crop box (in pixels of the input) and flip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImagePlan {
    pub top: i64,
    pub left: i64,
    pub height: i64,
    pub width: i64,
    pub flip: bool,
}

impl ImagePlan {
    /// The whole `height`×`width` image, unflipped.
    pub fn whole(height: i64, width: i64) -> ImagePlan {
        ImagePlan { top: 0, left: 0, height, width, flip: false }
    }
}

impl AugmentParams {
    /// Draws a plan for `n` images.
    pub fn sample(&self, rng: &mut EpochRng, n: usize) -> Vec<ImagePlan> {
        (0..n)
            .map(|_| {
                let mut plan = if self.crop {
                    random_resized_crop(rng, self.height, self.width)
                } else {
                    ImagePlan::whole(self.height, self.width)
                };
                plan.flip = self.flip && rng.uniform() < 0.5;
                plan
            })
            .collect()
    }
}

/// torchvision's `RandomResizedCrop.get_params` for a `height`×`width` image.
pub fn random_resized_crop(rng: &mut EpochRng, height: i64, width: i64) -> ImagePlan {
    let area = (height * width) as f64;
    let (lo, hi) = (RATIO.0.ln(), RATIO.1.ln());
    for _ in 0..10 {
        let target = area * (SCALE.0 + (SCALE.1 - SCALE.0) * rng.uniform_f64());
        let aspect = (lo + (hi - lo) * rng.uniform_f64()).exp();
        let w = (target * aspect).sqrt().round() as i64;
        let h = (target / aspect).sqrt().round() as i64;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.below((height - h + 1) as u64) as i64;
            let left = rng.below((width - w + 1) as u64) as i64;
            return ImagePlan { top, left, height: h, width: w, flip: false };
        }
    }
    // torchvision's fallback: the central crop of the whole image within the ratio range
    // (a square image is always within it, so the crop is the whole image).
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < RATIO.0 {
        (width, (width as f64 / RATIO.0).round() as i64)
    } else if in_ratio > RATIO.1 {
        ((height as f64 * RATIO.1).round() as i64, height)
    } else {
        (width, height)
    };
    ImagePlan { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w, flip: false }
}

/// Applies each image's plan to a normalised float batch [B, C, H, W].
///
/// The result equals torchvision's crop followed by a bilinear resize to H×W: sample points
/// are clamped to the centres of the box's border pixels, so no pixel outside the box leaks
/// in (crops never shrink the image, so antialiasing would change nothing).
pub fn apply(images: &Tensor, plan: &[ImagePlan]) -> Tensor {
    let shape = images.size();
    let (c, h, w) = (shape[1], shape[2], shape[3]);
    let (height, width) = (h as f32, w as f32);
    // Normalised coordinate of pixel k's centre along a side of `n` pixels, with
    // align_corners = false.
    let centre = |k: i64, n: f32| (2 * k + 1) as f32 / n - 1.0;
    let b = plan.len() as i64;
    // N.B.: -1 and 1 are the outer edges of the border pixels, so a box maps to
    // x_in = x_out * w/W + (2·left + w)/W - 1 (x_out negated for a flip).
    let mut values: Vec<f32> = Vec::with_capacity(plan.len() * 10);
    for p in plan {
        let sx = p.width as f32 / width * if p.flip { -1.0 } else { 1.0 };
        let tx = (2 * p.left + p.width) as f32 / width - 1.0;
        let sy = p.height as f32 / height;
        let ty = (2 * p.top + p.height) as f32 / height - 1.0;
        values.extend([sx, 0.0, tx, 0.0, sy, ty]);
    }
    for p in plan {
        values.extend([
            centre(p.left, width),
            centre(p.top, height),
            centre(p.left + p.width - 1, width),
            centre(p.top + p.height - 1, height),
        ]);
    }
    let all = Tensor::from_slice(&values).to_device(images.device()).to_kind(images.kind());
    let theta = all.narrow(0, 0, 6 * b).view([b, 2, 3]);
    let bounds = all.narrow(0, 6 * b, 4 * b).view([b, 1, 1, 4]);
    let grid = Tensor::affine_grid_generator(&theta, [b, c, h, w], false)
        .clamp_tensor(Some(bounds.narrow(3, 0, 2)), Some(bounds.narrow(3, 2, 2)));
    // interpolation 0 = bilinear, padding 1 = border.
    images.grid_sampler_2d(&grid, 0, 1, false)
}
