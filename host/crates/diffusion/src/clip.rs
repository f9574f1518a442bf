//! The CLIP text encoder of Stable Diffusion, as transformers' `CLIPTextModel`: token +
//! position embeddings, pre-LN causal transformer layers, and a final layer norm. SD
//! conditions on the last hidden state (after the final norm). SD 1.x uses OpenAI ViT-L/14's
//! text tower (quick-GELU); SD 2.x OpenCLIP ViT-H's (exact GELU) without its last layer, as
//! it conditions on the penultimate one: diffusers' 2.x configs hold 23 of its 24 layers.
//!
//! Invariants: input is `[B, 77]` token ids; output `[B, 77, hidden]`. Attention is causal.

use anyhow::Result;
use burn::tensor::module::embedding;
use burn::tensor::{Int, Tensor, TensorData};
use serde::Deserialize;

use crate::attention::Attention;
use crate::nn::{LayerNorm, Linear};
use crate::weights::Weights;

/// Text encoder hyper-parameters (transformers' `CLIPTextConfig` subset).
#[derive(Debug, Clone, Deserialize)]
pub struct ClipConfig {
    /// Vocabulary size (49408).
    pub vocab_size: usize,
    /// Width of the model (768 for SD 1.x).
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// `quick_gelu` (SD 1.x) or `gelu` (SD 2.x).
    #[serde(default = "quick_gelu")]
    pub hidden_act: String,
    /// Layer norm epsilon.
    #[serde(default = "ln_eps")]
    pub layer_norm_eps: f64,
}

fn quick_gelu() -> String {
    "quick_gelu".into()
}
fn ln_eps() -> f64 {
    1e-5
}

struct Layer {
    ln1: LayerNorm,
    attn: Attention,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The loaded text encoder.
pub struct ClipTextTransformer {
    token_embedding: Tensor<2>,
    position_embedding: Tensor<2>,
    layers: Vec<Layer>,
    final_ln: LayerNorm,
    quick: bool,
}

impl ClipTextTransformer {
    /// Loads `text_encoder.text_model.*`.
    pub(crate) fn load(w: &Weights, cfg: &ClipConfig) -> Result<Self> {
        let p = "text_encoder.text_model";
        let eps = cfg.layer_norm_eps;
        let mut layers = Vec::new();
        for i in 0..cfg.num_hidden_layers {
            let l = format!("{p}.encoder.layers.{i}");
            layers.push(Layer {
                ln1: w.layer_norm(&format!("{l}.layer_norm1"), eps)?,
                attn: Attention::load_clip(w, &format!("{l}.self_attn"), cfg.num_attention_heads)?,
                ln2: w.layer_norm(&format!("{l}.layer_norm2"), eps)?,
                fc1: w.linear(&format!("{l}.mlp.fc1"))?,
                fc2: w.linear(&format!("{l}.mlp.fc2"))?,
            });
        }
        Ok(Self {
            token_embedding: w.any(&format!("{p}.embeddings.token_embedding.weight"))?,
            position_embedding: w.any(&format!("{p}.embeddings.position_embedding.weight"))?,
            layers,
            final_ln: w.layer_norm(&format!("{p}.final_layer_norm"), eps)?,
            quick: cfg.hidden_act == "quick_gelu",
        })
    }

    /// `[B, 77]` ids (row-major in `ids`) to `[B, 77, hidden]`.
    pub fn forward(&self, ids: &[Vec<u32>]) -> Tensor<3> {
        let device = self.token_embedding.device();
        let b = ids.len();
        let s = ids[0].len();
        let flat: Vec<i64> = ids.iter().flatten().map(|&i| i as i64).collect();
        let idx: Tensor<2, Int> = Tensor::from_data(TensorData::new(flat, [b, s]), &device);
        let d = self.token_embedding.dims()[1];
        let pos = self
            .position_embedding
            .clone()
            .slice(0..s)
            .reshape([1, s, d]);
        let mut x = embedding(self.token_embedding.clone(), idx) + pos;
        for l in &self.layers {
            x = l.attn.forward(l.ln1.forward(x.clone()), None) + x;
            let r = x.clone();
            let y = l.fc1.forward(l.ln2.forward(x));
            let y = if self.quick {
                y.clone() * burn::tensor::activation::sigmoid(y * 1.702)
            } else {
                burn::tensor::activation::gelu(y)
            };
            x = r + l.fc2.forward(y);
        }
        self.final_ln.forward(x)
    }
}
