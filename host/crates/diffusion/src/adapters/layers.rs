//! The model's linear and convolution layers by prefixed diffusers name
//! (`unet.down_blocks.0.attentions.0.proj_in`, `text_encoder.text_model.encoder.layers.0.mlp.fc1`),
//! with the PyTorch shape of each weight, and the one place their weights are replaced.
//!
//! Invariants:
//! - A delta is given in PyTorch's layout (`[out, in]` or `[out, in, k, k]`, row-major, f32)
//!   and added in whatever form the layer runs: transposed for a linear layer, on the device
//!   in its precision, and on flex through the same precomputation the loader made
//!   (Winograd's transform and the upsample phase kernels are linear in the weight, so the
//!   transform of the delta is added, and the phases are made anew from the merged weight).
//! - [`LayerTable::merge`] hands back the layer's original weight; [`Saved::restore`] puts that
//!   very value back, so a restored model is the loaded model bit for bit.
//! - Host buffers of merged weights are kept after a restore and reused by the next merge of
//!   the same size: filling fresh memory costs a page fault per 4 KiB, which dominated the
//!   merge of a full SD 1.5 LoRA on flex. They hold the adapted layers' size once more.

use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use burn::tensor::{FloatDType, Tensor, TensorData};

use crate::flex;
use crate::nn::{ConvWeight, LinearWeight, Shared};

/// Where a layer's weight lives.
pub(crate) enum LayerWeight {
    /// A linear layer.
    Linear(Shared<LinearWeight>),
    /// A convolution.
    Conv(Shared<ConvWeight>),
}

impl From<Shared<LinearWeight>> for LayerWeight {
    fn from(weight: Shared<LinearWeight>) -> Self {
        LayerWeight::Linear(weight)
    }
}

impl From<Shared<ConvWeight>> for LayerWeight {
    fn from(weight: Shared<ConvWeight>) -> Self {
        LayerWeight::Conv(weight)
    }
}

/// One layer: its weight's PyTorch shape and the weight itself.
pub(crate) struct Layer {
    /// `[out, in]` or `[out, in, k, k]`.
    pub(crate) shape: Vec<usize>,
    weight: LayerWeight,
}

/// Every linear and convolution layer of a loaded model.
#[derive(Default)]
pub(crate) struct LayerTable {
    layers: BTreeMap<String, Layer>,
    spare: std::sync::Mutex<Vec<Vec<f32>>>,
}

/// One low-rank term of a merge: `scale · up @ down`.
pub(crate) struct LowRank<'a> {
    pub(crate) up: &'a [f32],
    pub(crate) down: &'a [f32],
    pub(crate) rank: usize,
    pub(crate) scale: f32,
}

/// A layer's weight as it was before a merge.
pub(crate) enum Saved {
    /// A linear layer's.
    Linear(Shared<LinearWeight>, LinearWeight),
    /// A convolution's.
    Conv(Shared<ConvWeight>, ConvWeight),
}

impl Saved {
    /// Puts the original weight back; the merged weight's host buffers go to `table`'s
    /// spares.
    pub(crate) fn restore(self, table: &LayerTable) {
        let buffers = match self {
            Saved::Linear(shared, weight) => {
                match std::mem::replace(&mut *write(&shared), weight) {
                    LinearWeight::Host { values, .. } => vec![values],
                    LinearWeight::Device(_) => Vec::new(),
                }
            }
            Saved::Conv(shared, weight) => match std::mem::replace(&mut *write(&shared), weight) {
                ConvWeight::Host { values, phases, .. } => {
                    std::iter::once(values).chain(phases).collect()
                }
                ConvWeight::Winograd { transformed, .. } => vec![transformed],
                ConvWeight::Device(_) => Vec::new(),
            },
        };
        table
            .spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(buffers);
    }
}

