//! DPM-Solver++(2M), diffusers' `DPMSolverMultistepScheduler` defaults: `dpmsolver++`,
//! order 2, midpoint solver, "linspace" spacing (`linspace(0, 999, n+1)` rounded, last
//! dropped), final sigma 0, and `lower_order_final`: the first step and the last step are
//! first order.

use super::{NoiseFn, Schedule, Scheduler, interp};

/// DPM-Solver++ 2M.
pub struct DpmSolverMultistepScheduler {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    outputs: Vec<Vec<f32>>,
    lower_order_nums: usize,
}

fn alpha_sigma(sigma: f64) -> (f64, f64) {
    let a = 1.0 / (sigma * sigma + 1.0).sqrt();
    (a, sigma * a)
}

impl DpmSolverMultistepScheduler {
    pub(crate) fn new(c: &Schedule, steps: usize) -> Self {
        let last = c.train_steps as f64 - 1.0;
        let timesteps: Vec<f64> = (0..=steps)
            .rev()
            .map(|i| (last * i as f64 / steps as f64).round_ties_even())
            .take(steps)
            .collect();
        let s = c.sigmas();
        let mut sigmas: Vec<f64> = timesteps
            .iter()
            .map(|t| interp(*t, &s) as f32 as f64)
            .collect();
        sigmas.push(0.0);
        Self {
            timesteps,
            sigmas,
            outputs: vec![],
            lower_order_nums: 0,
        }
    }
}

impl Scheduler for DpmSolverMultistepScheduler {
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
        let n = self.timesteps.len();
        // Final sigma is zero, so the final step is always first order.
        let lower_order_final = index == n - 1;
        let (a_s, s_s) = alpha_sigma(self.sigmas[index]);
        let x0: Vec<f32> = sample
            .iter()
            .zip(eps)
            .map(|(x, e)| ((*x as f64 - s_s * *e as f64) / a_s) as f32)
            .collect();
        if self.outputs.len() == 2 {
            self.outputs.remove(0);
        }
        self.outputs.push(x0);
        let (a_t, s_t) = alpha_sigma(self.sigmas[index + 1]);
        let lambda = |a: f64, s: f64| a.ln() - s.ln();
        let l_t = lambda(a_t, s_t);
        let l_s0 = lambda(a_s, s_s);
        let h = l_t - l_s0;
        let em = (-h).exp() - 1.0;
        let ratio = if s_t == 0.0 { 0.0 } else { s_t / s_s };
        let m0 = &self.outputs[self.outputs.len() - 1];
        let out: Vec<f32> =
            if self.lower_order_nums < 1 || lower_order_final || self.outputs.len() < 2 {
                sample
                    .iter()
                    .zip(m0)
                    .map(|(x, d)| (ratio * *x as f64 - a_t * em * *d as f64) as f32)
                    .collect()
            } else {
                let (a_1, s_1) = alpha_sigma(self.sigmas[index - 1]);
                let h0 = l_s0 - lambda(a_1, s_1);
                let r0 = h0 / h;
                let m1 = &self.outputs[0];
                sample
                    .iter()
                    .zip(m0)
                    .zip(m1)
                    .map(|((x, d0), d1)| {
                        let (d0, d1) = (*d0 as f64, *d1 as f64);
                        let dd = (d0 - d1) / r0;
                        (ratio * *x as f64 - a_t * em * d0 - 0.5 * a_t * em * dd) as f32
                    })
                    .collect()
            };
        if self.lower_order_nums < 2 {
            self.lower_order_nums += 1;
        }
        out
    }
    fn signal_and_noise(&self, index: usize) -> (f64, f64) {
        alpha_sigma(self.sigmas[index])
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        let (a, s) = alpha_sigma(self.sigmas[index]);
        super::axpby(a, original, s, noise)
    }
}
