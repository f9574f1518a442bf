//! diffusers' `Transformer2DModel` as SD uses it (one `BasicTransformerBlock`: self-attention,
//! cross-attention on the text embedding, GEGLU feed-forward, each pre-LayerNorm with a
//! residual), and the VAE's single-head spatial self-attention.
//!
//! Invariants: heads x head_dim = channels; `proj_in`/`proj_out` are 1x1 convs (SD 1.x) or
//! linears (SD 2.x, `use_linear_projection`), detected from the stored weight's rank.

use anyhow::Result;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, FloatDType, Tensor};

use crate::flex;
use crate::nn::{Conv2d, GroupNorm, LayerNorm, Linear};
use crate::weights::Weights;

/// The most attention scores (batch x heads x queries x keys) one call of burn's attention
/// may make: without autotune its wgpu kernel writes them all to memory, which at 1024x1024
/// with guidance would be 8.6 GB of f16 per layer. Longer query sequences run in slices.
const MAX_SCORES: usize = 1 << 28;

/// Multi-head attention with input projections and an output projection; shared by the
/// UNet's transformers, the VAE's mid-block and CLIP's causal self-attention.
pub(crate) struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    causal: bool,
    upcast: bool,
}

/// How a UNet transformer's attention runs: its heads, and diffusers' `upcast_attention`
/// (SD 2.1 sets it: in f16 its attention scores overflow, so they are computed in f32).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttentionSpec {
    pub(crate) heads: usize,
    pub(crate) upcast: bool,
}

impl Attention {
    /// diffusers' layout: `{p}.to_q`, `to_k`, `to_v`, `to_out.0`.
    fn load(w: &Weights, p: &str, spec: AttentionSpec) -> Result<Self> {
        Ok(Self {
            to_q: w.linear(&format!("{p}.to_q"))?,
            to_k: w.linear(&format!("{p}.to_k"))?,
            to_v: w.linear(&format!("{p}.to_v"))?,
            to_out: w.linear(&format!("{p}.to_out.0"))?,
            heads: spec.heads,
            causal: false,
            upcast: spec.upcast,
        })
    }

    /// transformers' CLIP layout (`{p}.q_proj`, `k_proj`, `v_proj`, `out_proj`), causal.
    pub(crate) fn load_clip(w: &Weights, p: &str, heads: usize) -> Result<Self> {
        Ok(Self {
            to_q: w.linear(&format!("{p}.q_proj"))?,
            to_k: w.linear(&format!("{p}.k_proj"))?,
            to_v: w.linear(&format!("{p}.v_proj"))?,
            to_out: w.linear(&format!("{p}.out_proj"))?,
            heads,
            causal: true,
            upcast: false,
        })
    }

    /// `x` `[B, N, C]`, `ctx` `[B, M, Cc]` (None: self-attention).
    pub(crate) fn forward(&self, x: Tensor<3>, ctx: Option<&Tensor<3>>) -> Tensor<3> {
        let [b, n, _] = x.dims();
        let ctx = ctx.cloned().unwrap_or_else(|| x.clone());
        let m = ctx.dims()[1];
        let q = self.to_q.forward(x);
        let k = self.to_k.forward(ctx.clone());
        let v = self.to_v.forward(ctx);
        let inner = q.dims()[2];
        let (h, d) = (self.heads, inner / self.heads);
        let a = if flex::takes_kernels(&q) {
            let shape = flex::attention::Shape {
                batch: b,
                queries: n,
                keys: m,
                heads: h,
                head_dim: d,
                causal: self.causal,
            };
            let (q, k, v) = (flex::elements(q), flex::elements(k), flex::elements(v));
            flex::tensor(flex::attention::attention(&q, &k, &v, shape), [b, n, inner])
        } else {
            sliced_attention([q, k, v], h, self.causal, self.upcast, MAX_SCORES)
        };
        self.to_out.forward(a)
    }
}

