//! Linear layers on the CPU, used in place of burn's `linear` when the model runs on `flex`.
//!
//! Why: burn's `linear` multiplies each batch item on its own against a transposed view of
//! the weight and then adds the bias in a second pass that allocates another output. SD's
//! projections (attention, feed-forward, time embedding) were close to half of a 256x256 UNet
//! step that way. Here the weight lives in host memory as a contiguous `[in, out]` matrix
//! (transposed once at load: gemm packs a contiguous right-hand side 2-30 % faster than
//! PyTorch's `[out, in]` read as its transpose), all rows of all batch items go through one
//! threaded gemm, and the bias is the gemm's starting value.
//!
//! Invariant: gemm splits the output across threads but never a sum, so results do not depend
//! on thread scheduling.

use super::Matrix;

/// `x` `[rows, in]`, `weight` `[in, out]` (PyTorch's weight transposed); returns
/// `x weight + bias`, `[rows, out]`.
pub(crate) fn linear(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out_features: usize,
) -> Vec<f32> {
    let in_features = weight.len() / out_features;
    assert_eq!(weight.len(), in_features * out_features, "weight shape");
    assert_eq!(x.len() % in_features, 0, "input shape");
    let rows = x.len() / in_features;
    let mut out = match bias {
        Some(bias) => {
            assert_eq!(bias.len(), out_features, "bias shape");
            bias.repeat(rows)
        }
        None => vec![0f32; rows * out_features],
    };
    // SAFETY: `x` holds `rows` rows of `in_features`, the weight `in_features` rows of
    // `out_features`, `out` `rows` rows of `out_features`. All in bounds.
    unsafe {
        // out[rows, out] (+)= x[rows, in] . weight[in, out]
        super::gemm(
            [rows, out_features, in_features],
            out.as_mut_ptr(),
            out_features,
            bias.is_some(),
            Matrix::rows(x.as_ptr(), in_features),
            Matrix::rows(weight.as_ptr(), out_features),
            1.0,
            true,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flex::test_values as values;

    /// The definition, one output at a time, in f64, with `w` in PyTorch's `[out, in]`.
    fn reference(x: &[f32], w: &[f32], bias: Option<&[f32]>, out_features: usize) -> Vec<f32> {
        let in_features = w.len() / out_features;
        x.chunks_exact(in_features)
            .flat_map(|row| {
                (0..out_features).map(move |o| {
                    let dot: f64 = row
                        .iter()
                        .zip(&w[o * in_features..][..in_features])
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum();
                    (dot + bias.map_or(0.0, |b| b[o] as f64)) as f32
                })
            })
            .collect()
    }

    #[test]
    fn matches_the_definition_with_and_without_bias() {
        for (rows, in_features, out_features) in [(1, 3, 2), (77, 40, 24), (130, 96, 200)] {
            let x = values(rows * in_features, 1);
            let w = values(out_features * in_features, 2);
            let transposed: Vec<f32> = (0..in_features * out_features)
                .map(|at| w[at % out_features * in_features + at / out_features])
                .collect();
            let b = values(out_features, 3);
            for bias in [None, Some(b.as_slice())] {
                let got = linear(&x, &transposed, bias, out_features);
                let want = reference(&x, &w, bias, out_features);
                let worst = crate::flex::max_abs_diff(&got, &want);
                assert!(worst < 1e-4, "{rows}x{in_features}x{out_features}: {worst}");
            }
        }
    }
}