fn read<T>(shared: &Shared<T>) -> std::sync::RwLockReadGuard<'_, T> {
    shared
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(shared: &Shared<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    shared
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LayerTable {
    /// A buffer of `len` values to overwrite: a spare one of that size when there is one.
    fn buffer(&self, len: usize) -> Vec<f32> {
        let mut spare = self
            .spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match spare.iter().position(|b| b.len() == len) {
            Some(at) => spare.swap_remove(at),
            None => vec![0f32; len],
        }
    }

    /// `values + delta`, elementwise.
    fn added(&self, values: &[f32], delta: &[f32]) -> Vec<f32> {
        use rayon::prelude::*;
        let mut out = self.buffer(values.len());
        out.par_iter_mut()
            .zip(values.par_iter().zip(delta.par_iter()))
            .for_each(|(o, (v, d))| *o = v + d);
        out
    }
}

/// `values + deltaᵀ` for `values` `[cols, rows]` and `delta` `[rows, cols]`, row-major, in
/// tiles that stay in cache, in one pass (a linear layer's delta comes `[out, in]`; flex
/// keeps the weight `[in, out]`).
fn added_transposed(
    mut out: Vec<f32>,
    values: &[f32],
    delta: &[f32],
    rows: usize,
    cols: usize,
) -> Vec<f32> {
    use rayon::prelude::*;
    const TILE: usize = 64;
    out.par_chunks_mut(TILE * rows)
        .zip(values.par_chunks(TILE * rows))
        .enumerate()
        .for_each(|(block, (chunk, base))| {
            let first_col = block * TILE;
            let width = chunk.len() / rows;
            for row_tile in (0..rows).step_by(TILE) {
                for c in 0..width {
                    let col = first_col + c;
                    for r in row_tile..(row_tile + TILE).min(rows) {
                        chunk[c * rows + r] = base[c * rows + r] + delta[r * cols + col];
                    }
                }
            }
        });
    out
}

/// `weight + delta` on the weight's device, in its precision.
fn added_on_device<const D: usize>(weight: &Tensor<D>, delta: Tensor<D>) -> Tensor<D> {
    weight.clone() + delta.cast(FloatDType::from(weight.dtype()))
}

impl LayerTable {
    pub(crate) fn insert(&mut self, name: &str, shape: Vec<usize>, weight: LayerWeight) {
        self.layers
            .insert(name.to_string(), Layer { shape, weight });
    }

    /// The layer called `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Layer> {
        self.layers.get(name)
    }

    /// Every layer, by name.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Layer)> {
        self.layers.iter()
    }

    /// Layer `name`'s weight as it is now, in PyTorch's layout, f32 (read back from the
    /// device, transposed back, or taken back out of Winograd's domain to within rounding).
    pub(crate) fn weight(&self, name: &str) -> Result<Vec<f32>> {
        let layer = self
            .layers
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("no layer {name}"))?;
        let out = layer.shape[0];
        let inner = layer.shape[1..].iter().product::<usize>();
        let untransposed = |values: &[f32]| {
            // Stored `[in, out]`.
            let mut weight = vec![0f32; values.len()];
            for (i, row) in values.chunks_exact(out).enumerate() {
                for (o, value) in row.iter().enumerate() {
                    weight[o * inner + i] = *value;
                }
            }
            weight
        };
        let on_host = |values: burn::tensor::TensorData| {
            values
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("reading layer {name} back: {e:?}"))
        };
        Ok(match &layer.weight {
            LayerWeight::Linear(shared) => match &*read(shared) {
                LinearWeight::Host { values, .. } => untransposed(values),
                LinearWeight::Device(weight) => untransposed(&on_host(weight.to_data())?),
            },
            LayerWeight::Conv(shared) => match &*read(shared) {
                ConvWeight::Host { values, .. } => values.clone(),
                ConvWeight::Device(weight) => on_host(weight.to_data())?,
                ConvWeight::Winograd {
                    transformed,
                    out_channels,
                } => flex::winograd::untransform_weights(transformed, *out_channels),
            },
        })
    }

    /// Adds `Σ scale · up @ down` (each `up` `[out, rank]`, `down` `[rank, in]` in PyTorch's
    /// layout) to layer `name`'s weight straight in its host buffer, one threaded gemm per
    /// term and no delta in between; `None` when the layer does not keep its weight in host
    /// memory as stored (device weights, Winograd, upsample phases: use [`LayerTable::merge`]).
    pub(crate) fn merge_low_rank(&self, name: &str, terms: &[LowRank<'_>]) -> Option<Saved> {
        let layer = self.layers.get(name)?;
        let out: usize = layer.shape[0];
        let inner: usize = layer.shape[1..].iter().product();
        let fits = |t: &LowRank<'_>| t.up.len() == out * t.rank && t.down.len() == t.rank * inner;
        if !terms.iter().all(fits) {
            return None;
        }
        // (buffer, whether it is `[in, out]`)
        let gemm_into = |merged: &mut [f32], transposed: bool| {
            for t in terms {
                // SAFETY: `merged` holds out x inner values; `up` out x rank, `down`
                // rank x inner (checked above); the buffers do not overlap.
                unsafe {
                    if transposed {
                        // merged[in, out] += scale · downᵀ[in, r] · upᵀ[r, out]
                        flex::gemm(
                            [inner, out, t.rank],
                            merged.as_mut_ptr(),
                            out,
                            true,
                            flex::Matrix::transposed(t.down.as_ptr(), inner),
                            flex::Matrix::transposed(t.up.as_ptr(), t.rank),
                            t.scale,
                            true,
                        );
                    } else {
                        // merged[out, in] += scale · up[out, r] · down[r, in]
                        flex::gemm(
                            [out, inner, t.rank],
                            merged.as_mut_ptr(),
                            inner,
                            true,
                            flex::Matrix::rows(t.up.as_ptr(), t.rank),
                            flex::Matrix::rows(t.down.as_ptr(), inner),
                            t.scale,
                            true,
                        );
                    }
                }
            }
        };
        let copy = |values: &[f32]| {
            let mut merged = self.buffer(values.len());
            merged.copy_from_slice(values);
            merged
        };
        match &layer.weight {
            LayerWeight::Linear(shared) => {
                let mut slot = write(shared);
                let LinearWeight::Host {
                    values,
                    out_features,
                } = &*slot
                else {
                    return None;
                };
                let mut merged = copy(values);
                gemm_into(&mut merged, true);
                let merged = LinearWeight::Host {
                    values: merged,
                    out_features: *out_features,
                };
                Some(Saved::Linear(
                    shared.clone(),
                    std::mem::replace(&mut *slot, merged),
                ))
            }
            LayerWeight::Conv(shared) => {
                let mut slot = write(shared);
                let ConvWeight::Host {
                    values,
                    shape,
                    phases: None,
                } = &*slot
                else {
                    return None;
                };
                let mut merged = copy(values);
                gemm_into(&mut merged, false);
                let merged = ConvWeight::Host {
                    values: merged,
                    shape: *shape,
                    phases: None,
                };
                Some(Saved::Conv(
                    shared.clone(),
                    std::mem::replace(&mut *slot, merged),
                ))
            }
        }
    }

    /// Adds `delta` (PyTorch layout, see the module docs) to layer `name`'s weight and
    /// returns the weight it replaced.
    pub(crate) fn merge(&self, name: &str, delta: &[f32]) -> Result<Saved> {
        let layer = self
            .layers
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("no layer {name}"))?;
        let shape = &layer.shape;
        let elements: usize = shape.iter().product();
        ensure!(
            delta.len() == elements,
            "layer {name}: delta of {} values for shape {shape:?}",
            delta.len()
        );
        let (out, inner) = (shape[0], elements / shape[0]);
        Ok(match &layer.weight {
            LayerWeight::Linear(shared) => {
                let mut slot = write(shared);
                let merged = match &*slot {
                    LinearWeight::Device(weight) => {
                        let delta: Tensor<2> = Tensor::from_data(
                            TensorData::new(delta.to_vec(), [out, inner]),
                            &weight.device(),
                        );
                        LinearWeight::Device(added_on_device(weight, delta.transpose()))
                    }
                    LinearWeight::Host {
                        values,
                        out_features,
                    } => LinearWeight::Host {
                        // Stored `[in, out]`.
                        values: added_transposed(
                            self.buffer(values.len()),
                            values,
                            delta,
                            out,
                            inner,
                        ),
                        out_features: *out_features,
                    },
                };
                Saved::Linear(shared.clone(), std::mem::replace(&mut *slot, merged))
            }
            LayerWeight::Conv(shared) => {
                let mut slot = write(shared);
                let merged = match &*slot {
                    ConvWeight::Device(weight) => {
                        let delta: Tensor<4> = Tensor::from_data(
                            TensorData::new(delta.to_vec(), weight.dims()),
                            &weight.device(),
                        );
                        ConvWeight::Device(added_on_device(weight, delta))
                    }
                    ConvWeight::Host {
                        values,
                        shape,
                        phases,
                    } => {
                        let values = self.added(values, delta);
                        match phases {
                            Some(_) => ConvWeight::host_upsampling(values, *shape),
                            None => ConvWeight::Host {
                                values,
                                shape: *shape,
                                phases: None,
                            },
                        }
                    }
                    ConvWeight::Winograd {
                        transformed,
                        out_channels,
                    } => ConvWeight::Winograd {
                        transformed: self.added(
                            transformed,
                            &flex::winograd::transform_weights(delta, *out_channels),
                        ),
                        out_channels: *out_channels,
                    },
                };
                Saved::Conv(shared.clone(), std::mem::replace(&mut *slot, merged))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn adds_a_transposed_delta_at_any_shape() {
        for (rows, cols) in [(1, 1), (3, 200), (130, 7), (65, 129)] {
            let delta: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let values: Vec<f32> = (0..rows * cols).map(|v| 0.5 * v as f32).collect();
            let made =
                super::added_transposed(vec![0.0; values.len()], &values, &delta, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    let at = c * rows + r;
                    assert_eq!(
                        made[at],
                        values[at] + delta[r * cols + c],
                        "{rows}x{cols} at {r},{c}"
                    );
                }
            }
        }
    }
}
