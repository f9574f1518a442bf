//! Euler, diffusers' `EulerDiscreteScheduler`: "linspace" spacing, linearly interpolated
//! sigmas with a final 0, `init_noise_sigma` = max sigma, inputs scaled by
//! `1/sqrt(sigma^2+1)`, no churn.

use super::{NoiseFn, Schedule, Scheduler, SigmaTable, add_noise_sigma, axpby, k_scale};

/// First-order Euler.
pub struct EulerDiscreteScheduler {
    table: SigmaTable,
}

impl EulerDiscreteScheduler {
    pub(crate) fn new(c: &Schedule, steps: usize) -> Self {
        Self {
            table: SigmaTable::linspace(c, steps),
        }
    }
}

impl Scheduler for EulerDiscreteScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.table.timesteps
    }
    fn init_noise_sigma(&self) -> f64 {
        self.table.init_noise_sigma()
    }
    fn input_scale(&self, index: usize) -> f64 {
        k_scale(self.table.sigmas[index])
    }
    fn step(&mut self, eps: &[f32], index: usize, sample: &[f32], _: &mut NoiseFn) -> Vec<f32> {
        let s = &self.table.sigmas;
        axpby(1.0, sample, s[index + 1] - s[index], eps)
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_sigma(original, noise, self.table.sigmas[index])
    }
}
