//! Sinusoidal timestep embedding (diffusers' `Timesteps` with `flip_sin_to_cos=True`,
//! `downscale_freq_shift=0`, as SD 1.x/2.x use) and the two-layer MLP after it.
//!
//! Invariant: computed on the host in f32 from the float timestep, then uploaded, so a
//! fractional timestep (Euler/Heun schedules) embeds exactly as in diffusers.

use anyhow::Result;
use burn::tensor::{Device, Tensor, TensorData};

use crate::nn::{Linear, silu};
use crate::weights::Weights;

/// `[B, dim]` embedding of `timesteps`: `[cos(t f), sin(t f)]`, `f_i = 10000^(-i/half)`.
pub(crate) fn timestep_embedding(timesteps: &[f32], dim: usize, device: &Device) -> Tensor<2> {
    let half = dim / 2;
    let mut data = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let freqs: Vec<f32> = (0..half)
            .map(|i| (-(10000f32.ln()) * i as f32 / half as f32).exp() * t)
            .collect();
        data.extend(freqs.iter().map(|a| a.cos()));
        data.extend(freqs.iter().map(|a| a.sin()));
    }
    Tensor::from_data(TensorData::new(data, [timesteps.len(), dim]), device)
}

/// `linear_2(silu(linear_1(x)))`.
pub(crate) struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    pub(crate) fn load(w: &Weights, p: &str) -> Result<Self> {
        Ok(Self {
            linear_1: w.linear(&format!("{p}.linear_1"))?,
            linear_2: w.linear(&format!("{p}.linear_2"))?,
        })
    }

    pub(crate) fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear_2.forward(silu(self.linear_1.forward(x)))
    }
}
