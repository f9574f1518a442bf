//! 3x3 convolution with stride 1 and padding 1 by Winograd's minimal filtering F(2x2, 3x3),
//! used in place of [`super::conv`] for those convolutions when the model runs on `flex`.
//!
//! Why: they are nearly all of SD's convolution work (two per ResNet block, in the UNet and
//! the VAE decoder), and convolution is about half of a UNet step. F(2x2, 3x3) computes each
//! 2x2 output tile from a 4x4 input tile with 16 multiplies per channel pair instead of 36:
//! the input tile `d` and the kernel `g` are taken to a 4x4 domain (`Bt d B`, `G g Gt`),
//! multiplied elementwise, and the product is brought back (`At m A`). Summed over input
//! channels, the elementwise products are 16 independent matrix products
//! `M[x][out, tiles] = U[x][out, in] . V[x][in, tiles]`, where the time goes; the transforms
//! are additions only, linear in the channel count.
//!
//! The transformed kernels `U` (16/9 of the 3x3 weight's memory, which they replace) are made
//! once at load ([`transform_weights`]), row-major `[16][out][in]`. (Stored column-major,
//! gemm reads them unpacked, which measured up to twice as slow at 1280 channels.)
//!
//! Invariants: the transforms' coefficients are 0, +-1 and +-1/2, so results differ from the
//! direct sum by rounding only (the tests bound it against the definition in f64). Each
//! product and transform is one rayon job writing its own elements, and every sum runs in an
//! order fixed by the shapes, so results do not depend on thread scheduling.

use rayon::prelude::*;

use super::{Matrix, Planes, SharedOut, vectorized};

/// Below this many input or output channels the transforms cost more than the multiplies
/// they save (SD's `conv_in` and the VAE's `conv_out`, with 3 or 4 channels).
const MIN_CHANNELS: usize = 8;

/// The most bytes the transformed input and output of one band of tiles may take together,
/// so that they stay near the caches...
const BAND_BYTES: usize = 16 << 20;

/// ...unless that leaves a band fewer tiles than this: each product packs its `U` anew, and
/// at 1280 channels two images of 8x8 tiles in one band measured 20-30 % faster than one.
const MIN_BAND_TILES: usize = 128;

/// Whether a convolution with this `[out, in, k, k]` weight shape, stride and padding is one
/// this module computes.
pub(crate) fn suits(shape: [usize; 4], stride: usize, padding: usize) -> bool {
    let [out_channels, in_channels, kernel, _] = shape;
    kernel == 3
        && stride == 1
        && padding == 1
        && in_channels >= MIN_CHANNELS
        && out_channels >= MIN_CHANNELS
}

/// `G g Gt` of every `[out, in, 3, 3]` kernel, laid out `[16][out][in]`. Computed in f64, so
/// each value is the exact transform rounded once.
pub(crate) fn transform_weights(weight: &[f32], out_channels: usize) -> Vec<f32> {
    const G: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let pairs = weight.len() / 9;
    let in_channels = pairs / out_channels;
    assert_eq!(weight.len(), 9 * out_channels * in_channels, "weight shape");
    let mut transformed = vec![0f32; 16 * pairs];
    // One job per row: element `x` of output channel `o`'s kernels, across input channels.
    transformed
        .par_chunks_exact_mut(in_channels)
        .enumerate()
        .for_each(|(row, values)| {
            let (x, o) = (row / out_channels, row % out_channels);
            let (i, j) = (x / 4, x % 4);
            let kernels = &weight[o * in_channels * 9..][..in_channels * 9];
            for (value, g) in values.iter_mut().zip(kernels.chunks_exact(9)) {
                let mut sum = 0f64;
                for u in 0..3 {
                    for v in 0..3 {
                        sum += G[i][u] * g[u * 3 + v] as f64 * G[j][v];
                    }
                }
                *value = sum as f32;
            }
        });
    transformed
}

