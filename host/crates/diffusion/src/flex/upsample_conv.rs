//! A 2x nearest upsample followed by a 3x3 convolution (padding 1), computed on the
//! low-resolution input, used in place of the two ops when the model runs on `flex`.
//!
//! Why: after a nearest upsample each 2x2 block of the image repeats one input pixel, so the
//! output pixel at phase `(a, b)` (row parity, column parity) sees only a 2x2 window of the
//! input, and the 3x3 kernel's taps that land on the same input pixel can be summed first.
//! Each phase is then a 2x2 convolution at the input's resolution: 16 multiply-adds per input
//! channel and input pixel instead of 36, and the 4x larger upsampled image is never made.
//! The VAE decoder's three upsamplers alone are about a quarter of its work at 512x512.
//!
//! Along each axis, with the 3x3 kernel's rows `w0, w1, w2`: phase 0 reads input rows
//! `i - 1, i` with weights `w0, w1 + w2`; phase 1 reads rows `i, i + 1` with `w0 + w1, w2`.
//!
//! The four 2x2 kernels are made once, at load ([`phase_weights`]): made per call they cost
//! about 85 ms for one 1280-channel upsampler on the 2-core build box, more than the phases
//! save at 256x256. They take 16/9 of the 3x3 weight's memory, kept beside it for sizes
//! other than 2x.
//!
//! Invariant: the same products and sums as the two ops, grouped differently, so results
//! match them to float rounding (the tests check against the definition in f64).

use rayon::prelude::*;

use super::Planes;
use super::conv::{ConvShape, conv2d};

/// `conv3x3(upsample2x(x))` with `phases` the 3x3 weight's [`phase_weights`]; returns
/// `[batch, out, 2 x height, 2 x width]`.
pub(crate) fn upsample2x_conv3x3(
    x: &[f32],
    phases: &[f32],
    bias: Option<&[f32]>,
    planes: Planes,
) -> Vec<f32> {
    let Planes {
        batch,
        in_channels,
        height,
        width,
    } = planes;
    let phase_len = phases.len() / 4;
    let out_channels = phase_len / (in_channels * 4);
    assert_eq!(
        phases.len(),
        16 * out_channels * in_channels,
        "phase weights shape"
    );
    let (out_height, out_width) = (2 * height, 2 * width);
    let mut out = vec![0f32; batch * out_channels * out_height * out_width];
    for a in 0..2 {
        for b in 0..2 {
            let phase = conv2d(
                x,
                &phases[(2 * a + b) * phase_len..][..phase_len],
                bias,
                ConvShape {
                    batch,
                    in_channels,
                    in_height: height,
                    in_width: width,
                    out_channels,
                    kernel: 2,
                    stride: 1,
                    // Phase 0 starts one row (column) above (left of) the pixel.
                    pad_top: 1 - a,
                    pad_left: 1 - b,
                    out_height: height,
                    out_width: width,
                },
            );
            // Every (a, b) phase fills its own quarter of each output plane.
            out.par_chunks_exact_mut(out_height * out_width)
                .zip(phase.par_chunks_exact(height * width))
                .for_each(|(plane, phase)| {
                    for (i, row) in phase.chunks_exact(width).enumerate() {
                        let target = &mut plane[(2 * i + a) * out_width..][..out_width];
                        for (j, v) in row.iter().enumerate() {
                            target[2 * j + b] = *v;
                        }
                    }
                });
        }
    }
    out
}

/// The four phases' `[out, in, 2, 2]` kernels of a 3x3 `weight` `[out, in, 3, 3]`, phase
/// `(a, b)` at index `2a + b`: the 3x3 taps that fall on the same input pixel, summed.
pub(crate) fn phase_weights(weight: &[f32]) -> Vec<f32> {
    // Which 3x3 rows (columns) each of the two taps of a phase sums.
    const TAPS: [[&[usize]; 2]; 2] = [[&[0], &[1, 2]], [&[0, 1], &[2]]];
    let kernels = weight.len() / 9;
    let mut phases = vec![0f32; 16 * kernels];
    for (index, phase) in phases.chunks_exact_mut(4 * kernels).enumerate() {
        let (a, b) = (index / 2, index % 2);
        phase
            .par_chunks_exact_mut(4)
            .zip(weight.par_chunks_exact(9))
            .for_each(|(taps, kernel)| {
                for (tap, value) in taps.iter_mut().enumerate() {
                    let (rows, columns) = (TAPS[a][tap / 2], TAPS[b][tap % 2]);
                    *value = rows
                        .iter()
                        .flat_map(|r| columns.iter().map(move |c| kernel[r * 3 + c]))
                        .sum();
                }
            });
    }
    phases
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flex::conv::tests::{reference as conv_reference, shape};
    use crate::flex::test_values as values;

    /// Upsample by repeating pixels, then the 3x3 convolution's definition.
    fn reference(x: &[f32], w: &[f32], bias: &[f32], planes: Planes) -> Vec<f32> {
        let Planes {
            batch,
            in_channels,
            height,
            width,
        } = planes;
        let (oh, ow) = (2 * height, 2 * width);
        let upsampled: Vec<f32> = x
            .chunks_exact(width)
            .flat_map(|row| {
                let wide: Vec<f32> = row.iter().flat_map(|v| [*v, *v]).collect();
                [wide.clone(), wide]
            })
            .flatten()
            .collect();
        let same_size = shape(batch, in_channels, oh, ow, bias.len(), 3, 1, 1, oh, ow);
        conv_reference(&upsampled, w, Some(bias), same_size)
    }

    #[test]
    fn matches_upsampling_then_convolving() {
        for input in [
            Planes {
                batch: 2,
                in_channels: 3,
                height: 5,
                width: 7,
            },
            Planes {
                batch: 1,
                in_channels: 4,
                height: 1,
                width: 1,
            },
        ] {
            let out_channels = 6;
            let x = values(
                input.batch * input.in_channels * input.height * input.width,
                7,
            );
            let w = values(out_channels * input.in_channels * 9, 8);
            let bias = values(out_channels, 9);
            let got = upsample2x_conv3x3(&x, &phase_weights(&w), Some(&bias), input);
            let want = reference(&x, &w, &bias, input);
            let worst = crate::flex::max_abs_diff(&got, &want);
            assert!(worst < 1e-4, "{input:?}: max abs error {worst}");
        }
    }
}
