//! Heun, diffusers' `HeunDiscreteScheduler`: Euler's sigmas with interior sigmas and
//! timesteps doubled, so `n` steps make `2n - 1` UNet calls; a first-order (Euler) call
//! followed by a correction averaging the two derivatives. The last call is first order.

use super::{
    NoiseFn, Schedule, Scheduler, SigmaTable, add_noise_sigma, axpby, k_scale, repeat_after_first,
};

/// Heun's second-order method.
pub struct HeunDiscreteScheduler {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    prev: Option<(Vec<f32>, f64, Vec<f32>)>,
}

impl HeunDiscreteScheduler {
    pub(crate) fn new(c: &Schedule, steps: usize) -> Self {
        let table = SigmaTable::linspace(c, steps);
        let n = table.sigmas.len();
        // Interior sigmas twice; the final 0 once (diffusers' Heun layout).
        let mut sigmas = repeat_after_first(&table.sigmas[..n - 1]);
        sigmas.push(0.0);
        let timesteps = repeat_after_first(&table.timesteps);
        Self {
            timesteps,
            sigmas,
            prev: None,
        }
    }
}

impl Scheduler for HeunDiscreteScheduler {
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
        k_scale(self.sigmas[index])
    }
    fn step(&mut self, eps: &[f32], index: usize, sample: &[f32], _: &mut NoiseFn) -> Vec<f32> {
        match self.prev.take() {
            None => {
                let dt = self.sigmas[index + 1] - self.sigmas[index];
                self.prev = Some((eps.to_vec(), dt, sample.to_vec()));
                axpby(1.0, sample, dt, eps)
            }
            Some((d_prev, dt, s0)) => {
                // derivative at the new point is eps itself (x0 = x - sigma_next * eps).
                let avg: Vec<f32> = d_prev
                    .iter()
                    .zip(eps)
                    .map(|(a, b)| ((*a as f64 + *b as f64) / 2.0) as f32)
                    .collect();
                axpby(1.0, &s0, dt, &avg)
            }
        }
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_sigma(original, noise, self.sigmas[index])
    }
}
