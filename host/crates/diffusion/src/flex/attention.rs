//! Scaled dot-product attention on the CPU, used in place of burn's attention when the model
//! runs on `flex`.
//!
//! Why: at 512x512 the UNet's first-level self-attention spans 4096 tokens with a head size of
//! 40. burn-flex's flash loop re-packs the whole query for every 64-key tile and calls the
//! scalar libm `expf` once per score, which made the softmax alone 15 % of a step. Here each
//! rayon job takes a block of query rows of one head and walks the keys in tiles: one gemm
//! for the tile's scores, a vectorized online softmax (running maximum and sum per row, the
//! output rescaled when the maximum grows), one gemm accumulating into the output. The
//! block and tile sizes keep the scores within L2 while packing the keys rarely.
//!
//! Invariants: inputs and output keep the projections' `[batch, tokens, heads x head_dim]`
//! layout (no head transposes); every output element is written by exactly one job, and each
//! row's reductions run in a fixed order, so results do not depend on thread scheduling.

use rayon::prelude::*;

use super::{LANES, Matrix, exp_nonpositive};

/// Query rows per job; each key tile is packed once per block, so larger blocks pack less.
const QUERY_BLOCK: usize = 256;

/// Keys per tile: a `[QUERY_BLOCK, KEY_TILE]` score tile is 512 KiB.
const KEY_TILE: usize = 512;

/// The shapes of one attention call; tensors are row-major `[batch, tokens, heads x head_dim]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub batch: usize,
    pub queries: usize,
    pub keys: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Key `j` is hidden from query `i` when `j > i` (CLIP's text tower).
    pub causal: bool,
}

/// `softmax(q k^T / sqrt(head_dim)) v` per head; returns `[batch, queries, heads x head_dim]`.
pub(crate) fn attention(q: &[f32], k: &[f32], v: &[f32], s: Shape) -> Vec<f32> {
    let inner = s.heads * s.head_dim;
    assert_eq!(q.len(), s.batch * s.queries * inner, "query shape");
    assert_eq!(k.len(), s.batch * s.keys * inner, "key shape");
    assert_eq!(v.len(), s.batch * s.keys * inner, "value shape");
    let mut out = vec![0f32; q.len()];
    let blocks = s.queries.div_ceil(QUERY_BLOCK);
    let out_ptr = super::SharedOut::new(&mut out);
    (0..s.batch * s.heads * blocks)
        .into_par_iter()
        .for_each_init(Vec::new, |scores, job| {
            let (bh, block) = (job / blocks, job % blocks);
            let (b, h) = (bh / s.heads, bh % s.heads);
            let first = block * QUERY_BLOCK;
            let rows = QUERY_BLOCK.min(s.queries - first);
            let column = h * s.head_dim;
            let q_at = (b * s.queries + first) * inner + column;
            let kv_at = b * s.keys * inner + column;
            // SAFETY: job (b, h, block) alone writes rows first..first+rows, columns
            // column..column+head_dim of batch b, inside `out`, which outlives the loop.
            let out_at = unsafe { out_ptr.at(q_at) };
            block_attention(
                &q[q_at..],
                &k[kv_at..],
                &v[kv_at..],
                out_at,
                rows,
                first,
                s,
                scores,
            );
        });
    out
}

/// One head's output rows `first..first + rows`; `q`, `k`, `v` start at the head's first
/// element of the block's first row (query) or of row 0 (key, value), with row stride
/// `heads x head_dim`; `out` is the block's first output element, zero on entry.
#[allow(clippy::too_many_arguments)]
fn block_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: *mut f32,
    rows: usize,
    first: usize,
    s: Shape,
    scores: &mut Vec<f32>,
) {
    let stride = s.heads * s.head_dim;
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    let mut maxima = [f32::NEG_INFINITY; QUERY_BLOCK];
    let mut sums = [0f32; QUERY_BLOCK];
    for tile_start in (0..s.keys).step_by(KEY_TILE) {
        let tile = KEY_TILE.min(s.keys - tile_start);
        scores.resize(rows * tile, 0.0);
        // SAFETY (both gemm calls and the row views): every index stays inside the slices'
        // rows (the callers' offsets plus `rows`/`keys` rows of `stride`) and the output
        // block given to this job.
        unsafe {
            // scores[rows, tile] = scale * q[rows, d] . k[tile, d]^T
            super::gemm(
                [rows, tile, s.head_dim],
                scores.as_mut_ptr(),
                tile,
                false,
                Matrix::rows(q.as_ptr(), stride),
                Matrix::transposed(k.as_ptr().add(tile_start * stride), stride),
                scale,
                false,
            );
        }
        for (i, row) in scores.chunks_exact_mut(tile).enumerate() {
            let visible = if s.causal {
                (first + i + 1).saturating_sub(tile_start).min(tile)
            } else {
                tile
            };
            row[visible..].fill(0.0);
            if visible == 0 {
                continue;
            }
            let (max, sum) = exp_against_running_max(&mut row[..visible], maxima[i]);
            if maxima[i] != f32::NEG_INFINITY && max > maxima[i] {
                // Earlier tiles were weighted against a smaller maximum.
                let correction = exp_nonpositive(maxima[i] - max);
                sums[i] *= correction;
                let out_row =
                    unsafe { std::slice::from_raw_parts_mut(out.add(i * stride), s.head_dim) };
                out_row.iter_mut().for_each(|x| *x *= correction);
            }
            maxima[i] = max;
            sums[i] += sum;
        }
        unsafe {
            // out[rows, d] += p[rows, tile] . v[tile, d]
            super::gemm(
                [rows, s.head_dim, tile],
                out,
                stride,
                true,
                Matrix::rows(scores.as_ptr(), tile),
                Matrix::rows(v.as_ptr().add(tile_start * stride), stride),
                1.0,
                false,
            );
        }
    }
    for (i, sum) in sums[..rows].iter().enumerate() {
        let out_row = unsafe { std::slice::from_raw_parts_mut(out.add(i * stride), s.head_dim) };
        let inverse = 1.0 / sum;
        out_row.iter_mut().for_each(|x| *x *= inverse);
    }
}

