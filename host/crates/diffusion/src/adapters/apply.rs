//! Merging a request's adapters into the model, and taking them out again.
//!
//! Chosen by measurement over run-time application (see docs/BENCHMARKS.md): a merged
//! adapter costs nothing per step, and the merge is one low-rank product per adapted layer.
//!
//! Invariants:
//! - Each adapted layer gets `W + Σ weight · scale · ΔW` over the request's adapters, in the
//!   order the request names them, computed in f32 on the host; an adapter of weight 0 is
//!   not touched at all, so the model runs on its own weights bit for bit. LoRA terms on a
//!   weight kept in host memory (flex) are multiplied straight into the merged buffer
//!   ([`LayerTable::merge_low_rank`]); everything else goes through a delta.
//! - [`Merged`] holds the replaced weights and puts them back when dropped (also on error
//!   or panic), so the shared model is never left changed.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::Choice;
use super::layers::{LayerTable, LowRank, Saved};
use super::patch::ScaledPatch;

/// What a request applied of one adapter, for the task's result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AppliedAdapter {
    /// The adapter's name.
    pub name: String,
    /// sha256 of its file.
    pub sha256: String,
    /// The weight asked for.
    pub weight: f32,
    /// Tensors merged into the model (0 at weight 0).
    pub tensors_applied: usize,
    /// Tensors in the file.
    pub tensors_total: usize,
}

/// Adapters merged into a model's layers; dropping it restores them.
pub(crate) struct Merged<'a> {
    saved: Vec<Saved>,
    table: &'a LayerTable,
}

impl Drop for Merged<'_> {
    fn drop(&mut self) {
        while let Some(saved) = self.saved.pop() {
            saved.restore(self.table);
        }
    }
}

/// Merges `choices` into `table` (see the module docs).
pub(crate) fn merge<'a>(
    table: &'a LayerTable,
    choices: &[Choice],
) -> Result<(Merged<'a>, Vec<AppliedAdapter>)> {
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
        table,
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
        let mut sum: Option<Vec<f32>> = None;
        for (scaled, weight) in patches {
            let factor = scaled.scale * weight;
            let delta = scaled.patch.delta(shape);
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
