//! KDPM2, diffusers' `KDPM2DiscreteScheduler`: Euler's sigmas plus their log-midpoints
//! (`sigmas_interpol`); a first-order call moves to the midpoint, the second call (at the
//! midpoint's fractional timestep) takes the full step from the saved sample. `n` steps
//! make `2n - 1` UNet calls.

use super::{NoiseFn, Schedule, Scheduler, add_noise_sigma, axpby, interp, k_scale, sigma_to_t};

/// DPM-Solver-2 (Karras et al.'s variant).
pub struct KDpm2DiscreteScheduler {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    sigmas_interpol: Vec<f64>,
    saved: Option<Vec<f32>>,
}

pub(crate) fn interleave(v: &[f64]) -> Vec<f64> {
    let mut out = vec![v[0]];
    for x in &v[1..] {
        out.push(*x);
        out.push(*x);
    }
    out.push(*v.last().expect("non-empty"));
    out
}

impl KDpm2DiscreteScheduler {
    pub(crate) fn new(c: &Schedule, steps: usize) -> Self {
        let t = c.linspace(steps);
        let s = c.sigmas();
        let log_sigmas: Vec<f64> = s.iter().map(|x| x.ln()).collect();
        let mut base: Vec<f64> = t.iter().map(|t| interp(*t, &s) as f32 as f64).collect();
        base.push(0.0);
        let n = base.len();
        // log-lerp with the previous sigma (roll(1): the first pairs with the final 0).
        let interpol: Vec<f64> = (0..n)
            .map(|i| {
                let prev = base[(i + n - 1) % n];
                if prev == 0.0 || base[i] == 0.0 {
                    0.0
                } else {
                    ((base[i].ln() + prev.ln()) / 2.0).exp() as f32 as f64
                }
            })
            .collect();
        let t_interpol: Vec<f64> = interpol
            .iter()
            .map(|s| sigma_to_t(*s, &log_sigmas) as f32 as f64)
            .collect();
        let mut timesteps = vec![t[0]];
        for k in 1..t.len() {
            timesteps.push(t_interpol[k]);
            timesteps.push(t[k]);
        }
        Self {
            timesteps,
            sigmas: interleave(&base),
            sigmas_interpol: interleave(&interpol),
            saved: None,
        }
    }
}

impl Scheduler for KDpm2DiscreteScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f64 {
        self.sigmas.iter().cloned().fold(0.0, f64::max)
    }
    fn order(&self) -> usize {
        2
    }
    fn input_scale(&self, index: usize) -> f64 {
        if self.saved.is_none() {
            k_scale(self.sigmas[index])
        } else {
            k_scale(self.sigmas_interpol[index])
        }
    }
    fn step(&mut self, eps: &[f32], index: usize, sample: &[f32], _: &mut NoiseFn) -> Vec<f32> {
        match self.saved.take() {
            None => {
                let dt = self.sigmas_interpol[index + 1] - self.sigmas[index];
                self.saved = Some(sample.to_vec());
                axpby(1.0, sample, dt, eps)
            }
            Some(s0) => {
                let dt = self.sigmas[index] - self.sigmas[index - 1];
                axpby(1.0, &s0, dt, eps)
            }
        }
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_sigma(original, noise, self.sigmas[index])
    }
}
