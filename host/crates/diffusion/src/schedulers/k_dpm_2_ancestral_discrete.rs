//! KDPM2 ancestral, diffusers' `KDPM2AncestralDiscreteScheduler`: as KDPM2, but the
//! midpoint is taken between sigma and the ancestral `sigma_down`, and the second call adds
//! `sigma_up` times fresh noise (one draw per full step; the final first-order call draws
//! none).

use super::k_dpm_2_discrete::interleave;
use super::{NoiseFn, Schedule, Scheduler, add_noise_sigma, axpby, interp, k_scale, sigma_to_t};

/// Ancestral DPM-Solver-2.
pub struct KDpm2AncestralDiscreteScheduler {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    sigmas_interpol: Vec<f64>,
    sigmas_up: Vec<f64>,
    sigmas_down: Vec<f64>,
    saved: Option<Vec<f32>>,
}

impl KDpm2AncestralDiscreteScheduler {
    pub(crate) fn new(c: &Schedule, steps: usize) -> Self {
        let t = c.linspace(steps);
        let s = c.sigmas();
        let log_sigmas: Vec<f64> = s.iter().map(|x| x.ln()).collect();
        let mut base: Vec<f64> = t.iter().map(|t| interp(*t, &s) as f32 as f64).collect();
        base.push(0.0);
        let n = base.len();
        let next: Vec<f64> = (0..n)
            .map(|i| if i + 1 < n { base[i + 1] } else { 0.0 })
            .collect();
        let up: Vec<f64> = (0..n)
            .map(|i| {
                let (a, b) = (base[i], next[i]);
                if a == 0.0 {
                    f64::NAN
                } else {
                    (b * b * (a * a - b * b) / (a * a)).sqrt()
                }
            })
            .collect();
        let mut down: Vec<f64> = (0..n)
            .map(|i| (next[i] * next[i] - up[i] * up[i]).sqrt())
            .collect();
        down[n - 1] = 0.0;
        let mut interpol: Vec<f64> = (0..n)
            .map(|i| {
                if base[i] == 0.0 || down[i] == 0.0 {
                    0.0
                } else {
                    ((base[i].ln() + down[i].ln()) / 2.0).exp()
                }
            })
            .collect();
        interpol[n - 2] = 0.0;
        interpol[n - 1] = 0.0;
        let t_interpol: Vec<f64> = interpol
            .iter()
            .map(|s| sigma_to_t(*s, &log_sigmas) as f32 as f64)
            .collect();
        let mut timesteps = vec![t[0]];
        for k in 1..t.len() {
            timesteps.push(t_interpol[k - 1]);
            timesteps.push(t[k]);
        }
        Self {
            timesteps,
            sigmas: interleave(&base),
            sigmas_interpol: interleave(&interpol),
            sigmas_up: interleave(&up),
            sigmas_down: interleave(&down),
            saved: None,
        }
    }
}

impl Scheduler for KDpm2AncestralDiscreteScheduler {
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
            k_scale(self.sigmas_interpol[index - 1])
        }
    }
    fn step(&mut self, eps: &[f32], index: usize, sample: &[f32], noise: &mut NoiseFn) -> Vec<f32> {
        match self.saved.take() {
            None => {
                let dt = self.sigmas_interpol[index] - self.sigmas[index];
                self.saved = Some(sample.to_vec());
                axpby(1.0, sample, dt, eps)
            }
            Some(s0) => {
                let dt = self.sigmas_down[index - 1] - self.sigmas[index - 1];
                let up = self.sigmas_up[index - 1];
                let z = noise();
                let x = axpby(1.0, &s0, dt, eps);
                axpby(1.0, &x, up, &z)
            }
        }
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_sigma(original, noise, self.sigmas[index])
    }
}
