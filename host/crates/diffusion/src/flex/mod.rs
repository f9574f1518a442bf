//! CPU kernels for the ops that dominate Stable Diffusion on the `flex` backend: attention,
//! convolution (plain, by Winograd for 3x3, and after a 2x upsample), the linear layers,
//! group norm (with SiLU) and GEGLU.
//! The model calls them when its tensors live on flex in f32, and burn's own ops everywhere
//! else (wgpu), so each kernel must match burn's op exactly in meaning; the tests check them
//! against the textbook definition in f64.
//!
//! Invariants: the kernels are plain functions over row-major slices; they own no state, and
//! each output element is written by one rayon job, so results are deterministic.

pub(crate) mod attention;
pub(crate) mod conv;
pub(crate) mod geglu;
pub(crate) mod group_norm;
pub(crate) mod linear;
pub(crate) mod upsample_conv;
pub(crate) mod winograd;

use burn::tensor::{DType, Device, Tensor, TensorData};

/// Whether `tensor` can take the flex kernels: on flex, in f32.
pub(crate) fn takes_kernels<const D: usize>(tensor: &Tensor<D>) -> bool {
    tensor.dtype() == DType::F32 && tensor.device() == Device::flex()
}

/// Calls `f` with a tensor's f32 elements in row-major order, read where they lie: unlike
/// [`elements`], no copy is made when another tensor (a residual branch, say) shares them.
pub(crate) fn with_elements<const D: usize, R>(
    tensor: &Tensor<D>,
    f: impl FnOnce(&[f32]) -> R,
) -> R {
    let storage = tensor
        .clone()
        .try_into_primitive::<burn_flex::Flex>()
        .expect("flex kernels take flex tensors");
    match storage.as_slice::<f32>() {
        Some(values) => f(values),
        // A strided view: lay it out first.
        None => f(&elements(tensor.clone())),
    }
}

/// A tensor's f32 elements in row-major order (moved out when nothing else shares them).
pub(crate) fn elements<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .try_into_vec()
        .expect("flex kernels take f32 tensors")
}

/// A flex tensor over `values`.
pub(crate) fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), &Device::flex())
}

/// The geometry of a batch of channel planes: `[batch, in_channels, height, width]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Planes {
    pub batch: usize,
    pub in_channels: usize,
    pub height: usize,
    pub width: usize,
}

impl From<[usize; 4]> for Planes {
    /// A tensor's dims.
    fn from([batch, in_channels, height, width]: [usize; 4]) -> Self {
        Self {
            batch,
            in_channels,
            height,
            width,
        }
    }
}

/// A matrix operand of [`gemm()`]: its element (0, 0) and how far apart its rows and columns
/// are in elements.
#[derive(Clone, Copy)]
pub(crate) struct Matrix {
    first: *const f32,
    row_stride: usize,
    column_stride: usize,
}

impl Matrix {
    /// A row-major matrix whose rows start `row_stride` elements apart.
    pub(crate) fn rows(first: *const f32, row_stride: usize) -> Self {
        Self {
            first,
            row_stride,
            column_stride: 1,
        }
    }

    /// The transpose of a row-major matrix whose rows start `row_stride` elements apart.
    pub(crate) fn transposed(first: *const f32, row_stride: usize) -> Self {
        Self {
            first,
            row_stride: 1,
            column_stride: row_stride,
        }
    }
}

/// `out[m, n] = scale * lhs[m, k] . rhs[k, n]`, added to what `out` holds when `accumulate`
/// (else `out` is only written); `out` is row-major with rows `out_row_stride` apart.
/// `threaded` splits the output across rayon's threads (never a sum, so results do not
/// depend on scheduling); kernels that are already one job per thread pass `false`.
///
/// # Safety
/// Every element the shapes and strides reach lies inside its buffer, and `out` overlaps
/// neither operand.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm(
    [m, n, k]: [usize; 3],
    out: *mut f32,
    out_row_stride: usize,
    accumulate: bool,
    lhs: Matrix,
    rhs: Matrix,
    scale: f32,
    threaded: bool,
) {
    let stride = |s: usize| s as isize;
    // SAFETY: the caller's promise, in gemm's terms (column stride, then row stride).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out,
            1,
            stride(out_row_stride),
            accumulate,
            lhs.first,
            stride(lhs.column_stride),
            stride(lhs.row_stride),
            rhs.first,
            stride(rhs.column_stride),
            stride(rhs.row_stride),
            1.0,
            scale,
            false,
            false,
            false,
            if threaded {
                gemm::Parallelism::Rayon(0)
            } else {
                gemm::Parallelism::None
            },
        );
    }
}

/// Lanes of the kernels' explicit partial sums and reductions: one AVX-512 register of f32.
const LANES: usize = 16;

/// An output buffer shared by jobs that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: every kernel gives each job a disjoint set of elements to write.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn new(out: &mut [f32]) -> Self {
        Self(out.as_mut_ptr())
    }

    /// The element at `offset`.
    ///
    /// # Safety
    /// `offset` is inside the buffer, which outlives the jobs.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        unsafe { self.0.add(offset) }
    }
}

/// Defines a kernel function whose body the compiler vectorizes for the widest unit the CPU
/// has (AVX-512, else AVX2 with FMA, else the target's baseline), picked at run time. The
/// body should be written for it: fixed-width lanes, no data-dependent branches.
macro_rules! vectorized {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn portable($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) -> $ret { portable($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret { portable($($arg),*) }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F.
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA.
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}
use vectorized;

/// `e^x` for `x <= 0` within 4e-7 relative (about 3 ulp): `2^n * e^r` with `|r| <= ln 2 / 2` and a degree-6
/// polynomial for `e^r`; inputs below -87 (results under f32's normal range) give about
/// `e^-87`, which no kernel here can tell from 0.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = if x < -87.0 { -87.0 } else { x };
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // 2^n from the bits: n is integral in [-125, 0], so adding 1.5 x 2^23 leaves it, two's
    // complement, in the low mantissa bits. (`n as i32` would saturate and map NaN to 0 per
    // lane, which compilers do not vectorize.)
    let n_bits = (n + 12_582_912.0).to_bits().wrapping_sub(0x4B40_0000);
    f32::from_bits(n_bits.wrapping_add(127) << 23) * p
}

/// `x * sigmoid(x)` over the whole f32 range, branch-free: with `e = e^-|x|`, sigmoid is
/// `1 / (1 + e)` for `x >= 0` and `e / (1 + e)` below.
#[inline(always)]
fn silu(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    let numerator = if x >= 0.0 { 1.0 } else { e };
    x * numerator / (1.0 + e)
}

/// Deterministic test values in [-2, 2).
#[cfg(test)]
fn test_values(n: usize, salt: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            let x = i
                .wrapping_mul(2_654_435_761)
                .wrapping_add(salt.wrapping_mul(40_503));
            (x >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        })
        .collect()
}

/// The largest absolute difference between two equally long outputs.
#[cfg(test)]
fn max_abs_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "output length");
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_across_the_softmax_range() {
        for i in 0..=20_000 {
            let x = -(i as f32) * 87.0 / 20_000.0;
            let (got, want) = (exp_nonpositive(x), x.exp());
            assert!(
                (got - want).abs() <= want * 4e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn silu_matches_the_definition_on_both_signs() {
        for i in -20_000..=20_000 {
            let x = i as f32 / 1_000.0;
            let want = (x as f64 / (1.0 + (-x as f64).exp())) as f32;
            let got = silu(x);
            assert!(
                (got - want).abs() <= 1e-6 + want.abs() * 1e-6,
                "silu({x}) = {got}, want {want}"
            );
        }
    }
}
