//! Linear multistep (order 4), diffusers' `LMSDiscreteScheduler`: Euler's sigmas; each
//! step's coefficients integrate the Lagrange basis over `[sigma_t, sigma_{t+1}]`. The
//! integrand is a polynomial of degree < 4, so 4-point Gauss-Legendre is exact (diffusers
//! uses adaptive quadrature to 1e-4 relative).

use super::{NoiseFn, Schedule, Scheduler, SigmaTable, add_noise_sigma, k_scale};

/// LMS with order 4.
pub struct LmsDiscreteScheduler {
    table: SigmaTable,
    derivatives: Vec<Vec<f32>>,
}

const ORDER: usize = 4;

impl LmsDiscreteScheduler {
    pub(crate) fn new(c: &Schedule, steps: usize) -> Self {
        Self {
            table: SigmaTable::linspace(c, steps),
            derivatives: vec![],
        }
    }

    fn coefficient(&self, order: usize, t: usize, current: usize) -> f64 {
        let s = &self.table.sigmas;
        let f = |tau: f64| {
            let mut p = 1.0;
            for k in 0..order {
                if k != current {
                    p *= (tau - s[t - k]) / (s[t - current] - s[t - k]);
                }
            }
            p
        };
        let (a, b) = (s[t], s[t + 1]);
        let nodes = [
            -0.861_136_311_594_052_6,
            -0.339_981_043_584_856_3,
            0.339_981_043_584_856_3,
            0.861_136_311_594_052_6,
        ];
        let weights = [
            0.347_854_845_137_453_9,
            0.652_145_154_862_546_1,
            0.652_145_154_862_546_1,
            0.347_854_845_137_453_9,
        ];
        let half = (b - a) / 2.0;
        let mid = (a + b) / 2.0;
        nodes
            .iter()
            .zip(weights)
            .map(|(x, w)| w * f(mid + half * x))
            .sum::<f64>()
            * half
    }
}

impl Scheduler for LmsDiscreteScheduler {
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
        self.derivatives.push(eps.to_vec());
        if self.derivatives.len() > ORDER {
            self.derivatives.remove(0);
        }
        let order = (index + 1).min(ORDER);
        let coeffs: Vec<f64> = (0..order)
            .map(|k| self.coefficient(order, index, k))
            .collect();
        let mut out: Vec<f64> = sample.iter().map(|x| *x as f64).collect();
        for (c, d) in coeffs.iter().zip(self.derivatives.iter().rev()) {
            for (o, v) in out.iter_mut().zip(d) {
                *o += c * *v as f64;
            }
        }
        out.into_iter().map(|v| v as f32).collect()
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        add_noise_sigma(original, noise, self.table.sigmas[index])
    }
}
