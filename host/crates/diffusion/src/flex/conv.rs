//! 2D convolution on the CPU (NCHW, one group, no dilation), used in place of burn's when the
//! model runs on `flex`.
//!
//! It serves the convolutions [`super::winograd`] does not: strided and 1x1 ones, the
//! upsampler's 2x2 phases, and those with fewer than 8 channels.
//!
//! Why: burn-flex re-lays the whole weight out (`[out, kh, kw, in]`) and the input (NHWC) on
//! one thread at every call, then scatters each tile's result into NCHW. The weights are
//! fixed, so here the weight keeps the checkpoint's `[out, in x kh x kw]` row-major layout,
//! which is already the left operand of the product. Per band of output rows, the patch
//! matrix is built straight from NCHW (channels in parallel) and one threaded gemm
//! multiplies it into the output's NCHW planes; bands are as large as [`BAND_BYTES`]
//! allows, since every product packs the weight anew.
//!
//! Invariants: gemm splits its output across threads but never a sum, and every sum runs in
//! an order fixed by the shapes, so results do not depend on thread scheduling.

use rayon::prelude::*;

use super::Matrix;

/// The geometry of one convolution.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvShape {
    pub batch: usize,
    pub in_channels: usize,
    pub in_height: usize,
    pub in_width: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    /// Zero rows above the input (the bottom padding follows from the output size).
    pub pad_top: usize,
    /// Zero columns left of the input (the right padding follows from the output size).
    pub pad_left: usize,
    pub out_height: usize,
    pub out_width: usize,
}

/// The most patch-matrix bytes one band may take: large enough that the weight is packed
/// only a few times per image, small enough to stay near the caches (a whole 512x512 VAE
/// plane would take over a gigabyte). A 320-channel 3x3 convolution at 64x64, batch 2,
/// measured 180-270 GFLOP/s on the 2-core AVX-512 build box (the VM's speed varies).
const BAND_BYTES: usize = 16 << 20;

/// `x` `[batch, in, h, w]`, `weight` `[out, in, k, k]`; returns `[batch, out, oh, ow]`.
pub(crate) fn conv2d(x: &[f32], weight: &[f32], bias: Option<&[f32]>, s: ConvShape) -> Vec<f32> {
    let positions = s.out_height * s.out_width;
    let patch = s.in_channels * s.kernel * s.kernel;
    let image_len = s.in_channels * s.in_height * s.in_width;
    assert_eq!(x.len(), s.batch * image_len, "input shape");
    assert_eq!(weight.len(), s.out_channels * patch, "weight shape");
    let mut out = vec![0f32; s.batch * s.out_channels * positions];
    let direct = s.kernel == 1 && s.stride == 1 && s.pad_top == 0 && s.pad_left == 0;
    let band_rows = if direct {
        s.out_height
    } else {
        (BAND_BYTES / (4 * patch * s.out_width)).clamp(1, s.out_height)
    };
    let mut patches = Vec::new();
    for (image, out) in x
        .chunks_exact(image_len)
        .zip(out.chunks_exact_mut(s.out_channels * positions))
    {
        if let Some(bias) = bias {
            for (plane, value) in out.chunks_exact_mut(positions).zip(bias) {
                plane.fill(*value);
            }
        }
        for first_row in (0..s.out_height).step_by(band_rows) {
            let rows = band_rows.min(s.out_height - first_row);
            let band = rows * s.out_width;
            let (rhs, rhs_rs) = if direct {
                // A 1x1 convolution multiplies the input planes themselves.
                (image, s.in_height * s.in_width)
            } else {
                patches.resize(patch * band, 0.0);
                fill_patches(&mut patches, image, first_row, rows, s);
                (&patches[..], band)
            };
            let out_band = &mut out[first_row * s.out_width..];
            // SAFETY: `weight` is `out x patch`; `rhs` holds `patch` rows of `rhs_rs` with
            // `band` columns used; `out_band` holds `out` planes of `positions` from the
            // band's first position, `band` of them written; all in bounds.
            unsafe {
                // out[out, band] (+)= weight[out, patch] . patches[patch, band]
                super::gemm(
                    [s.out_channels, band, patch],
                    out_band.as_mut_ptr(),
                    positions,
                    bias.is_some(),
                    Matrix::rows(weight.as_ptr(), patch),
                    Matrix::rows(rhs.as_ptr(), rhs_rs),
                    1.0,
                    true,
                );
            }
        }
    }
    out
}

