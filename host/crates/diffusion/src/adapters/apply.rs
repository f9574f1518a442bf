//! Merging a request's adapters into the model, and taking them out again.
//!
//! Chosen by measurement over run-time application (see docs/BENCHMARKS.md): a merged
//! adapter costs nothing per step, and the merge is one low-rank product per adapted layer.
//!
//! Invariants:
//! - Each adapted layer gets `W + Σ weight · scale · ΔW` over the request's adapters, in the
//!   order the request names them, computed in f32 on the host (a DoRA module's term is its
//!   own, see [`super::dora`], from the layer's weight before the merge); an adapter of
//!   weight 0 is not touched at all, so the model runs on its own weights bit for bit. LoRA
//!   terms on a weight kept in host memory (flex) are multiplied straight into the merged
//!   buffer ([`super::layers::LayerTable::merge_low_rank`]); everything else goes through a
//!   delta.
//! - [`Merged`] holds the replaced weights and puts them back when dropped (also on error
//!   or panic), so the shared model is never left changed. A set may be kept merged
//!   between requests only by its owner, who drops it before anything else is merged or
//!   run (`StableDiffusion::with_adapters_kept`); [`SetKey`] tells whether the next
//!   request's set is the same.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use super::layers::{LowRank, Saved};
use super::patch::ScaledPatch;
use super::{AdapterTarget, Choice, dora};

/// What a request applied of one adapter, for the task's result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AppliedAdapter {
    /// The adapter's name.
    pub name: String,
    /// sha256 of its file.
    pub sha256: String,
    /// The weight asked for.
    #[serde(serialize_with = "as_written")]
    pub weight: f32,
    /// Tensors merged into the model (0 at weight 0).
    pub tensors_applied: usize,
    /// Tensors in the file.
    pub tensors_total: usize,
}

/// `weight` as the client wrote it (0.7), not as the f32 nearest it reads in f64
/// (0.699999988079071): the shortest decimal that is that f32.
fn as_written<S: serde::Serializer>(weight: &f32, serializer: S) -> Result<S::Ok, S::Error> {
    let written: f64 = weight.to_string().parse().unwrap_or(f64::from(*weight));
    serializer.serialize_f64(written)
}

/// Adapters merged into a model's layers; dropping it restores them.
pub(crate) struct Merged {
    saved: Vec<Saved>,
    target: Arc<AdapterTarget>,
}

impl Drop for Merged {
    fn drop(&mut self) {
        while let Some(saved) = self.saved.pop() {
            saved.restore(&self.target.layers);
        }
    }
}

/// What identifies a request's adapter set: each adapter's name, content hash and weight,
/// in the request's order (the order of the sums, so of the merged weights' last bits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetKey(Vec<(String, String, u32)>);

impl SetKey {
    pub(crate) fn of(choices: &[Choice]) -> Self {
        Self(
            choices
                .iter()
                .map(|(a, w)| (a.info.name.clone(), a.info.sha256.clone(), w.to_bits()))
                .collect(),
        )
    }
}

/// Merges `choices` into `target`'s layers (see the module docs).
pub(crate) fn merge(
    target: &Arc<AdapterTarget>,
    choices: &[Choice],
) -> Result<(Merged, Vec<AppliedAdapter>)> {
    let table = &target.layers;
    let mut by_layer: BTreeMap<&str, Vec<(&ScaledPatch, f32)>> = BTreeMap::new();
    let mut applied = Vec::new();
    for (adapter, weight) in choices {
        let active = *weight != 0.0;
        if active {
            for (layer, patch) in &adapter.patches {
                by_layer.entry(layer).or_default().push((patch, *weight));
            }
        }
        applied.push(AppliedAdapter {
            name: adapter.info.name.clone(),
            sha256: adapter.info.sha256.clone(),
            weight: *weight,
            tensors_applied: if active { adapter.info.tensors } else { 0 },
            tensors_total: adapter.info.tensors,
        });
    }
    let mut merged = Merged {
        saved: Vec::with_capacity(by_layer.len()),
        target: target.clone(),
    };
    for (layer, patches) in by_layer {
        let shape = &table
            .get(layer)
            .ok_or_else(|| anyhow::anyhow!("adapter layer {layer} is not in the model"))?
            .shape;
        // LoRA on a host weight: multiplied straight into the merged buffer.
        let low_rank: Option<Vec<LowRank<'_>>> = patches
            .iter()
            .map(|(scaled, weight)| {
                if scaled.dora_scale.is_some() {
                    return None;
                }
                let (up, down) = scaled.patch.low_rank()?;
                Some(LowRank {
                    up: &up.data,
                    down: &down.data,
                    rank: down.shape[0],
                    scale: scaled.scale * weight,
                })
            })
            .collect();
        if let Some(saved) = low_rank.and_then(|terms| table.merge_low_rank(layer, &terms)) {
            merged.saved.push(saved);
            continue;
        }
        // DoRA rescales the layer's own weight, read before anything is merged into it.
        let base = if patches.iter().any(|(p, _)| p.dora_scale.is_some()) {
            Some(table.weight(layer)?)
        } else {
            None
        };
        let mut sum: Option<Vec<f32>> = None;
        for (scaled, weight) in patches {
            let (delta, factor) = match (&scaled.dora_scale, &base) {
                (Some(magnitudes), Some(base)) => {
                    let mut own = scaled.patch.delta(shape);
                    own.iter_mut().for_each(|d| *d *= scaled.scale);
                    (dora::delta(base, &own, magnitudes, shape, weight)?, 1.0)
                }
                _ => (scaled.patch.delta(shape), scaled.scale * weight),
            };
            match &mut sum {
                None => {
                    use rayon::prelude::*;
                    let mut delta = delta;
                    delta.par_iter_mut().for_each(|d| *d *= factor);
                    sum = Some(delta)
                }
                Some(sum) => sum
                    .iter_mut()
                    .zip(delta)
                    .for_each(|(s, d)| *s += d * factor),
            }
        }
        if let Some(sum) = sum {
            merged.saved.push(table.merge(layer, &sum)?);
        }
    }
    Ok((merged, applied))
}
