//! Euler, diffusers' `EulerDiscreteScheduler`: "linspace" spacing, linearly interpolated
//! sigmas with a final 0, `init_noise_sigma` = max sigma, inputs scaled by
//! `1/sqrt(sigma^2+1)`, no churn.

use super::{NoiseFn, Schedule, Scheduler, add_noise_sigma, axpby, interp, k_scale};

/// First-order Euler.
pub struct EulerDiscreteScheduler {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
}

impl EulerDiscreteScheduler {
    pub(crate) fn new(c: &Schedule, steps: usize) -> Self {
        let timesteps = c.linspace(steps);
        let s = c.sigmas();
        let mut sigmas: Vec<f64> = timesteps
            .iter()
            .map(|t| interp(*t, &s) as f32 as f64)
            .collect();
        sigmas.push(0.0);
        Self { timesteps, sigmas }
    }
}

impl Scheduler for EulerDiscreteScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f64 {
        self.sigmas.iter().cloned().fold(0.0, f64::max)
    }
    fn input_scale(&self, index: usize) -> f64 {
        k_scale(self.sigmas[index])
    }
    fn step(&mut self, eps: &[f32], index: usize, sample: &[f32], _: &mut NoiseFn) -> Vec<f32> {
        let dt = self.sigmas[index + 1] - self.sigmas[index];
        axpby(1.0, sample, dt, eps)
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_sigma(original, noise, self.sigmas[index])
    }
}
