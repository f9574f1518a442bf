//! 2D convolution on the CPU (NCHW, one group, no dilation), used in place of burn's when the
//! model runs on `flex`.
//!
//! Why: burn-flex re-lays the whole weight out (`[out, kh, kw, in]`) and the input (NHWC) on
//! one thread at every call, then scatters each tile's result into NCHW. SD's convolutions
//! are most of a UNet step, and their weights are fixed, so here the weight keeps the
//! checkpoint's `[out, in x kh x kw]` row-major layout, which is already the left operand
//! of the product; each rayon job builds the patch matrix of a band of output rows straight
//! from NCHW and multiplies into the output's NCHW rows.
//!
//! Invariants: each job writes only its band of every output channel of one image, and the
//! sums run in an order fixed by the shapes, so results do not depend on thread scheduling.

use rayon::prelude::*;

/// Output positions per job: a band of whole rows holding about this many positions keeps a
/// job's patch matrix within a few MiB while giving both cores work at 8x8.
const BAND_POSITIONS: usize = 256;

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
    /// Zero rows above and zero columns left of the input (the bottom and right padding
    /// follow from the output size).
    pub pad_top_left: usize,
    pub out_height: usize,
    pub out_width: usize,
}

/// `x` `[batch, in, h, w]`, `weight` `[out, in, k, k]`; returns `[batch, out, oh, ow]`.
pub(crate) fn conv2d(x: &[f32], weight: &[f32], bias: Option<&[f32]>, s: ConvShape) -> Vec<f32> {
    let positions = s.out_height * s.out_width;
    let patch = s.in_channels * s.kernel * s.kernel;
    assert_eq!(
        x.len(),
        s.batch * s.in_channels * s.in_height * s.in_width,
        "input shape"
    );
    assert_eq!(weight.len(), s.out_channels * patch, "weight shape");
    let mut out = vec![0f32; s.batch * s.out_channels * positions];
    let band_rows = (BAND_POSITIONS / s.out_width).clamp(1, s.out_height);
    let bands = s.out_height.div_ceil(band_rows);
    let out_ptr = super::SharedOut::new(&mut out);
    (0..s.batch * bands)
        .into_par_iter()
        .for_each_init(Vec::new, |patches, job| {
            let (b, band) = (job / bands, job % bands);
            let first_row = band * band_rows;
            let rows = band_rows.min(s.out_height - first_row);
            let image = &x[b * s.in_channels * s.in_height * s.in_width..];
            // SAFETY: job (b, band) alone writes positions first_row*ow.. of image b's channels.
            let out_at =
                unsafe { out_ptr.at((b * s.out_channels * positions) + first_row * s.out_width) };
            if let Some(bias) = bias {
                for (c, value) in bias.iter().enumerate() {
                    // SAFETY: as above; the band of channel c.
                    let row = unsafe { out_at.add(c * positions) };
                    unsafe { std::slice::from_raw_parts_mut(row, rows * s.out_width) }.fill(*value);
                }
            }
            let band_positions = rows * s.out_width;
            let (rhs, rhs_rs) = if s.kernel == 1 && s.stride == 1 && s.pad_top_left == 0 {
                // A 1x1 convolution multiplies the input rows themselves.
                (
                    image[first_row * s.in_width..].as_ptr(),
                    (s.in_height * s.in_width) as isize,
                )
            } else {
                patches.resize(patch * band_positions, 0.0);
                fill_patches(patches, image, first_row, rows, s);
                (patches.as_ptr(), band_positions as isize)
            };
            // SAFETY: the operands span `out_channels x patch`, `patch x band_positions` (rows of
            // `rhs_rs`) and the job's output band (rows of `positions`), all in bounds.
            unsafe {
                // out[out, band] (+)= weight[out, patch] . patches[patch, band]
                gemm::gemm(
                    s.out_channels,
                    band_positions,
                    patch,
                    out_at,
                    1,
                    positions as isize,
                    bias.is_some(),
                    weight.as_ptr(),
                    1,
                    patch as isize,
                    rhs,
                    1,
                    rhs_rs,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
    out
}

/// Writes the patch matrix of output rows `first_row..first_row + rows`: one row per
/// (input channel, kernel row, kernel column), one column per output position, zeros where
/// the kernel reaches into the padding.
fn fill_patches(patches: &mut [f32], image: &[f32], first_row: usize, rows: usize, s: ConvShape) {
    let band_positions = rows * s.out_width;
    let pad = s.pad_top_left as isize;
    let mut dst_rows = patches.chunks_exact_mut(band_positions);
    for c in 0..s.in_channels {
        let plane = &image[c * s.in_height * s.in_width..][..s.in_height * s.in_width];
        for ky in 0..s.kernel {
            for kx in 0..s.kernel {
                let dst = dst_rows.next().expect("one patch row per channel and tap");
                for (r, out_row) in dst.chunks_exact_mut(s.out_width).enumerate() {
                    let iy = ((first_row + r) * s.stride + ky) as isize - pad;
                    if iy < 0 || iy >= s.in_height as isize {
                        out_row.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * s.in_width..][..s.in_width];
                    let x0 = kx as isize - pad;
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
        }
    }
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
mod tests {
    use super::*;
    use crate::flex::test_values as values;

    /// The definition, one output at a time, in f64.
    fn reference(x: &[f32], w: &[f32], bias: Option<&[f32]>, s: ConvShape) -> Vec<f32> {
        let mut out = Vec::new();
        for b in 0..s.batch {
            for o in 0..s.out_channels {
                for oy in 0..s.out_height {
                    for ox in 0..s.out_width {
                        let mut sum = bias.map_or(0.0, |b| b[o] as f64);
                        for c in 0..s.in_channels {
                            for ky in 0..s.kernel {
                                for kx in 0..s.kernel {
                                    let iy =
                                        (oy * s.stride + ky) as isize - s.pad_top_left as isize;
                                    let ix =
                                        (ox * s.stride + kx) as isize - s.pad_top_left as isize;
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
        assert_eq!(got.len(), want.len());
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "{s:?}: max abs error {worst}");
    }

    fn shape(
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
            pad_top_left: pad,
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
