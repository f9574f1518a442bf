//! The nine samplers of easel's SD API, with diffusers' semantics for Stable Diffusion 1.x's
//! scheduler config (scaled-linear betas 0.00085..0.012, 1000 train steps, `steps_offset` 1),
//! each with its own default timestep spacing, for epsilon- and v-prediction models (SD 2.x
//! shares the 1.x schedule).
//!
//! Invariants:
//! - All arithmetic runs on the host in f64 over flattened latents (`&[f32]`), so every
//!   backend gets bit-identical scheduling; only the UNet runs on the device.
//! - [`Scheduler::timesteps`] lists one entry per UNet call (Heun and KDPM2 interleave two
//!   calls per step, PNDM repeats one), and the pipeline calls `input_scale` and `step`
//!   with the position in that list.
//! - Ancestral samplers draw noise only through the `noise` callback (the per-image RNG),
//!   in the same order diffusers calls `randn_tensor`.

mod ddim;
mod dpmsolver_multistep;
mod euler_ancestral_discrete;
mod euler_discrete;
mod heun_discrete;
mod k_dpm_2_ancestral_discrete;
mod k_dpm_2_discrete;
mod lms_discrete;
mod pndm;

pub use ddim::DdimScheduler;
pub use dpmsolver_multistep::DpmSolverMultistepScheduler;
pub use euler_ancestral_discrete::EulerAncestralDiscreteScheduler;
pub use euler_discrete::EulerDiscreteScheduler;
pub use heun_discrete::HeunDiscreteScheduler;
pub use k_dpm_2_ancestral_discrete::KDpm2AncestralDiscreteScheduler;
pub use k_dpm_2_discrete::KDpm2DiscreteScheduler;
pub use lms_discrete::LmsDiscreteScheduler;
pub use pndm::PndmScheduler;

/// A source of standard-normal noise shaped like the latents (flattened).
pub type NoiseFn<'a> = dyn FnMut() -> Vec<f32> + 'a;

/// One sampler, set up for a number of inference steps.
pub trait Scheduler: Send {
    /// Timestep passed to the UNet at each call, in order.
    fn timesteps(&self) -> &[f64];
    /// Standard deviation of the initial latents.
    fn init_noise_sigma(&self) -> f64;
    /// UNet calls per step (2 for Heun and KDPM2), diffusers' `order`.
    fn order(&self) -> usize {
        1
    }
    /// The factor `scale_model_input` applies at call `index`.
    fn input_scale(&self, index: usize) -> f64;
    /// Advances `sample` given the (guided) model output at call `index`.
    fn step(
        &mut self,
        model_output: &[f32],
        index: usize,
        sample: &[f32],
        noise: &mut NoiseFn,
    ) -> Vec<f32>;
    /// Noises clean latents to the level of call `index` (img2img's starting point).
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32>;

    /// `sqrt(alphas_cumprod)` and `sqrt(1 - alphas_cumprod)` at the noise level the model saw
    /// at call `index`. The default reads them off `input_scale` (`1 / sqrt(sigma² + 1)`),
    /// which is right for the samplers that work in sigma space; the others override it.
    fn signal_and_noise(&self, index: usize) -> (f64, f64) {
        let scale = self.input_scale(index);
        (scale, (1.0 - scale * scale).max(0.0).sqrt())
    }

    /// Advances `sample` given a v-prediction model's output at call `index` (SD 2.x's 768-v
    /// models), through the epsilon it implies: `eps = a v + b x_in`, where `x_in` is the
    /// input the model saw and `(a, b)` is [`Scheduler::signal_and_noise`].
    fn step_v(&mut self, v: &[f32], index: usize, sample: &[f32], noise: &mut NoiseFn) -> Vec<f32> {
        let (a, b) = self.signal_and_noise(index);
        let b = b * self.input_scale(index);
        let eps: Vec<f32> = v
            .iter()
            .zip(sample)
            .map(|(v, x)| (a * *v as f64 + b * *x as f64) as f32)
            .collect();
        self.step(&eps, index, sample, noise)
    }
}

