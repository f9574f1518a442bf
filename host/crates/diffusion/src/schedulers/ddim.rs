//! DDIM (eta 0), diffusers' `DDIMScheduler`: "leading" spacing plus `steps_offset`,
//! `set_alpha_to_one = false` (the final step lands on `alphas_cumprod[0]`), no clipping.

use super::{NoiseFn, Schedule, Scheduler, add_noise_alpha};

/// Deterministic DDIM.
pub struct DdimScheduler {
    ac: Vec<f64>,
    timesteps: Vec<f64>,
    ratio: usize,
}

impl DdimScheduler {
    pub(crate) fn new(c: &Schedule, steps: usize) -> Self {
        Self {
            ac: c.alphas_cumprod.clone(),
            timesteps: c.leading(steps),
            ratio: c.train_steps / steps,
        }
    }
}

impl Scheduler for DdimScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
    fn input_scale(&self, _: usize) -> f64 {
        1.0
    }
    fn step(&mut self, eps: &[f32], index: usize, sample: &[f32], _: &mut NoiseFn) -> Vec<f32> {
        let t = self.timesteps[index] as i64;
        let prev = t - self.ratio as i64;
        let a_t = self.ac[t as usize];
        let a_prev = if prev >= 0 {
            self.ac[prev as usize]
        } else {
            self.ac[0]
        };
        let (sa, sb) = (a_t.sqrt(), (1.0 - a_t).sqrt());
        let (pa, pb) = (a_prev.sqrt(), (1.0 - a_prev).sqrt());
        sample
            .iter()
            .zip(eps)
            .map(|(x, e)| {
                let (x, e) = (*x as f64, *e as f64);
                let x0 = (x - sb * e) / sa;
                (pa * x0 + pb * e) as f32
            })
            .collect()
    }
    fn signal_and_noise(&self, index: usize) -> (f64, f64) {
        let a_t = self.ac[self.timesteps[index] as usize];
        (a_t.sqrt(), (1.0 - a_t).sqrt())
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_alpha(original, noise, self.ac[self.timesteps[index] as usize])
    }
}
