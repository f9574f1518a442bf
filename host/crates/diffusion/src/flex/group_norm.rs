//! Group normalization over `[batch, channels, height, width]`, optionally followed by SiLU,
//! used in place of burn's ops when the model runs on `flex`.
//!
//! Why: as burn ops a group norm is a variance and mean pass, then a subtract, a divide, a
//! scale and a shift, each a full pass over the activation with a fresh allocation, and the
//! SiLU after it two more. This kernel reads each group three times (mean, variance, then
//! the result into a new buffer), one rayon job per (image, group). It reads its input
//! where it lies: in a resnet the input is also the residual, so normalizing in place would
//! first need a copy of it.
//!
//! Invariants: statistics are PyTorch's (mean, biased variance, `eps` inside the root),
//! summed in 16 f32 lanes per block of 16 384 terms and across blocks in f64, in a fixed
//! order per group, so results do not depend on scheduling.

use rayon::prelude::*;

use super::{LANES, silu};

/// The geometry and parameters of one group norm.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Norm<'a> {
    pub channels: usize,
    /// Elements per channel (height x width).
    pub spatial: usize,
    pub groups: usize,
    pub eps: f64,
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    /// Apply SiLU to the result.
    pub silu: bool,
}

/// `x` (`[batch, channels, spatial]`, row-major) normalized.
pub(crate) fn group_norm(x: &[f32], n: Norm<'_>) -> Vec<f32> {
    assert_eq!(
        n.channels % n.groups,
        0,
        "channels must split into equal groups"
    );
    let per_group = n.channels / n.groups * n.spatial;
    assert_eq!(x.len() % per_group, 0, "group norm shape");
    let mut out = vec![0f32; x.len()];
    out.par_chunks_exact_mut(per_group)
        .zip(x.par_chunks_exact(per_group))
        .enumerate()
        .for_each(|(job, (out, group))| {
            let first_channel = job % n.groups * (n.channels / n.groups);
            let (mean, variance) = statistics(group);
            let inverse_deviation = 1.0 / (variance + n.eps).sqrt();
            let planes = out
                .chunks_exact_mut(n.spatial)
                .zip(group.chunks_exact(n.spatial));
            for (c, (out, plane)) in planes.enumerate() {
                let scale = n.gamma[first_channel + c] as f64 * inverse_deviation;
                let shift = n.beta[first_channel + c] as f64 - mean * scale;
                affine(plane, out, scale as f32, shift as f32, n.silu);
            }
        });
    out
}

super::vectorized! {
    /// The mean and biased variance of `values`, in two passes (no cancellation).
    fn statistics(values: &[f32]) -> (f64, f64) {
        let count = values.len() as f64;
        let mean = lane_sum(values, |x| x) / count;
        let m = mean as f32;
        let variance = lane_sum(values, |x| (x - m) * (x - m)) / count;
        (mean, variance)
    }
}

/// The sum of `f` over `values`: f32 lanes over blocks of at most 1024 terms each, folded
/// into f64.
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0f64;
    for block in values.chunks(LANES * 1024) {
        let mut lanes = [0f32; LANES];
        let mut chunks = block.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (lane, &x) in lanes.iter_mut().zip(chunk) {
                *lane += f(x);
            }
        }
        total += chunks.remainder().iter().map(|&x| f(x) as f64).sum::<f64>();
        total += lanes.iter().map(|&l| l as f64).sum::<f64>();
    }
    total
}

super::vectorized! {
    /// `out = plane * scale + shift`, then SiLU when asked.
    fn affine(plane: &[f32], out: &mut [f32], scale: f32, shift: f32, with_silu: bool) -> () {
        let pairs = out.iter_mut().zip(plane);
        if with_silu {
            pairs.for_each(|(y, x)| *y = silu(*x * scale + shift));
        } else {
            pairs.for_each(|(y, x)| *y = *x * scale + shift);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flex::test_values as values;

    #[test]
    fn matches_the_definition_with_and_without_silu() {
        let (batch, channels, spatial, groups) = (2, 6, 35, 3);
        let input: Vec<f32> = values(batch * channels * spatial, 4)
            .iter()
            .map(|x| x * 3.0 + 1.5)
            .collect();
        let gamma = values(channels, 5);
        let beta = values(channels, 6);
        for with_silu in [false, true] {
            let norm = Norm {
                channels,
                spatial,
                groups,
                eps: 1e-5,
                gamma: &gamma,
                beta: &beta,
                silu: with_silu,
            };
            let got = group_norm(&input, norm);
            let per_group = channels / groups * spatial;
            for (i, (&x, &y)) in input.iter().zip(&got).enumerate() {
                let group = &input[i / per_group * per_group..][..per_group];
                let mean = group.iter().map(|&v| v as f64).sum::<f64>() / per_group as f64;
                let var = group
                    .iter()
                    .map(|&v| (v as f64 - mean).powi(2))
                    .sum::<f64>()
                    / per_group as f64;
                let c = i / spatial % channels;
                let mut want =
                    (x as f64 - mean) / (var + 1e-5).sqrt() * gamma[c] as f64 + beta[c] as f64;
                if with_silu {
                    want /= 1.0 + (-want).exp();
                }
                assert!((y as f64 - want).abs() < 1e-5, "element {i}: {y} vs {want}");
            }
        }
    }
}
