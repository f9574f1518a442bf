//! The GEGLU of SD's feed-forward (`hidden * gelu(gate)`, the two halves of one projection),
//! used in place of burn's ops when the model runs on `flex`.
//!
//! Why: burn's GELU on flex calls libm's scalar `erff` per element, and the chunk, GELU and
//! product are three passes with strided views; at 512x512 the feed-forwards take about 90
//! million GELUs per UNet step. This is one pass with a vectorized `erf`.
//!
//! Invariant: GELU is the exact (erf) form diffusers uses, to within the 1e-6 of its `erf`.

use rayon::prelude::*;

use super::exp_nonpositive;

/// Rows per rayon job.
const ROWS_PER_JOB: usize = 64;

/// `projected` is `[rows, 2 x width]` (hidden half, then gate half); returns `[rows, width]`.
pub(crate) fn geglu(projected: &[f32], width: usize) -> Vec<f32> {
    assert_eq!(projected.len() % (2 * width), 0, "geglu shape");
    let mut out = vec![0f32; projected.len() / 2];
    out.par_chunks_mut(ROWS_PER_JOB * width)
        .zip(projected.par_chunks(ROWS_PER_JOB * 2 * width))
        .for_each(|(out, projected)| {
            for (out, row) in out
                .chunks_exact_mut(width)
                .zip(projected.chunks_exact(2 * width))
            {
                let (hidden, gate) = row.split_at(width);
                gated_row(out, hidden, gate);
            }
        });
    out
}

super::vectorized! {
    /// `out = hidden * gelu(gate)`.
    fn gated_row(out: &mut [f32], hidden: &[f32], gate: &[f32]) -> () {
        for ((o, &h), &g) in out.iter_mut().zip(hidden).zip(gate) {
            *o = h * gelu(g);
        }
    }
}

/// `x * Phi(x)`, the exact GELU.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Abramowitz and Stegun 7.1.26: absolute error below 1.5e-7 in exact arithmetic, 1e-6
/// after f32 rounding (near 0, where `1 - poly * exp` cancels); branch-free.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let magnitude = 1.0 - poly * exp_nonpositive(-a * a);
    if x < 0.0 { -magnitude } else { magnitude }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flex::test_values as values;

    /// erf by its Maclaurin series (f64; converges fast for |x| <= 3) or 1 beyond.
    fn erf_reference(x: f64) -> f64 {
        if x.abs() > 5.0 {
            return x.signum();
        }
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_is_within_its_stated_error() {
        for i in -4_000..=4_000 {
            let x = i as f32 / 1_000.0;
            let err = (erf(x) as f64 - erf_reference(x as f64)).abs();
            assert!(err < 1e-6, "erf({x}) off by {err}");
        }
    }

    #[test]
    fn geglu_gates_the_first_half_with_the_second() {
        let (rows, width) = (130, 9);
        let projected = values(rows * 2 * width, 7);
        let got = geglu(&projected, width);
        for r in 0..rows {
            for c in 0..width {
                let h = projected[r * 2 * width + c] as f64;
                let g = projected[r * 2 * width + width + c] as f64;
                let want = h * 0.5 * g * (1.0 + erf_reference(g / 2f64.sqrt()));
                assert!(
                    (got[r * width + c] as f64 - want).abs() < 1e-6,
                    "row {r} col {c}"
                );
            }
        }
    }
}
