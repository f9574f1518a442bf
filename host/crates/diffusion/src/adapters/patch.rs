//! One adapter module's factors, checked against its layer's shape, and the weight delta
//! they make.
//!
//! Invariants: every delta is `[out, in * k * k]` in PyTorch's layout, f32, already scaled
//! by the module's own `alpha / rank` (the request's weight is applied by the caller);
//! factors whose shapes cannot make the layer's shape are refused before any arithmetic.

use anyhow::{Result, bail, ensure};

use crate::flex;
use crate::weights::HostTensor;

use super::lycoris;

/// A matrix or a Tucker-decomposed kernel making one factor of a LoKr product.
pub(crate) enum Factor {
    /// Stored whole: `[rows, cols]` or `[rows, cols, k, k]`.
    Full(HostTensor),
    /// `a @ b`, `a` `[rows, rank]`, `b` `[rank, cols * k * k]`.
    Product(HostTensor, HostTensor),
    /// Tucker form: core `[rank, rank, k, k]`, `a` `[rank, rows]`, `b` `[rank, cols]`.
    Tucker {
        core: HostTensor,
        a: HostTensor,
        b: HostTensor,
    },
}

/// What an adapter does to one layer.
pub(crate) enum Patch {
    /// `up @ down` (kohya LoRA/LoCon, diffusers/PEFT LoRA): `down` `[rank, in(, k, k)]`,
    /// `up` `[out, rank(, 1, 1)]`.
    LoRa { down: HostTensor, up: HostTensor },
    /// LyCORIS LoHa: the Hadamard product of two low-rank (or Tucker) matrices.
    LoHa(Factor, Factor),
    /// LyCORIS LoKr: the Kronecker product of two factors.
    LoKr(Factor, Factor),
    /// kohya / LyCORIS LoCon with a Tucker middle (`lora_mid`) for a k x k convolution: the
    /// factor's rebuild, `a` the up projection transposed, `b` the down projection.
    LoConTucker(Factor),
}

/// A patch with its scale (`alpha / rank`, or 1 where the format says so), and DoRA's
/// magnitudes when the module is weight-decomposed (see [`super::dora`]).
pub(crate) struct ScaledPatch {
    pub(crate) patch: Patch,
    pub(crate) scale: f32,
    pub(crate) dora_scale: Option<HostTensor>,
}

impl ScaledPatch {
    /// Checks the factors, and DoRA's magnitudes if any, fit a weight of `shape`.
    pub(crate) fn check(&self, shape: &[usize]) -> Result<()> {
        self.patch.check(shape)?;
        if let Some(magnitudes) = &self.dora_scale {
            super::dora::axis(magnitudes, shape)?;
        }
        Ok(())
    }
}

/// `a @ b` for row-major `a` `[m, k]` and `b` `[k, n]`, on flex in f32.
pub(crate) fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let a: burn::tensor::Tensor<2> = flex::tensor(a.to_vec(), [m, k]);
    let b: burn::tensor::Tensor<2> = flex::tensor(b.to_vec(), [k, n]);
    flex::elements(a.matmul(b))
}

fn rows(t: &HostTensor) -> usize {
    t.shape[0]
}

fn cols(t: &HostTensor) -> usize {
    t.data.len() / t.shape[0].max(1)
}

impl Factor {
    /// `[rows, cols * k * k]` with the kernel size `k` of the layer it serves, given the
    /// factor's rows and columns as they must be.
    pub(crate) fn dims(&self) -> (usize, usize) {
        match self {
            Factor::Full(t) => (rows(t), cols(t)),
            Factor::Product(a, b) => (rows(a), cols(b)),
            Factor::Tucker { core, a, b } => {
                let kernel: usize = core.shape[2..].iter().product();
                (cols(a), cols(b) * kernel)
            }
        }
    }

    /// Its rank, when it is a decomposition.
    pub(crate) fn rank(&self) -> Option<usize> {
        match self {
            Factor::Full(_) => None,
            Factor::Product(_, b) => Some(rows(b)),
            Factor::Tucker { b, .. } => Some(rows(b)),
        }
    }