super::vectorized! {
    /// With `max` the larger of `running_max` and the row's maximum, replaces `row` with
    /// `exp(x - max)`; returns `max` and the row's new sum.
    fn exp_against_running_max(row: &mut [f32], running_max: f32) -> (f32, f32) {
        let mut maxima = [running_max; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (m, &x) in maxima.iter_mut().zip(chunk) {
                *m = if x > *m { x } else { *m };
            }
        }
        let max = chunks
            .remainder()
            .iter()
            .chain(&maxima)
            .fold(running_max, |m, &x| if x > m { x } else { m });
        let mut sums = [0f32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for chunk in &mut chunks {
            for (sum, x) in sums.iter_mut().zip(chunk) {
                *x = exp_nonpositive(*x - max);
                *sum += *x;
            }
        }
        let mut tail = 0f32;
        for x in chunks.into_remainder() {
            *x = exp_nonpositive(*x - max);
            tail += *x;
        }
        (max, sums.iter().sum::<f32>() + tail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flex::test_values as values;

    /// The textbook definition, one query at a time, in f64.
    fn reference(q: &[f32], k: &[f32], v: &[f32], s: Shape) -> Vec<f32> {
        let inner = s.heads * s.head_dim;
        let mut out = vec![0f32; q.len()];
        for b in 0..s.batch {
            for h in 0..s.heads {
                for i in 0..s.queries {
                    let qi = &q[(b * s.queries + i) * inner + h * s.head_dim..][..s.head_dim];
                    let visible = if s.causal { i + 1 } else { s.keys };
                    let logits: Vec<f64> = (0..visible)
                        .map(|j| {
                            let kj = &k[(b * s.keys + j) * inner + h * s.head_dim..][..s.head_dim];
                            let dot: f64 =
                                qi.iter().zip(kj).map(|(a, b)| *a as f64 * *b as f64).sum();
                            dot / (s.head_dim as f64).sqrt()
                        })
                        .collect();
                    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let weights: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
                    let total: f64 = weights.iter().sum();
                    for c in 0..s.head_dim {
                        let value: f64 = (0..visible)
                            .map(|j| {
                                weights[j] * v[(b * s.keys + j) * inner + h * s.head_dim + c] as f64
                            })
                            .sum();
                        out[(b * s.queries + i) * inner + h * s.head_dim + c] =
                            (value / total) as f32;
                    }
                }
            }
        }
        out
    }

    fn check(s: Shape) {
        let inner = s.heads * s.head_dim;
        let q = values(s.batch * s.queries * inner, 1);
        let k = values(s.batch * s.keys * inner, 2);
        let v = values(s.batch * s.keys * inner, 3);
        let got = attention(&q, &k, &v, s);
        let want = reference(&q, &k, &v, s);
        let worst = crate::flex::max_abs_diff(&got, &want);
        assert!(worst < 1e-5, "{s:?}: max abs error {worst}");
    }

    #[test]
    fn self_attention_over_several_query_blocks_and_key_tiles() {
        // 600 tokens: three query blocks (the last partial), two key tiles (the last
        // partial), so the running maximum and the output rescaling are exercised.
        check(Shape {
            batch: 1,
            queries: 600,
            keys: 600,
            heads: 2,
            head_dim: 8,
            causal: false,
        });
    }

    #[test]
    fn cross_attention_with_fewer_keys_than_queries() {
        check(Shape {
            batch: 1,
            queries: 45,
            keys: 7,
            heads: 2,
            head_dim: 5,
            causal: false,
        });
    }

    #[test]
    fn causal_attention_hides_later_keys() {
        // Rows of the first key tile see none of the second.
        check(Shape {
            batch: 2,
            queries: 530,
            keys: 530,
            heads: 2,
            head_dim: 4,
            causal: true,
        });
    }

    #[test]
    fn exponentials_agree_with_the_scalar_definition() {
        let mut row = values(1001, 9);
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let want: Vec<f32> = row.iter().map(|x| (x - max).exp()).collect();
        let (_, sum) = exp_against_running_max(&mut row, f32::NEG_INFINITY);
        assert!((sum - want.iter().sum::<f32>()).abs() < 1e-3);
        for (a, b) in row.iter().zip(&want) {
            assert!((a - b).abs() <= b * 1e-6);
        }
    }
}