/// burn's attention over `[q, k, v]` (`[B, N, C]`, `[B, M, C]`, `[B, M, C]`) with `heads`
/// heads, in slices of queries that make at most `max_scores` scores each; in f32 when
/// `upcast`, whatever the inputs' precision.
fn sliced_attention(
    [q, k, v]: [Tensor<3>; 3],
    heads: usize,
    causal: bool,
    upcast: bool,
    max_scores: usize,
) -> Tensor<3> {
    let [b, n, inner] = q.dims();
    let m = k.dims()[1];
    let precision = q.dtype();
    let upcast = upcast && precision != DType::F32;
    let split = |t: Tensor<3>, len| {
        let t = if upcast { t.cast(FloatDType::F32) } else { t };
        t.reshape([b, len, heads, inner / heads]).swap_dims(1, 2)
    };
    let (q, k, v) = (split(q, n), split(k, m), split(v, m));
    let opts = AttentionModuleOptions {
        is_causal: causal,
        ..Default::default()
    };
    // A causal mask is laid out from the first query, so causal attention (CLIP's 77 tokens)
    // is never sliced.
    let rows = if causal {
        n
    } else {
        (max_scores / (b * heads * m)).clamp(1, n)
    };
    let slices = (0..n).step_by(rows).map(|first| {
        let q = q.clone().narrow(2, first, rows.min(n - first));
        attention(q, k.clone(), v.clone(), None, None, opts)
    });
    let out = Tensor::cat(slices.collect(), 2)
        .swap_dims(1, 2)
        .reshape([b, n, inner]);
    if upcast {
        out.cast(FloatDType::from(precision))
    } else {
        out
    }
}

struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff_proj: Linear,
    ff_out: Linear,
}

impl BasicTransformerBlock {
    fn load(w: &Weights, p: &str, spec: AttentionSpec) -> Result<Self> {
        Ok(Self {
            norm1: w.layer_norm(&format!("{p}.norm1"), 1e-5)?,
            attn1: Attention::load(w, &format!("{p}.attn1"), spec)?,
            norm2: w.layer_norm(&format!("{p}.norm2"), 1e-5)?,
            attn2: Attention::load(w, &format!("{p}.attn2"), spec)?,
            norm3: w.layer_norm(&format!("{p}.norm3"), 1e-5)?,
            ff_proj: w.linear(&format!("{p}.ff.net.0.proj"))?,
            ff_out: w.linear(&format!("{p}.ff.net.2"))?,
        })
    }

    fn forward(&self, x: Tensor<3>, ctx: &Tensor<3>) -> Tensor<3> {
        let x = self.attn1.forward(self.norm1.forward(x.clone()), None) + x;
        let x = self.attn2.forward(self.norm2.forward(x.clone()), Some(ctx)) + x;
        let h = self.ff_proj.forward(self.norm3.forward(x.clone()));
        if flex::takes_kernels(&h) {
            let [b, n, doubled] = h.dims();
            let gated = flex::geglu::geglu(&flex::elements(h), doubled / 2);
            return self
                .ff_out
                .forward(flex::tensor(gated, [b, n, doubled / 2]))
                + x;
        }
        let mut parts = h.chunk(2, 2);
        let gate = parts.pop().expect("two chunks");
        let hidden = parts.pop().expect("two chunks");
        self.ff_out
            .forward(hidden * burn::tensor::activation::gelu(gate))
            + x
    }
}

enum Proj {
    Conv(Conv2d),
    Linear(Linear),
}

/// Spatial transformer over `[B, C, H, W]` conditioned on `[B, 77, Cc]`.
pub(crate) struct Transformer2D {
    norm: GroupNorm,
    proj_in: Proj,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Proj,
}

impl Transformer2D {
    pub(crate) fn load(w: &Weights, p: &str, spec: AttentionSpec, groups: usize) -> Result<Self> {
        let proj = |name: &str| -> Result<Proj> {
            let key = format!("{p}.{name}");
            if w.shape(&format!("{key}.weight"))?.len() == 4 {
                Ok(Proj::Conv(w.conv2d(&key, 1, 0)?))
            } else {
                Ok(Proj::Linear(w.linear(&key)?))
            }
        };
        let mut blocks = Vec::new();
        let mut i = 0;
        while w.contains(&format!("{p}.transformer_blocks.{i}.norm1.weight")) {
            blocks.push(BasicTransformerBlock::load(
                w,
                &format!("{p}.transformer_blocks.{i}"),
                spec,
            )?);
            i += 1;
        }
        Ok(Self {
            norm: w.group_norm(&format!("{p}.norm"), groups, 1e-6)?,
            proj_in: proj("proj_in")?,
            blocks,
            proj_out: proj("proj_out")?,
        })
    }