/// The `[out, in, 3, 3]` kernels whose [`transform_weights`] is `transformed`: `L U Lt` with
/// `L` the left inverse of `G` that reads rows 0 and 3 as they are and row 1 as the
/// difference of rows 1 and 2, so each kernel value comes back to within a few roundings
/// of `transformed`'s values (exact at the corners). For what needs the plain weight
/// (DoRA's norms), since a Winograd layer keeps no other copy.
pub(crate) fn untransform_weights(transformed: &[f32], out_channels: usize) -> Vec<f32> {
    const L: [[f64; 4]; 3] = [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, -1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let pairs = transformed.len() / 16;
    let in_channels = pairs / out_channels;
    let mut weight = vec![0f32; 9 * pairs];
    weight
        .par_chunks_exact_mut(9)
        .enumerate()
        .for_each(|(pair, kernel)| {
            let (o, c) = (pair / in_channels, pair % in_channels);
            let at = |x: usize| transformed[(x * out_channels + o) * in_channels + c] as f64;
            for u in 0..3 {
                for v in 0..3 {
                    let mut sum = 0f64;
                    for i in 0..4 {
                        for j in 0..4 {
                            sum += L[u][i] * at(i * 4 + j) * L[v][j];
                        }
                    }
                    kernel[u * 3 + v] = sum as f32;
                }
            }
        });
    weight
}

/// The 3x3 convolution (stride 1, padding 1) of `x` `[batch, in, h, w]` with `transformed`
/// weights from [`transform_weights`]; returns `[batch, out, h, w]`.
pub(crate) fn conv3x3(
    x: &[f32],
    transformed: &[f32],
    bias: Option<&[f32]>,
    planes: Planes,
) -> Vec<f32> {
    let Planes {
        batch,
        in_channels,
        height,
        width,
    } = planes;
    let out_channels = transformed.len() / (16 * in_channels);
    assert_eq!(
        transformed.len(),
        16 * in_channels * out_channels,
        "weight shape"
    );
    assert_eq!(x.len(), batch * in_channels * height * width, "input shape");
    let tiles = Tiles {
        rows: height.div_ceil(2),
        columns: width.div_ceil(2),
        height,
        width,
    };
    let mut out = vec![0f32; batch * out_channels * height * width];
    let most_tiles = (BAND_BYTES / (16 * 4 * (in_channels + out_channels))).max(MIN_BAND_TILES);
    let mut domain_in = Vec::new();
    let mut domain_out = Vec::new();
    for band in tiles.bands(batch, most_tiles) {
        let band_tiles = band.tiles(tiles.columns);
        domain_in.resize(16 * in_channels * band_tiles, 0.0);
        domain_out.resize(16 * out_channels * band_tiles, 0.0);
        // V: each input channel's tiles to the Winograd domain, `[in][16][tiles]`.
        domain_in
            .par_chunks_exact_mut(16 * band_tiles)
            .enumerate()
            .for_each(|(c, v)| {
                let mut rows = vec![0f32; 8 * (tiles.columns + 1)];
                let mut vertical_row = vec![0f32; 2 * (tiles.columns + 1)];
                for (image, tile_row, first_tile) in band.tile_rows(tiles.columns) {
                    let plane = &x[(image * in_channels + c) * height * width..][..height * width];
                    tiles.gather_rows(plane, tile_row, &mut rows);
                    input_transform(&rows, &mut vertical_row, v, first_tile, band_tiles);
                }
            });
        // M[x] = U[x] . V[x], one product per job, `[out][16][tiles]`; single-threaded
        // unless there are more threads than products.
        let threaded = rayon::current_num_threads() > 16;
        let product = SharedOut::new(&mut domain_out);
        (0..16).into_par_iter().for_each(|x| {
            // SAFETY: `U[x]` is `[out][in]`; `V[x]` has `in` rows of `band_tiles`, 16 x
            // `band_tiles` apart, and so has `M[x]` with `out` rows; each job writes only its
            // own `x`.
            unsafe {
                super::gemm(
                    [out_channels, band_tiles, in_channels],
                    product.at(x * band_tiles),
                    16 * band_tiles,
                    false,
                    Matrix::rows(
                        transformed[x * out_channels * in_channels..].as_ptr(),
                        in_channels,
                    ),
                    Matrix::rows(domain_in[x * band_tiles..].as_ptr(), 16 * band_tiles),
                    1.0,
                    threaded,
                );
            }
        });
        // Y: back from the domain into each output plane, plus the bias.
        let band_out = &mut out[band.first_image * out_channels * height * width..]
            [..band.images * out_channels * height * width];
        band_out
            .par_chunks_exact_mut(height * width)
            .enumerate()
            .for_each(|(index, plane)| {
                let (image, o) = (index / out_channels, index % out_channels);
                let bias = bias.map_or(0.0, |b| b[o]);
                let m = &domain_out[o * 16 * band_tiles..][..16 * band_tiles];
                let mut vertical = vec![0f32; 4 * tiles.columns];
                let mut outputs = vec![0f32; 4 * tiles.columns];
                let rows = band.tile_rows(tiles.columns);
                let own = rows.filter(|(of, _, _)| *of == band.first_image + image);
                for (_, tile_row, first_tile) in own {
                    output_transform(m, first_tile, band_tiles, bias, &mut vertical, &mut outputs);
                    tiles.scatter_rows(&outputs, tile_row, plane);
                }
            });
    }
    out
}

/// How an `height x width` plane splits into 2x2 output tiles (the last ones cut short when
/// a side is odd).
#[derive(Clone, Copy)]
struct Tiles {
    rows: usize,
    columns: usize,
    height: usize,
    width: usize,
}

/// The tiles one pass transforms and multiplies: whole images when they are small, else
/// some rows of tiles of one image.
#[derive(Clone, Copy)]
struct Band {
    first_image: usize,
    images: usize,
    first_row: usize,
    rows: usize,
}

impl Tiles {
    /// The bands covering `batch` images, each of at most `most_tiles` tiles (but at least
    /// one row of tiles).
    fn bands(self, batch: usize, most_tiles: usize) -> impl Iterator<Item = Band> {
        let rows = (most_tiles / self.columns).clamp(1, self.rows);
        let images = if rows == self.rows {
            (most_tiles / (self.rows * self.columns)).clamp(1, batch)
        } else {
            1
        };
        (0..batch).step_by(images).flat_map(move |first_image| {
            (0..self.rows).step_by(rows).map(move |first_row| Band {
                first_image,
                images: images.min(batch - first_image),
                first_row,
                rows: rows.min(self.rows - first_row),
            })
        })
    }

    /// The four input rows tile row `tile_row` reads (from one above its first output row),
    /// each split into even and odd columns of the zero-padded row: `rows` is
    /// `[row][even, odd][columns + 1]`, where even `k` is input column `2k - 1` and odd `k`
    /// is column `2k`.
    fn gather_rows(self, plane: &[f32], tile_row: usize, rows: &mut [f32]) {
        let half = self.columns + 1;
        for (i, split) in rows.chunks_exact_mut(2 * half).enumerate() {
            let y = (2 * tile_row + i)
                .checked_sub(1)
                .filter(|&y| y < self.height);
            let Some(y) = y else {
                split.fill(0.0);
                continue;
            };
            let source = &plane[y * self.width..][..self.width];
            let (even, odd) = split.split_at_mut(half);
            deinterleave(source, even, odd);
        }
    }

    /// Writes one row of tiles' outputs, `outputs` `[2 rows][2 columns][tile]` as
    /// [`output_transform`] makes them, into `plane`, leaving out what falls past its edges.
    fn scatter_rows(self, outputs: &[f32], tile_row: usize, plane: &mut [f32]) {
        for a in 0..2 {
            let y = 2 * tile_row + a;
            if y >= self.height {
                break;
            }
            let row = &mut plane[y * self.width..][..self.width];
            let both = &outputs[2 * a * self.columns..][..2 * self.columns];
            let (left, right) = both.split_at(self.columns);
            interleave(left, right, row);
        }
    }
}

impl Band {
    fn tiles(self, columns: usize) -> usize {
        self.images * self.rows * columns
    }

    /// Each row of tiles in the band: its image, its tile row in that image, and the index
    /// of its first tile in the band.
    fn tile_rows(self, columns: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        (0..self.images).flat_map(move |i| {
            (0..self.rows).map(move |r| {
                (
                    self.first_image + i,
                    self.first_row + r,
                    (i * self.rows + r) * columns,
                )
            })
        })
    }
}

vectorized! {
    /// `even[k] = source[2k - 1]`, `odd[k] = source[2k]`, zero outside `source`.
    fn deinterleave(source: &[f32], even: &mut [f32], odd: &mut [f32]) -> () {
        let pairs = source.len() / 2;
        even[0] = 0.0;
        let evens = &mut even[1..=pairs];
        for ((pair, o), e) in source.chunks_exact(2).zip(&mut odd[..pairs]).zip(evens) {
            *o = pair[0];
            *e = pair[1];
        }
        even[pairs + 1..].fill(0.0);
        odd[pairs..].fill(0.0);
        if source.len() % 2 == 1 {
            odd[pairs] = source[2 * pairs];
        }
    }
}

vectorized! {
    /// `row[2k] = left[k]`, `row[2k + 1] = right[k]`, as far as `row` reaches.
    fn interleave(left: &[f32], right: &[f32], row: &mut [f32]) -> () {
        let pairs = row.len() / 2;
        for ((pair, l), r) in row.chunks_exact_mut(2).zip(left).zip(right) {
            pair[0] = *l;
            pair[1] = *r;
        }
        if row.len() % 2 == 1 {
            row[2 * pairs] = left[pairs];
        }
    }
}

vectorized! {
    /// `Bt d B` of one row of tiles from [`Tiles::gather_rows`]'s `rows`, written to
    /// `v[x][first_tile..first_tile + columns]` (`v` is one channel's `[16][band_tiles]`);
    /// `vertical_row` is scratch of `rows.len() / 4`, for one row of the vertical step.
    /// `Bt` is `[1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]`: each of its rows is one term plus
    /// or minus another, applied first down the columns, then along the rows.
    fn input_transform(
        rows: &[f32],
        vertical_row: &mut [f32],
        v: &mut [f32],
        first_tile: usize,
        band_tiles: usize,
    ) -> () {
        const TERMS: [(usize, usize, f32); 4] = [(0, 2, -1.0), (1, 2, 1.0), (2, 1, -1.0), (1, 3, -1.0)];
        let split = vertical_row.len();
        let half = split / 2;
        let columns = half - 1;
        for (i, (first, second, sign)) in TERMS.into_iter().enumerate() {
            let first = &rows[first * split..][..split];
            let second = &rows[second * split..][..split];
            for ((c, p), q) in vertical_row.iter_mut().zip(first).zip(second) {
                *c = p + sign * q;
            }
            // Tile t reads even t, odd t, even t + 1, odd t + 1 of the row.
            let (even, odd) = vertical_row.split_at(half);
            let taps = [&even[..columns], &odd[..columns], &even[1..], &odd[1..]];
            for (j, (first, second, sign)) in TERMS.into_iter().enumerate() {
                let out = &mut v[(4 * i + j) * band_tiles + first_tile..][..columns];
                for ((o, p), q) in out.iter_mut().zip(taps[first]).zip(taps[second]) {
                    *o = p + sign * q;
                }
            }
        }
    }
}

vectorized! {
    /// `At m A` plus `bias` for one row of tiles, read from `m[x][first_tile..]` (`m` is one
    /// output channel's `[16][band_tiles]`), written to `outputs` `[2][2][columns]`;
    /// `vertical` is scratch as long as `outputs`. `At` is `[1 1 1 0; 0 1 -1 -1]`:
    /// row `a` is term `a` plus or minus the next two, applied first down the columns, then
    /// along the rows.
    fn output_transform(
        m: &[f32],
        first_tile: usize,
        band_tiles: usize,
        bias: f32,
        vertical: &mut [f32],
        outputs: &mut [f32],
    ) -> () {
        let columns = outputs.len() / 4;
        let at = |x: usize| &m[x * band_tiles + first_tile..][..columns];
        for a in 0..2 {
            let sign = if a == 0 { 1.0 } else { -1.0 };
            for j in 0..4 {
                let out = &mut vertical[j * columns..][..columns];
                let (p, q, r) = (at(4 * a + j), at(4 * (a + 1) + j), at(4 * (a + 2) + j));
                for (((o, p), q), r) in out.iter_mut().zip(p).zip(q).zip(r) {
                    *o = p + sign * (q + r);
                }
            }
            for b in 0..2 {
                let sign = if b == 0 { 1.0 } else { -1.0 };
                let out = &mut outputs[(2 * a + b) * columns..][..columns];
                let term = |j: usize| &vertical[j * columns..][..columns];
                let (p, q, r) = (term(b), term(b + 1), term(b + 2));
                for (((o, p), q), r) in out.iter_mut().zip(p).zip(q).zip(r) {
                    *o = bias + (p + sign * (q + r));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flex::conv::tests::{reference, shape};
    use crate::flex::test_values as values;

    fn check(planes: Planes, out_channels: usize) {
        let Planes {
            batch,
            in_channels,
            height,
            width,
        } = planes;
        let x = values(batch * in_channels * height * width, 11);
        let w = values(out_channels * in_channels * 9, 12);
        let bias = values(out_channels, 13);
        let got = conv3x3(
            &x,
            &transform_weights(&w, out_channels),
            Some(&bias),
            planes,
        );
        let same_size = shape(
            batch,
            in_channels,
            height,
            width,
            out_channels,
            3,
            1,
            1,
            height,
            width,
        );
        let want = reference(&x, &w, Some(&bias), same_size);
        let worst = crate::flex::max_abs_diff(&got, &want);
        assert!(worst < 1e-4, "{planes:?}: max abs error {worst}");
    }

    #[test]
    fn untransformed_kernels_are_the_kernels() {
        let (out_channels, in_channels) = (10, 9);
        let w = values(out_channels * in_channels * 9, 14);
        let back = untransform_weights(&transform_weights(&w, out_channels), out_channels);
        let worst = crate::flex::max_abs_diff(&back, &w);
        assert!(worst < 1e-6, "max abs error {worst}");
        for (kernel, original) in back.chunks(9).zip(w.chunks(9)) {
            for corner in [0, 2, 6, 8] {
                assert_eq!(kernel[corner], original[corner]);
            }
        }
    }

    #[test]
    fn matches_the_definition_on_even_and_odd_sides() {
        check(
            Planes {
                batch: 2,
                in_channels: 9,
                height: 6,
                width: 8,
            },
            10,
        );
        check(
            Planes {
                batch: 1,
                in_channels: 8,
                height: 7,
                width: 5,
            },
            8,
        );
        check(
            Planes {
                batch: 3,
                in_channels: 8,
                height: 1,
                width: 1,
            },
            9,
        );
    }

    #[test]
    fn bands_split_large_planes_by_rows_and_group_small_images() {
        let tiles = Tiles {
            rows: 5,
            columns: 4,
            height: 10,
            width: 8,
        };
        // 9 tiles per band: two rows of one image at a time.
        let bands: Vec<_> = tiles
            .bands(2, 9)
            .map(|b| (b.first_image, b.first_row, b.rows))
            .collect();
        assert_eq!(
            bands,
            [
                (0, 0, 2),
                (0, 2, 2),
                (0, 4, 1),
                (1, 0, 2),
                (1, 2, 2),
                (1, 4, 1)
            ]
        );
        // 45 tiles per band: two whole images, then the third.
        let bands: Vec<_> = tiles
            .bands(3, 45)
            .map(|b| (b.first_image, b.images))
            .collect();
        assert_eq!(bands, [(0, 2), (2, 1)]);
    }

    #[test]
    fn a_band_of_many_rows_matches_the_definition() {
        // Wide enough that the default band budget cuts each plane into several bands, so
        // the second image's bands start past the first image.
        check(
            Planes {
                batch: 2,
                in_channels: 64,
                height: 70,
                width: 300,
            },
            64,
        );
    }
}
