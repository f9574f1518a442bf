//! Euler ancestral, diffusers' `EulerAncestralDiscreteScheduler`: Euler's schedule, each
//! step going down to `sigma_down` and adding `sigma_up` times fresh noise (drawn every
//! step, the last one included, as diffusers does).

use super::{NoiseFn, Schedule, Scheduler, add_noise_sigma, interp, k_scale};

/// Euler with ancestral sampling.
pub struct EulerAncestralDiscreteScheduler {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
}

impl EulerAncestralDiscreteScheduler {
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

impl Scheduler for EulerAncestralDiscreteScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f64 {
        self.sigmas.iter().cloned().fold(0.0, f64::max)
    }
    fn input_scale(&self, index: usize) -> f64 {
        k_scale(self.sigmas[index])
    }
    fn step(&mut self, eps: &[f32], index: usize, sample: &[f32], noise: &mut NoiseFn) -> Vec<f32> {
        let (from, to) = (self.sigmas[index], self.sigmas[index + 1]);
        let up = (to * to * (from * from - to * to) / (from * from)).sqrt();
        let down = (to * to - up * up).sqrt();
        let dt = down - from;
        let z = noise();
        sample
            .iter()
            .zip(eps)
            .zip(&z)
            .map(|((x, e), n)| (*x as f64 + *e as f64 * dt + *n as f64 * up) as f32)
            .collect()
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_sigma(original, noise, self.sigmas[index])
    }
}
