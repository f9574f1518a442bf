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
}

/// A layer's weight as it was before a merge.
pub(crate) enum Saved {
    /// A linear layer's.
    Linear(Shared<LinearWeight>, LinearWeight),
    /// A convolution's.
    Conv(Shared<ConvWeight>, ConvWeight),
}

impl Saved {
    /// Puts the original weight back.
    pub(crate) fn restore(self) {
        match self {
            Saved::Linear(shared, weight) => *write(&shared) = weight,
            Saved::Conv(shared, weight) => *write(&shared) = weight,
        }
    }
}

fn write<T>(shared: &Shared<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    shared
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `values + delta`, elementwise.
fn added(values: &[f32], delta: &[f32]) -> Vec<f32> {
    values.iter().zip(delta).map(|(v, d)| v + d).collect()
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
                    } => {
                        // Stored `[in, out]`.
                        let mut merged = values.clone();
                        for (o, row) in delta.chunks_exact(inner).enumerate() {
                            for (i, d) in row.iter().enumerate() {
                                merged[i * out + o] += d;
                            }
                        }
                        LinearWeight::Host {
                            values: merged,
                            out_features: *out_features,
                        }
                    }
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
                        let values = added(values, delta);
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
                        transformed: added(
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
