//! The few layers Stable Diffusion is built from, as plain tensors and functional ops.
//!
//! Invariants: inference only (no autodiff, no dropout); every layer matches PyTorch's
//! semantics for the same parameters (linear weights already transposed to `[in, out]`).

use burn::tensor::Tensor;
use burn::tensor::module::{conv2d, interpolate, linear};
use burn::tensor::ops::{ConvOptions, InterpolateMode, InterpolateOptions};

/// `y = x W + b`.
pub(crate) struct Linear {
    pub(crate) weight: Tensor<2>,
    pub(crate) bias: Option<Tensor<1>>,
}

impl Linear {
    pub(crate) fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear(x, self.weight.clone(), self.bias.clone())
    }
}

/// A square-kernel 2D convolution with symmetric padding.
pub(crate) struct Conv2d {
    pub(crate) weight: Tensor<4>,
    pub(crate) bias: Option<Tensor<1>>,
    pub(crate) stride: usize,
    pub(crate) padding: usize,
}

impl Conv2d {
    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let opts = ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1);
        conv2d(x, self.weight.clone(), self.bias.clone(), opts)
    }

    /// The VAE encoder's downsample: pad right and bottom by one, then a stride-2 conv.
    pub(crate) fn forward_pad_br(&self, x: Tensor<4>) -> Tensor<4> {
        let opts = ConvOptions::new_with_padding([self.stride; 2], [(0, 1), (0, 1)], [1, 1], 1);
        conv2d(x, self.weight.clone(), self.bias.clone(), opts)
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
        let [b, c, h, w] = x.dims();
        let g = self.groups;
        let xg: Tensor<3> = x.reshape([b, g, (c / g) * h * w]);
        let (var, mean) = xg.clone().var_mean_bias(2);
        let xg = (xg - mean) / (var + self.eps).sqrt();
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
        burn::tensor::module::layer_norm(x, self.gamma.clone(), Some(self.beta.clone()), self.eps)
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
