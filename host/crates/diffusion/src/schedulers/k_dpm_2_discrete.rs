//! KDPM2, diffusers' `KDPM2DiscreteScheduler`: Euler's sigmas plus their log-midpoints
//! (`sigmas_interpol`); a first-order call moves to the midpoint, the second call (at the
//! midpoint's fractional timestep) takes the full step from the saved sample. `n` steps
//! make `2n - 1` UNet calls.
//!
//! The midpoint helpers here are shared with the ancestral variant, which differs only in
//! which sigma the midpoint is taken towards and in the noise it adds.

use super::{
    NoiseFn, Schedule, Scheduler, SigmaTable, add_noise_sigma, axpby, k_scale, repeat_after_first,
    sigma_to_t,
};

/// diffusers' KDPM2 layout of a per-step table: the first entry, every later entry twice,
/// the last once more (`cat([v[:1], v[1:].repeat_interleave(2), v[-1:]])`).
pub(super) fn interleave(v: &[f64]) -> Vec<f64> {
    let mut out = repeat_after_first(v);
    out.push(*v.last().expect("non-empty"));
    out
}

/// The geometric mean of two sigmas (their log-space midpoint), 0 when either is 0 (where
/// diffusers' `log().lerp().exp()` also ends at 0); rounded through f32 as diffusers holds it.
pub(super) fn log_midpoint(a: f64, b: f64) -> f64 {
    if a == 0.0 || b == 0.0 {
        0.0
    } else {
        ((a.ln() + b.ln()) / 2.0).exp() as f32 as f64
    }
}

/// The call list: the first timestep, then for every later step its midpoint's fractional
/// timestep followed by the step's own. The midpoint of step `k` sits at
/// `midpoints[k - lag]` (`lag` 0 for KDPM2, whose midpoints look back, 1 for the ancestral
/// variant, whose midpoints look forward).
pub(super) fn midpoint_timesteps(table: &SigmaTable, midpoints: &[f64], lag: usize) -> Vec<f64> {
    let t = &table.timesteps;
    let mut out = vec![t[0]];
    for k in 1..t.len() {
        let mid = sigma_to_t(midpoints[k - lag], &table.log_train_sigmas) as f32 as f64;
        out.extend([mid, t[k]]);
    }
    out
}

/// The two UNet calls of one DPM-Solver-2 step: the first moves the sample by `dt` towards
/// the midpoint and keeps the starting sample; the second takes the whole step (its `dt`)
/// from the kept sample with the derivative evaluated at the midpoint.
#[derive(Default)]
pub(super) struct MidpointStep {
    start: Option<Vec<f32>>,
}

impl MidpointStep {
    /// Whether the next call is the second one, evaluated at the midpoint.
    pub(super) fn at_midpoint(&self) -> bool {
        self.start.is_some()
    }

    pub(super) fn step(&mut self, eps: &[f32], sample: &[f32], dt: f64) -> Vec<f32> {
        match self.start.take() {
            None => {
                self.start = Some(sample.to_vec());
                axpby(1.0, sample, dt, eps)
            }
            Some(start) => axpby(1.0, &start, dt, eps),
        }
    }
}

/// DPM-Solver-2 (Karras et al.'s variant).
pub struct KDpm2DiscreteScheduler {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    sigmas_interpol: Vec<f64>,
    midpoint: MidpointStep,
}

impl KDpm2DiscreteScheduler {
    pub(crate) fn new(c: &Schedule, steps: usize) -> Self {
        let table = SigmaTable::linspace(c, steps);
        let s = &table.sigmas;
        let n = s.len();
        // Midpoint with the previous sigma (torch's roll(1): the first pairs with the final 0).
        let interpol: Vec<f64> = (0..n)
            .map(|i| log_midpoint(s[i], s[(i + n - 1) % n]))
            .collect();
        Self {
            timesteps: midpoint_timesteps(&table, &interpol, 0),
            sigmas: interleave(s),
            sigmas_interpol: interleave(&interpol),
            midpoint: MidpointStep::default(),
        }
    }
}

impl Scheduler for KDpm2DiscreteScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f64 {
        self.sigmas[0]
    }
    fn order(&self) -> usize {
        2
    }
    fn input_scale(&self, index: usize) -> f64 {
        if self.midpoint.at_midpoint() {
            k_scale(self.sigmas_interpol[index])
        } else {
            k_scale(self.sigmas[index])
        }
    }
    fn step(&mut self, eps: &[f32], index: usize, sample: &[f32], _: &mut NoiseFn) -> Vec<f32> {
        let dt = if self.midpoint.at_midpoint() {
            self.sigmas[index] - self.sigmas[index - 1]
        } else {
            self.sigmas_interpol[index + 1] - self.sigmas[index]
        };
        self.midpoint.step(eps, sample, dt)
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_sigma(original, noise, self.sigmas[index])
    }
}
