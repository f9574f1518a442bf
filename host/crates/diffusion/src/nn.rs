//! The few layers Stable Diffusion is built from, as plain tensors and functional ops.
//!
//! Invariants: inference only (no autodiff, no dropout); every layer matches PyTorch's
//! semantics for the same parameters. Linear and convolution weights are [`Shared`] with the
//! model's layer table (`crate::adapters::layers`), which alone replaces them (adapters merged
//! in for one request, then the originals put back) while no forward pass runs.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use burn::tensor::module::{conv2d, interpolate, linear};
use burn::tensor::ops::{ConvOptions, InterpolateMode, InterpolateOptions};
use burn::tensor::{FloatDType, Tensor};

use crate::flex;

/// A weight the layer reads and the layer table may swap between requests.
pub(crate) type Shared<T> = Arc<RwLock<T>>;

/// Reads a shared weight. A writer that panicked left either the old or the new weight in
/// place (each swap is one assignment), so a poisoned lock still holds a whole weight.
pub(crate) fn read<T>(shared: &Shared<T>) -> RwLockReadGuard<'_, T> {
    shared.read().unwrap_or_else(PoisonError::into_inner)
}

/// `y = x W + b`.
pub(crate) struct Linear {
    pub(crate) weight: Shared<LinearWeight>,
    pub(crate) bias: Option<Tensor<1>>,
}

/// Where a linear layer's weight lives.
// One per layer, built once at load: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum LinearWeight {
    /// `[in, out]` on the model's device, for burn's `linear`.
    Device(Tensor<2>),
    /// `[in, out]`, contiguous in host memory, for the flex kernel (the model runs on flex).
    Host {
        values: Vec<f32>,
        out_features: usize,
    },
}

impl Linear {
    pub(crate) fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match &*read(&self.weight) {
            LinearWeight::Device(weight) => linear(x, weight.clone(), self.bias.clone()),
            LinearWeight::Host {
                values,
                out_features,
            } => {
                let mut shape = x.dims();
                shape[D - 1] = *out_features;
                let bias = self.bias.clone().map(flex::elements);
                let out = flex::with_elements(&x, |x| {
                    flex::linear::linear(x, values, bias.as_deref(), *out_features)
                });
                flex::tensor(out, shape)
            }
        }
    }
}

/// A square-kernel 2D convolution with symmetric padding.
pub(crate) struct Conv2d {
    pub(crate) weight: Shared<ConvWeight>,
    pub(crate) bias: Option<Tensor<1>>,
    pub(crate) stride: usize,
    pub(crate) padding: usize,
}

/// Where a convolution's `[out, in, k, k]` weight lives.
pub(crate) enum ConvWeight {
    /// On the model's device, for burn's convolution.
    Device(Tensor<4>),
    /// In host memory, row-major, for the flex kernel (the model runs on flex); with its
    /// four 2x2 phase kernels when the convolution follows a 2x upsample (see
    /// [`Conv2d::forward_upsampled2x`]).
    Host {
        values: Vec<f32>,
        shape: [usize; 4],
        phases: Option<Vec<f32>>,
    },
    /// In host memory, transformed for [`flex::winograd`] (the model runs on flex, and the
    /// shape is one [`flex::winograd::suits`]).
    Winograd {
        transformed: Vec<f32>,
        out_channels: usize,
    },
}

impl ConvWeight {
    /// A host weight of a stride-1, padding-1 convolution that follows a 2x upsample, with
    /// its four 2x2 phase kernels when it is 3x3 (see [`flex::upsample_conv`]).
    pub(crate) fn host_upsampling(values: Vec<f32>, shape: [usize; 4]) -> Self {
        let phases = (shape[2] == 3).then(|| flex::upsample_conv::phase_weights(&values));
        ConvWeight::Host {
            values,
            shape,
            phases,
        }
    }
}

