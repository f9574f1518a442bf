//! DoRA, weight-decomposed low-rank adaptation, as kohya's and LyCORIS's files store it: a
//! module's `dora_scale` holds the magnitudes `m` of the adapted weight, one per output
//! channel (`[out, 1, …]`, LyCORIS's `wd_on_out`, its default) or one per input channel
//! (`[1, in, …]`, its earlier layout); the axis is read from the tensor's shape.
//!
//! The merged weight at full strength is DoRA's: with the module's own delta
//! `ΔW = scale · patch` and `V = W + ΔW`, each output row (or input column) of `V` is
//! rescaled to its magnitude, `W' = m · V / (‖V‖ + ε)`, norms taken over everything but the
//! axis, `ε` f32's machine epsilon (as LyCORIS adds). A request's weight `w` moves the layer
//! `w` of the way from its own weight to `W'`: `W + w · (W' − W)`, as ComfyUI and A1111
//! apply DoRA files, so weight 0 is the base model and weights compose with other adapters
//! as deltas. (LyCORIS's own multiplier instead rescales `m / ‖V‖` towards 1 and keeps all
//! of `ΔW`, which does not give the base model at 0; PEFT scales `ΔW` inside the norm.
//! All three agree at weight 1.)
//!
//! Invariant: `W` is the layer's own weight as loaded, read before anything is merged into
//! it, so the magnitudes act on the base model whatever else a request merges.

use anyhow::{Result, bail};

use crate::weights::HostTensor;

/// Which channels DoRA's magnitudes belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Axis {
    /// One magnitude per output channel (norms over each row of `[out, in·k·k]`).
    Output,
    /// One per input channel (norms over every output and kernel tap of that channel).
    Input,
}

/// The axis `magnitudes` fit for a layer of `shape` (`[out, in]` or `[out, in, k, k]`).
pub(crate) fn axis(magnitudes: &HostTensor, shape: &[usize]) -> Result<Axis> {
    let (out, inner) = (shape[0], shape[1]);
    let m = &magnitudes.shape;
    let rest_ones = |from: usize| m.iter().skip(from).all(|&d| d == 1);
    if m.first() == Some(&out) && magnitudes.data.len() == out && rest_ones(1) {
        return Ok(Axis::Output);
    }
    if m.len() >= 2 && m[0] == 1 && m[1] == inner && magnitudes.data.len() == inner {
        return Ok(Axis::Input);
    }
    bail!("dora_scale {m:?} fits neither the output nor the input channels of {shape:?}")
}

/// The delta that takes `base` to `weight` of the way to DoRA's merged weight (module docs),
/// for a layer of `shape`; `delta` is the module's own delta, scaled.
pub(crate) fn delta(
    base: &[f32],
    delta: &[f32],
    magnitudes: &HostTensor,
    shape: &[usize],
    weight: f32,
) -> Result<Vec<f32>> {
    let axis = axis(magnitudes, shape)?;
    let (out, inputs) = (shape[0], shape[1]);
    let taps = base.len() / (out * inputs).max(1);
    let merged = |at: usize| base[at] as f64 + delta[at] as f64;
    let channel = |at: usize| match axis {
        Axis::Output => at / (inputs * taps),
        Axis::Input => at / taps % inputs,
    };
    let channels = magnitudes.data.len();
    let mut squares = vec![0f64; channels];
    for at in 0..base.len() {
        squares[channel(at)] += merged(at) * merged(at);
    }
    let factors: Vec<f64> = squares
        .iter()
        .zip(&magnitudes.data)
        .map(|(square, m)| *m as f64 / (square.sqrt() + f32::EPSILON as f64))
        .collect();
    Ok((0..base.len())
        .map(|at| {
            let decomposed = factors[channel(at)] * merged(at);
            (weight as f64 * (decomposed - base[at] as f64)) as f32
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(data: Vec<f32>, shape: Vec<usize>) -> HostTensor {
        HostTensor { data, shape }
    }

    #[test]
    fn rows_are_rescaled_to_their_magnitudes() {
        // W = [[3, 0], [0, 1]], ΔW = [[0, 4], [0, 0]]: V = [[3, 4], [0, 1]], row norms 5 and 1.
        let base = [3.0, 0.0, 0.0, 1.0];
        let delta_w = [0.0, 4.0, 0.0, 0.0];
        let m = host(vec![10.0, 2.0], vec![2, 1]);
        let full = delta(&base, &delta_w, &m, &[2, 2], 1.0).unwrap();
        let merged: Vec<f32> = base.iter().zip(&full).map(|(b, d)| b + d).collect();
        for (got, want) in merged.iter().zip([6.0, 8.0, 0.0, 2.0]) {
            assert!((got - want).abs() < 1e-5, "{merged:?}");
        }
        let half = delta(&base, &delta_w, &m, &[2, 2], 0.5).unwrap();
        for (h, f) in half.iter().zip(&full) {
            assert!((h - f / 2.0).abs() < 1e-6);
        }
    }

    #[test]
    fn input_channels_take_their_norm_over_outputs_and_taps() {
        // [out 2, in 2, 1, 1]; column 0 is (3, 4), column 1 is (0, 2).
        let base = [3.0, 0.0, 4.0, 2.0];
        let m = host(vec![1.0, 1.0], vec![1, 2, 1, 1]);
        assert_eq!(axis(&m, &[2, 2, 1, 1]).unwrap(), Axis::Input);
        let d = delta(&base, &[0.0; 4], &m, &[2, 2, 1, 1], 1.0).unwrap();
        let merged: Vec<f32> = base.iter().zip(&d).map(|(b, d)| b + d).collect();
        for (got, want) in merged.iter().zip([0.6, 0.0, 0.8, 1.0]) {
            assert!((got - want).abs() < 1e-5, "{merged:?}");
        }
        assert!(axis(&host(vec![1.0; 3], vec![3, 1]), &[2, 2]).is_err());
    }
}