/// What a model's UNet predicts (diffusers' `prediction_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prediction {
    /// The noise (SD 1.x, SD 2.x base).
    #[default]
    Epsilon,
    /// The velocity `v` (SD 2.x 768-v).
    V,
}

impl Prediction {
    /// Reads diffusers' `prediction_type` (`epsilon`, `v_prediction`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "epsilon" => Some(Prediction::Epsilon),
            "v_prediction" => Some(Prediction::V),
            _ => None,
        }
    }
}

/// The names easel accepts (seed 003), in its documented order.
pub const SCHEDULER_NAMES: [&str; 9] = [
    "DPMSolverMultistepScheduler",
    "DDIMScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "PNDMScheduler",
    "LMSDiscreteScheduler",
    "HeunDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
];

/// Builds the named scheduler for `steps` inference steps (SD 1.x config), or `None` for an
/// unknown name.
pub fn by_name(name: &str, steps: usize) -> Option<Box<dyn Scheduler>> {
    let c = Schedule::sd();
    Some(match name {
        "DPMSolverMultistepScheduler" => Box::new(DpmSolverMultistepScheduler::new(&c, steps)),
        "DDIMScheduler" => Box::new(DdimScheduler::new(&c, steps)),
        "EulerDiscreteScheduler" => Box::new(EulerDiscreteScheduler::new(&c, steps)),
        "EulerAncestralDiscreteScheduler" => {
            Box::new(EulerAncestralDiscreteScheduler::new(&c, steps))
        }
        "PNDMScheduler" => Box::new(PndmScheduler::new(&c, steps)),
        "LMSDiscreteScheduler" => Box::new(LmsDiscreteScheduler::new(&c, steps)),
        "HeunDiscreteScheduler" => Box::new(HeunDiscreteScheduler::new(&c, steps)),
        "KDPM2DiscreteScheduler" => Box::new(KDpm2DiscreteScheduler::new(&c, steps)),
        "KDPM2AncestralDiscreteScheduler" => {
            Box::new(KDpm2AncestralDiscreteScheduler::new(&c, steps))
        }
        _ => return None,
    })
}

/// The training noise schedule.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub(crate) train_steps: usize,
    pub(crate) steps_offset: usize,
    /// `alphas_cumprod`, computed in f32 as diffusers does, stored as f64.
    pub(crate) alphas_cumprod: Vec<f64>,
}

impl Schedule {
    /// SD 1.x: `scaled_linear` betas from 0.00085 to 0.012 over 1000 steps.
    pub(crate) fn sd() -> Self {
        let n = 1000;
        let (a, b) = (0.00085f32.sqrt(), 0.012f32.sqrt());
        let mut acc = 1f32;
        let alphas_cumprod = (0..n)
            .map(|i| {
                let s = a + (b - a) * i as f32 / (n - 1) as f32;
                acc *= 1.0 - s * s;
                acc as f64
            })
            .collect();
        Self {
            train_steps: n,
            steps_offset: 1,
            alphas_cumprod,
        }
    }

    /// `sqrt((1 - ac) / ac)` per train step (ascending).
    pub(crate) fn sigmas(&self) -> Vec<f64> {
        self.alphas_cumprod
            .iter()
            .map(|a| ((1.0 - a) / a).sqrt())
            .collect()
    }

    /// `linspace(0, train-1, n)` reversed.
    pub(crate) fn linspace(&self, n: usize) -> Vec<f64> {
        let last = (self.train_steps - 1) as f64;
        (0..n)
            .rev()
            .map(|i| {
                if n == 1 {
                    0.0
                } else {
                    (last * i as f64 / (n - 1) as f64) as f32 as f64
                }
            })
            .collect()
    }

    /// `arange(n) * (train // n)` reversed, plus `steps_offset`.
    pub(crate) fn leading(&self, n: usize) -> Vec<f64> {
        let ratio = self.train_steps / n;
        (0..n)
            .rev()
            .map(|i| (i * ratio + self.steps_offset) as f64)
            .collect()
    }
}

