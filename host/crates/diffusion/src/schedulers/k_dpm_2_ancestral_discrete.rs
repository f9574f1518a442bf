//! KDPM2 ancestral, diffusers' `KDPM2AncestralDiscreteScheduler`: as KDPM2, but the
//! midpoint is taken between sigma and the ancestral `sigma_down`, and the second call adds
//! `sigma_up` times fresh noise (one draw per full step; the final first-order call draws
//! none).

use super::k_dpm_2_discrete::{MidpointStep, interleave, log_midpoint, midpoint_timesteps};
use super::{
    NoiseFn, Schedule, Scheduler, SigmaTable, add_noise_sigma, ancestral_split, axpby, k_scale,
};

/// Ancestral DPM-Solver-2.
pub struct KDpm2AncestralDiscreteScheduler {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    sigmas_interpol: Vec<f64>,
    sigmas_up: Vec<f64>,
    sigmas_down: Vec<f64>,
    midpoint: MidpointStep,
}

impl KDpm2AncestralDiscreteScheduler {
    pub(crate) fn new(c: &Schedule, steps: usize) -> Self {
        let table = SigmaTable::linspace(c, steps);
        let s = &table.sigmas;
        let n = s.len();
        // The step out of the final 0 is never taken; diffusers leaves it NaN up, 0 down.
        let (up, down): (Vec<f64>, Vec<f64>) = (0..n)
            .map(|i| match s.get(i + 1) {
                Some(next) => ancestral_split(s[i], *next),
                None => (f64::NAN, 0.0),
            })
            .unzip();
        let mut interpol: Vec<f64> = (0..n).map(|i| log_midpoint(s[i], down[i])).collect();
        // The last real step ends at 0: diffusers takes it first order, without a midpoint.
        interpol[n - 2] = 0.0;
        interpol[n - 1] = 0.0;
        Self {
            timesteps: midpoint_timesteps(&table, &interpol, 1),
            sigmas: interleave(s),
            sigmas_interpol: interleave(&interpol),
            sigmas_up: interleave(&up),
            sigmas_down: interleave(&down),
            midpoint: MidpointStep::default(),
        }
    }
}

impl Scheduler for KDpm2AncestralDiscreteScheduler {
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
            k_scale(self.sigmas_interpol[index - 1])
        } else {
            k_scale(self.sigmas[index])
        }
    }
    fn step(&mut self, eps: &[f32], index: usize, sample: &[f32], noise: &mut NoiseFn) -> Vec<f32> {
        if self.midpoint.at_midpoint() {
            let dt = self.sigmas_down[index - 1] - self.sigmas[index - 1];
            let x = self.midpoint.step(eps, sample, dt);
            axpby(1.0, &x, self.sigmas_up[index - 1], &noise())
        } else {
            let dt = self.sigmas_interpol[index] - self.sigmas[index];
            self.midpoint.step(eps, sample, dt)
        }
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_sigma(original, noise, self.sigmas[index])
    }
}
