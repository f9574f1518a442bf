//! Euler ancestral, diffusers' `EulerAncestralDiscreteScheduler`: Euler's schedule, each
//! step going down to `sigma_down` and adding `sigma_up` times fresh noise (drawn every
//! step, the last one included, as diffusers does).

use super::{NoiseFn, Schedule, Scheduler, SigmaTable, add_noise_sigma, ancestral_split, k_scale};

/// Euler with ancestral sampling.
pub struct EulerAncestralDiscreteScheduler {
    table: SigmaTable,
}

impl EulerAncestralDiscreteScheduler {
    pub(crate) fn new(c: &Schedule, steps: usize) -> Self {
        Self {
            table: SigmaTable::linspace(c, steps),
        }
    }
}

impl Scheduler for EulerAncestralDiscreteScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.table.timesteps
    }
    fn init_noise_sigma(&self) -> f64 {
        self.table.init_noise_sigma()
    }
    fn input_scale(&self, index: usize) -> f64 {
        k_scale(self.table.sigmas[index])
    }
    fn step(&mut self, eps: &[f32], index: usize, sample: &[f32], noise: &mut NoiseFn) -> Vec<f32> {
        let (from, to) = (self.table.sigmas[index], self.table.sigmas[index + 1]);
        let (up, down) = ancestral_split(from, to);
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
        add_noise_sigma(original, noise, self.table.sigmas[index])
    }
}