/// The table every sigma-parameterized sampler (Euler, Euler ancestral, LMS, Heun, both
/// KDPM2s) starts from: diffusers' "linspace" timesteps and the training sigmas interpolated
/// at them, rounded through f32 because diffusers keeps them in a float32 tensor, then a
/// final 0. Heun and KDPM2 expand it to their two-calls-per-step layout.
#[derive(Debug, Clone)]
pub(crate) struct SigmaTable {
    /// One per step, descending.
    pub(crate) timesteps: Vec<f64>,
    /// `steps + 1` entries, descending, the last 0.
    pub(crate) sigmas: Vec<f64>,
    /// `ln` of the 1000 training sigmas (ascending), for [`sigma_to_t`].
    pub(crate) log_train_sigmas: Vec<f64>,
}

impl SigmaTable {
    pub(crate) fn linspace(c: &Schedule, steps: usize) -> Self {
        let timesteps = c.linspace(steps);
        let train = c.sigmas();
        let mut sigmas: Vec<f64> = timesteps
            .iter()
            .map(|t| interp(*t, &train) as f32 as f64)
            .collect();
        sigmas.push(0.0);
        Self {
            timesteps,
            sigmas,
            log_train_sigmas: train.iter().map(|x| x.ln()).collect(),
        }
    }

    /// diffusers' `init_noise_sigma` for "linspace" spacing: the largest sigma.
    pub(crate) fn init_noise_sigma(&self) -> f64 {
        self.sigmas.iter().cloned().fold(0.0, f64::max)
    }
}

/// numpy's `interp(x, arange(len(ys)), ys)`.
pub(crate) fn interp(x: f64, ys: &[f64]) -> f64 {
    if x <= 0.0 {
        return ys[0];
    }
    let last = ys.len() - 1;
    if x >= last as f64 {
        return ys[last];
    }
    let i = x.floor() as usize;
    let w = x - i as f64;
    ys[i] * (1.0 - w) + ys[i + 1] * w
}

/// diffusers' `_sigma_to_t`: the fractional train step whose log-sigma matches.
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let ls = sigma.max(1e-10).ln();
    let n = log_sigmas.len();
    let count = log_sigmas.iter().filter(|l| ls - **l >= 0.0).count();
    let low = if count == 0 {
        0
    } else {
        (count - 1).min(n - 2)
    };
    let high = low + 1;
    let (lo, hi) = (log_sigmas[low], log_sigmas[high]);
    let w = ((lo - ls) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * high as f64
}

/// `a * x + b * y`, elementwise, in f64.
pub(crate) fn axpby(a: f64, x: &[f32], b: f64, y: &[f32]) -> Vec<f32> {
    x.iter()
        .zip(y)
        .map(|(x, y)| (a * *x as f64 + b * *y as f64) as f32)
        .collect()
}

/// Sigma-parameterized samplers' `add_noise`: `x + noise * sigma`.
pub(crate) fn add_noise_sigma(original: &[f32], noise: &[f32], sigma: f64) -> Vec<f32> {
    axpby(1.0, original, sigma, noise)
}

/// Alpha-parameterized samplers' `add_noise`: `sqrt(ac) x + sqrt(1 - ac) noise`.
pub(crate) fn add_noise_alpha(original: &[f32], noise: &[f32], ac: f64) -> Vec<f32> {
    axpby(ac.sqrt(), original, (1.0 - ac).sqrt(), noise)
}

/// Ancestral sampling's split of a step from sigma `from` to `to` into a deterministic move
/// down to `sigma_down` and fresh noise of scale `sigma_up` (`down^2 + up^2 = to^2`);
/// returns `(up, down)`.
pub(crate) fn ancestral_split(from: f64, to: f64) -> (f64, f64) {
    let up = (to * to * (from * from - to * to) / (from * from)).sqrt();
    (up, (to * to - up * up).sqrt())
}

/// `v[0]`, then every later entry twice: torch's
/// `cat([v[:1], v[1:].repeat_interleave(2)])`, how second-order samplers lay out two calls
/// per step.
pub(crate) fn repeat_after_first(v: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(2 * v.len());
    out.push(v[0]);
    for x in &v[1..] {
        out.extend([*x, *x]);
    }
    out
}

/// `1 / sqrt(sigma^2 + 1)`.
pub(crate) fn k_scale(sigma: f64) -> f64 {
    1.0 / (sigma * sigma + 1.0).sqrt()
}