/// Writes the patch matrix of output rows `first_row..first_row + rows` of one image: one
/// row per (input channel, kernel row, kernel column), one column per output position,
/// zeros where the kernel reaches into the padding. Rows of different channels are filled
/// in parallel.
fn fill_patches(patches: &mut [f32], image: &[f32], first_row: usize, rows: usize, s: ConvShape) {
    let positions = rows * s.out_width;
    let taps = s.kernel * s.kernel;
    let (pad_top, pad_left) = (s.pad_top as isize, s.pad_left as isize);
    let plane_len = s.in_height * s.in_width;
    patches
        .par_chunks_exact_mut(taps * positions)
        .zip(image.par_chunks_exact(plane_len))
        .for_each(|(rows, plane)| {
            for (tap, dst) in rows.chunks_exact_mut(positions).enumerate() {
                let (ky, kx) = (tap / s.kernel, tap % s.kernel);
                for (oy, out_row) in dst.chunks_exact_mut(s.out_width).enumerate() {
                    let iy = ((first_row + oy) * s.stride + ky) as isize - pad_top;
                    if iy < 0 || iy >= s.in_height as isize {
                        out_row.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * s.in_width..][..s.in_width];
                    let x0 = kx as isize - pad_left;
                    if s.stride == 1 {
                        copy_shifted(out_row, src, x0);
                    } else {
                        for (ox, v) in out_row.iter_mut().enumerate() {
                            let ix = (ox * s.stride) as isize + x0;
                            *v = if ix >= 0 && (ix as usize) < s.in_width {
                                src[ix as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        });
}

/// `dst[i] = src[i + shift]`, zero outside `src`.
fn copy_shifted(dst: &mut [f32], src: &[f32], shift: isize) {
    let start = (-shift).clamp(0, dst.len() as isize) as usize;
    let end = (src.len() as isize - shift).clamp(start as isize, dst.len() as isize) as usize;
    dst[..start].fill(0.0);
    dst[start..end]
        .copy_from_slice(&src[(start as isize + shift) as usize..(end as isize + shift) as usize]);
    dst[end..].fill(0.0);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::flex::test_values as values;

    /// The definition, one output at a time, in f64.
    pub(crate) fn reference(x: &[f32], w: &[f32], bias: Option<&[f32]>, s: ConvShape) -> Vec<f32> {
        let mut out = Vec::new();
        for b in 0..s.batch {
            for o in 0..s.out_channels {
                for oy in 0..s.out_height {
                    for ox in 0..s.out_width {
                        let mut sum = bias.map_or(0.0, |b| b[o] as f64);
                        for c in 0..s.in_channels {
                            for ky in 0..s.kernel {
                                for kx in 0..s.kernel {
                                    let iy = (oy * s.stride + ky) as isize - s.pad_top as isize;
                                    let ix = (ox * s.stride + kx) as isize - s.pad_left as isize;
                                    if iy < 0
                                        || ix < 0
                                        || iy >= s.in_height as isize
                                        || ix >= s.in_width as isize
                                    {
                                        continue;
                                    }
                                    let xv = x[((b * s.in_channels + c) * s.in_height
                                        + iy as usize)
                                        * s.in_width
                                        + ix as usize];
                                    let wv = w
                                        [((o * s.in_channels + c) * s.kernel + ky) * s.kernel + kx];
                                    sum += xv as f64 * wv as f64;
                                }
                            }
                        }
                        out.push(sum as f32);
                    }
                }
            }
        }
        out
    }

    fn check(s: ConvShape, with_bias: bool) {
        let x = values(s.batch * s.in_channels * s.in_height * s.in_width, 1);
        let w = values(s.out_channels * s.in_channels * s.kernel * s.kernel, 2);
        let bias = values(s.out_channels, 3);
        let bias = with_bias.then_some(bias.as_slice());
        let got = conv2d(&x, &w, bias, s);
        let want = reference(&x, &w, bias, s);
        let worst = crate::flex::max_abs_diff(&got, &want);
        assert!(worst < 1e-4, "{s:?}: max abs error {worst}");
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn shape(
        batch: usize,
        cin: usize,
        h: usize,
        w: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        oh: usize,
        ow: usize,
    ) -> ConvShape {
        ConvShape {
            batch,
            in_channels: cin,
            in_height: h,
            in_width: w,
            out_channels: cout,
            kernel: k,
            stride,
            pad_top: pad,
            pad_left: pad,
            out_height: oh,
            out_width: ow,
        }
    }

    #[test]
    fn three_by_three_same_padding_over_several_bands() {
        check(shape(2, 5, 40, 19, 7, 3, 1, 1, 40, 19), true);
    }

    #[test]
    fn stride_two_downsample() {
        check(shape(1, 4, 17, 16, 6, 3, 2, 1, 9, 8), true);
    }

    #[test]
    fn vae_encoder_downsample_pads_only_bottom_right() {
        // Input 16x16 padded to 17x17 at the bottom and right, stride 2: 8x8.
        check(shape(2, 3, 16, 16, 4, 3, 2, 0, 8, 8), false);
    }

    #[test]
    fn one_by_one_reads_the_input_rows_directly() {
        check(shape(2, 6, 23, 30, 5, 1, 1, 0, 23, 30), true);
    }
}
