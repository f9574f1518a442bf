//! PNDM with `skip_prk_steps` (pure PLMS), diffusers' `PNDMScheduler`: "leading" spacing
//! plus `steps_offset`; the timestep list repeats the second-to-last one, so `n` steps make
//! `n + 1` UNet calls, the first two combined as in diffusers' warm-up.

use super::{NoiseFn, Schedule, Scheduler, add_noise_alpha};

/// Pseudo linear multistep.
pub struct PndmScheduler {
    ac: Vec<f64>,
    timesteps: Vec<f64>,
    ratio: i64,
    ets: Vec<Vec<f32>>,
    cur_sample: Option<Vec<f32>>,
    counter: usize,
}

impl PndmScheduler {
    pub(crate) fn new(c: &Schedule, steps: usize) -> Self {
        let mut timesteps = c.leading(steps);
        // PLMS's warm-up runs the second timestep twice.
        if steps >= 2 {
            timesteps.insert(1, timesteps[1]);
        }
        Self {
            ac: c.alphas_cumprod.clone(),
            timesteps,
            ratio: (c.train_steps / steps) as i64,
            ets: vec![],
            cur_sample: None,
            counter: 0,
        }
    }

    /// `combined` is the PLMS combination of the model's outputs; with `predicts_v` they are
    /// v-predictions, converted to epsilon only after combining, as diffusers does (which
    /// differs from converting each one first).
    fn prev_sample(
        &self,
        sample: &[f32],
        t: i64,
        prev: i64,
        combined: &[f64],
        predicts_v: bool,
    ) -> Vec<f32> {
        let a_t = self.ac[t as usize];
        let a_p = if prev >= 0 {
            self.ac[prev as usize]
        } else {
            self.ac[0]
        };
        let (b_t, b_p) = (1.0 - a_t, 1.0 - a_p);
        let coeff = (a_p / a_t).sqrt();
        let denom = a_t * b_p.sqrt() + (a_t * b_t * a_p).sqrt();
        sample
            .iter()
            .zip(combined)
            .map(|(x, e)| {
                let x = *x as f64;
                let e = if predicts_v {
                    a_t.sqrt() * e + b_t.sqrt() * x
                } else {
                    *e
                };
                (coeff * x - (a_p - a_t) * e / denom) as f32
            })
            .collect()
    }

    /// One PLMS step from the model's output `eps` at call `index` (v-predictions when
    /// `predicts_v`).
    fn advance(&mut self, eps: &[f32], index: usize, sample: &[f32], predicts_v: bool) -> Vec<f32> {
        let mut t = self.timesteps[index] as i64;
        let mut prev = t - self.ratio;
        if self.counter != 1 {
            if self.ets.len() > 3 {
                self.ets.remove(0);
            }
            self.ets.push(eps.to_vec());
        } else {
            prev = t;
            t += self.ratio;
        }
        let e = |k: usize| -> &Vec<f32> { &self.ets[self.ets.len() - k] };
        let mut sample = sample.to_vec();
        let n = eps.len();
        let out: Vec<f64> = if self.ets.len() == 1 && self.counter == 0 {
            self.cur_sample = Some(sample.clone());
            eps.iter().map(|x| *x as f64).collect()
        } else if self.ets.len() == 1 && self.counter == 1 {
            sample = self.cur_sample.take().unwrap_or(sample);
            (0..n)
                .map(|i| (eps[i] as f64 + e(1)[i] as f64) / 2.0)
                .collect()
        } else if self.ets.len() == 2 {
            (0..n)
                .map(|i| (3.0 * e(1)[i] as f64 - e(2)[i] as f64) / 2.0)
                .collect()
        } else if self.ets.len() == 3 {
            (0..n)
                .map(|i| {
                    (23.0 * e(1)[i] as f64 - 16.0 * e(2)[i] as f64 + 5.0 * e(3)[i] as f64) / 12.0
                })
                .collect()
        } else {
            (0..n)
                .map(|i| {
                    (55.0 * e(1)[i] as f64 - 59.0 * e(2)[i] as f64 + 37.0 * e(3)[i] as f64
                        - 9.0 * e(4)[i] as f64)
                        / 24.0
                })
                .collect()
        };
        let r = self.prev_sample(&sample, t, prev, &out, predicts_v);
        self.counter += 1;
        r
    }
}

impl Scheduler for PndmScheduler {
    fn step(&mut self, eps: &[f32], index: usize, sample: &[f32], _: &mut NoiseFn) -> Vec<f32> {
        self.advance(eps, index, sample, false)
    }
    fn step_v(&mut self, v: &[f32], index: usize, sample: &[f32], _: &mut NoiseFn) -> Vec<f32> {
        self.advance(v, index, sample, true)
    }
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
    fn input_scale(&self, _: usize) -> f64 {
        1.0
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_alpha(original, noise, self.ac[self.timesteps[index] as usize])
    }
}