    pub(crate) fn forward(&self, x: Tensor<4>, ctx: &Tensor<3>) -> Tensor<4> {
        let [b, _, h, w] = x.dims();
        let residual = x.clone();
        let x = self.norm.forward(x);
        let to_seq = |t: Tensor<4>| -> Tensor<3> {
            let ch = t.dims()[1];
            t.permute([0, 2, 3, 1]).reshape([b, h * w, ch])
        };
        let mut s = match &self.proj_in {
            Proj::Conv(cv) => to_seq(cv.forward(x)),
            Proj::Linear(l) => l.forward(to_seq(x)),
        };
        for blk in &self.blocks {
            s = blk.forward(s, ctx);
        }
        let from_seq = |t: Tensor<3>| -> Tensor<4> {
            let ch = t.dims()[2];
            t.reshape([b, h, w, ch]).permute([0, 3, 1, 2])
        };
        let out = match &self.proj_out {
            Proj::Conv(cv) => cv.forward(from_seq(s)),
            Proj::Linear(l) => from_seq(l.forward(s)),
        };
        out + residual
    }
}

/// The VAE mid-block attention: group norm, one head over all pixels, residual.
pub(crate) struct VaeAttention {
    norm: GroupNorm,
    attn: Attention,
}

impl VaeAttention {
    pub(crate) fn load(w: &Weights, p: &str, groups: usize) -> Result<Self> {
        Ok(Self {
            norm: w.group_norm(&format!("{p}.group_norm"), groups, 1e-6)?,
            attn: Attention::load(
                w,
                p,
                AttentionSpec {
                    heads: 1,
                    upcast: false,
                },
            )?,
        })
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let s = self
            .norm
            .forward(x.clone())
            .permute([0, 2, 3, 1])
            .reshape([b, h * w, c]);
        let s = self.attn.forward(s, None);
        s.reshape([b, h, w, c]).permute([0, 3, 1, 2]) + x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, FloatDType};

    #[test]
    fn sliced_attention_matches_one_call() {
        let device = Device::flex();
        let random =
            |shape: [usize; 3]| Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (
            random([2, 37, 16]),
            random([2, 11, 16]),
            random([2, 11, 16]),
        );
        let whole = sliced_attention(
            [q.clone(), k.clone(), v.clone()],
            4,
            false,
            false,
            usize::MAX,
        );
        // Room for 5 queries per slice: seven slices of 5, then one of 2.
        let sliced = sliced_attention([q, k, v], 4, false, false, 2 * 4 * 11 * 5);
        // Each query's row is the same sum either way, but the backend may block a shorter
        // query sequence differently: equal up to f32 rounding.
        let diff = (whole - sliced).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-5, "max abs difference {diff}");
    }

    #[test]
    fn upcast_attention_matches_f32_and_keeps_the_inputs_precision() {
        let device = Device::flex();
        // Every score is 100 x 100 x 16 = 160 000, past f16's largest value (65 504). (flex's
        // own f16 attention survives it too, by accumulating in f32; wgpu's is the concern,
        // and the wgpu SD 2.x parity test runs this path there.)
        let full = |shape: [usize; 3]| Tensor::<3>::full(shape, 100.0, &device);
        let f16 = |t: Tensor<3>| t.cast(FloatDType::F16);
        let (q, k, v) = (
            full([1, 3, 16]),
            full([1, 5, 16]),
            Tensor::<3>::random([1, 5, 16], Distribution::Normal(0.0, 1.0), &device),
        );
        let want = sliced_attention(
            [q.clone(), k.clone(), v.clone()],
            1,
            false,
            false,
            usize::MAX,
        );
        let got = sliced_attention([f16(q), f16(k), f16(v)], 1, false, true, usize::MAX);
        assert_eq!(
            got.dtype(),
            burn::tensor::DType::F16,
            "the result keeps the inputs' precision"
        );
        let diff = (got.cast(FloatDType::F32) - want)
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(diff < 1e-2, "max abs difference {diff}");
    }
}