impl Conv2d {
    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_padded(x, [(self.padding, self.padding); 2])
    }

    /// `self.forward` of `x` resized 2x by nearest neighbour. With phase kernels (a host
    /// weight loaded by `Weights::conv2d_upsampling`), it runs on `x` itself, as four 2x2
    /// convolutions.
    pub(crate) fn forward_upsampled2x(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, _, height, width] = x.dims();
        if let ConvWeight::Host {
            shape,
            phases: Some(phases),
            ..
        } = &*read(&self.weight)
        {
            let bias = self.bias.clone().map(flex::elements);
            let planes = flex::Planes::from(x.dims());
            let out = flex::with_elements(&x, |x| {
                flex::upsample_conv::upsample2x_conv3x3(x, phases, bias.as_deref(), planes)
            });
            return flex::tensor(out, [batch, shape[0], 2 * height, 2 * width]);
        }
        self.forward(upsample_nearest(x, [2 * height, 2 * width]))
    }

    /// The VAE encoder's downsample: pad right and bottom by one, then a stride-2 conv.
    pub(crate) fn forward_pad_br(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_padded(x, [(0, 1), (0, 1)])
    }

    /// `padding` is `(before, after)` per spatial axis.
    fn forward_padded(&self, x: Tensor<4>, padding: [(usize, usize); 2]) -> Tensor<4> {
        match &*read(&self.weight) {
            ConvWeight::Winograd {
                transformed,
                out_channels,
            } => {
                assert_eq!(
                    padding,
                    [(1, 1); 2],
                    "Winograd weights serve padding 1 only"
                );
                let [batch, _, height, width] = x.dims();
                let planes = flex::Planes::from(x.dims());
                let bias = self.bias.clone().map(flex::elements);
                let out = flex::with_elements(&x, |x| {
                    flex::winograd::conv3x3(x, transformed, bias.as_deref(), planes)
                });
                flex::tensor(out, [batch, *out_channels, height, width])
            }
            ConvWeight::Device(weight) => {
                let opts = ConvOptions::new_with_padding([self.stride; 2], padding, [1, 1], 1);
                conv2d(x, weight.clone(), self.bias.clone(), opts)
            }
            ConvWeight::Host { values, shape, .. } => {
                let [batch, in_channels, in_height, in_width] = x.dims();
                let [out_channels, _, kernel, _] = *shape;
                let out_size = |size: usize, (before, after): (usize, usize)| {
                    (size + before + after - kernel) / self.stride + 1
                };
                let geometry = flex::conv::ConvShape {
                    batch,
                    in_channels,
                    in_height,
                    in_width,
                    out_channels,
                    kernel,
                    stride: self.stride,
                    pad_top: padding[0].0,
                    pad_left: padding[1].0,
                    out_height: out_size(in_height, padding[0]),
                    out_width: out_size(in_width, padding[1]),
                };
                let bias = self.bias.clone().map(flex::elements);
                let out = flex::with_elements(&x, |x| {
                    flex::conv::conv2d(x, values, bias.as_deref(), geometry)
                });
                flex::tensor(
                    out,
                    [batch, out_channels, geometry.out_height, geometry.out_width],
                )
            }
        }
    }
}

/// Group normalization over `[B, C, H, W]` (biased variance, as PyTorch).
pub(crate) struct GroupNorm {
    pub(crate) gamma: Tensor<1>,
    pub(crate) beta: Tensor<1>,
    pub(crate) groups: usize,
    pub(crate) eps: f64,
}

impl GroupNorm {
    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_then(x, false)
    }

    /// `silu(self.forward(x))`, in one kernel on flex.
    pub(crate) fn forward_silu(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_then(x, true)
    }

    fn forward_then(&self, x: Tensor<4>, with_silu: bool) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        if flex::takes_kernels(&x) {
            let (gamma, beta) = (
                flex::elements(self.gamma.clone()),
                flex::elements(self.beta.clone()),
            );
            let norm = flex::group_norm::Norm {
                channels: c,
                spatial: h * w,
                groups: self.groups,
                eps: self.eps,
                gamma: &gamma,
                beta: &beta,
                silu: with_silu,
            };
            let out = flex::with_elements(&x, |x| flex::group_norm::group_norm(x, norm));
            return flex::tensor(out, [b, c, h, w]);
        }
        let normed = self.normalize(x);
        if with_silu { silu(normed) } else { normed }
    }

    fn normalize(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let g = self.groups;
        let xg: Tensor<3> = x.reshape([b, g, (c / g) * h * w]);
        // Statistics in f32 even when the model computes in f16: a group's sum of squares
        // can overflow half precision (PyTorch's fp16 group norm accumulates in f32 too).
        let dtype = xg.dtype();
        let (var, mean) = xg.clone().cast(FloatDType::F32).var_mean_bias(2);
        let inv_std = (var + self.eps).sqrt().recip().cast(dtype);
        let xg = (xg - mean.cast(dtype)) * inv_std;
        let x: Tensor<4> = xg.reshape([b, c, h, w]);
        x * self.gamma.clone().reshape([1, c, 1, 1]) + self.beta.clone().reshape([1, c, 1, 1])
    }
}

/// Layer normalization over the last dimension.
pub(crate) struct LayerNorm {
    pub(crate) gamma: Tensor<1>,
    pub(crate) beta: Tensor<1>,
    pub(crate) eps: f64,
}

impl LayerNorm {
    pub(crate) fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        if dtype == FloatDType::F32.into() {
            return burn::tensor::module::layer_norm(
                x,
                self.gamma.clone(),
                Some(self.beta.clone()),
                self.eps,
            );
        }
        // Statistics in f32, as for group norm.
        let (var, mean) = x.clone().cast(FloatDType::F32).var_mean_bias(D - 1);
        let inv_std = (var + self.eps).sqrt().recip().cast(dtype);
        let normed = (x - mean.cast(dtype)) * inv_std;
        normed * self.gamma.clone().unsqueeze() + self.beta.clone().unsqueeze()
    }
}

/// Nearest-neighbour resize of `[B, C, H, W]` to `[h, w]`.
pub(crate) fn upsample_nearest(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Nearest).with_output_size(size),
    )
}

/// `x * sigmoid(x)`.
pub(crate) fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    burn::tensor::activation::silu(x)
}