    /// Checks inner dimensions agree.
    fn check(&self) -> Result<()> {
        match self {
            Factor::Full(_) => Ok(()),
            Factor::Product(a, b) => {
                ensure!(
                    cols(a) == rows(b),
                    "factors {:?} and {:?} do not multiply",
                    a.shape,
                    b.shape
                );
                Ok(())
            }
            Factor::Tucker { core, a, b } => {
                ensure!(
                    core.shape.len() == 4 && core.shape[0] == rows(a) && core.shape[1] == rows(b),
                    "Tucker core {:?} does not fit factors {:?} and {:?}",
                    core.shape,
                    a.shape,
                    b.shape
                );
                Ok(())
            }
        }
    }

    /// The factor as a `[rows, cols * k * k]` matrix.
    pub(crate) fn matrix(&self) -> Vec<f32> {
        match self {
            Factor::Full(t) => t.data.clone(),
            Factor::Product(a, b) => matmul(&a.data, &b.data, rows(a), cols(a), cols(b)),
            Factor::Tucker { core, a, b } => lycoris::tucker(core, a, b),
        }
    }
}

impl Patch {
    /// Checks the factors can make a weight of `shape` (`[out, in]` or `[out, in, k, k]`).
    pub(crate) fn check(&self, shape: &[usize]) -> Result<()> {
        let out = shape[0];
        let inner: usize = shape[1..].iter().product();
        let (rows_made, cols_made) = match self {
            Patch::LoRa { down, up } => {
                ensure!(
                    cols(up) == rows(down),
                    "lora up {:?} and down {:?} do not multiply",
                    up.shape,
                    down.shape
                );
                if down.shape.len() == 4 && shape.len() == 4 {
                    ensure!(
                        down.shape[1..] == shape[1..],
                        "lora down {:?} does not fit the layer's {shape:?}",
                        down.shape
                    );
                }
                (rows(up), cols(down))
            }
            Patch::LoHa(one, two) => {
                one.check()?;
                two.check()?;
                ensure!(
                    one.dims() == two.dims(),
                    "the two Hadamard factors make {:?} and {:?}",
                    one.dims(),
                    two.dims()
                );
                one.dims()
            }
            Patch::LoKr(one, two) => {
                one.check()?;
                two.check()?;
                let (a, b) = one.dims();
                let (c, d) = two.dims();
                (a * c, b * d)
            }
            Patch::LoConTucker(factor) => {
                factor.check()?;
                factor.dims()
            }
        };
        if (rows_made, cols_made) != (out, inner) {
            bail!("makes a [{rows_made}, {cols_made}] weight, the layer is {shape:?}");
        }
        Ok(())
    }

    /// LoRA's `(up, down)`: the factors a low-rank merge multiplies in place.
    pub(crate) fn low_rank(&self) -> Option<(&HostTensor, &HostTensor)> {
        match self {
            Patch::LoRa { down, up } => Some((up, down)),
            _ => None,
        }
    }

    /// Its rank: LoRA's and LoHa's inner width; LoKr's decomposition's, 0 when both
    /// factors are stored whole.
    pub(crate) fn rank(&self) -> usize {
        match self {
            Patch::LoRa { down, .. } => rows(down),
            Patch::LoHa(one, _) => one.rank().unwrap_or(0),
            Patch::LoKr(one, two) => two.rank().or(one.rank()).unwrap_or(0),
            Patch::LoConTucker(factor) => factor.rank().unwrap_or(0),
        }
    }

    /// Input features of the layer it was made for, as far as the factors alone tell (for
    /// judging the base family); `None` where only the layer's shape could say.
    pub(crate) fn in_features(&self) -> Option<usize> {
        match self {
            Patch::LoRa { down, .. } => down.shape.get(1).copied(),
            Patch::LoHa(one, _) => Some(one.dims().1),
            Patch::LoKr(one, two) => Some(one.dims().1 * two.dims().1),
            // Only convolutions have a Tucker middle; their input width is not the text's.
            Patch::LoConTucker(_) => None,
        }
    }

    /// The unscaled delta for a layer of `shape` (checked by [`Patch::check`]).
    pub(crate) fn delta(&self, shape: &[usize]) -> Vec<f32> {
        match self {
            Patch::LoRa { down, up } => {
                matmul(&up.data, &down.data, rows(up), rows(down), cols(down))
            }
            Patch::LoHa(one, two) => {
                let mut made = one.matrix();
                for (m, t) in made.iter_mut().zip(two.matrix()) {
                    *m *= t;
                }
                made
            }
            Patch::LoKr(one, two) => lycoris::kron(one, two, shape),
            Patch::LoConTucker(factor) => factor.matrix(),
        }
    }
}
