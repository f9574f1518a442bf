//! LyCORIS's two products beyond plain low rank: the Tucker form of a convolution factor
//! (`hada_t1/t2`, `lokr_t2`) and LoKr's Kronecker product.
//!
//! Invariants: results are `[rows, cols * k * k]` row-major f32, PyTorch's weight layout.

use crate::weights::HostTensor;

use super::patch::{Factor, matmul};

/// `W[o, i, kk] = Σ_{x,y} core[x, y, kk] · a[x, o] · b[y, i]` for core `[r1, r2, k, k]`,
/// `a` `[r1, rows]`, `b` `[r2, cols]`: LyCORIS's rebuild of a Tucker-decomposed kernel.
pub(crate) fn tucker(core: &HostTensor, a: &HostTensor, b: &HostTensor) -> Vec<f32> {
    let (r1, r2) = (core.shape[0], core.shape[1]);
    let taps: usize = core.shape[2..].iter().product();
    let (rows, cols) = (a.shape[1], b.shape[1]);
    // core as [taps, r1, r2], so one product gives every tap's core @ b.
    let mut by_tap = vec![0f32; core.data.len()];
    for x in 0..r1 {
        for y in 0..r2 {
            for t in 0..taps {
                by_tap[(t * r1 + x) * r2 + y] = core.data[(x * r2 + y) * taps + t];
            }
        }
    }
    let core_b = matmul(&by_tap, &b.data, taps * r1, r2, cols);
    let mut a_t = vec![0f32; a.data.len()];
    for x in 0..r1 {
        for o in 0..rows {
            a_t[o * r1 + x] = a.data[x * rows + o];
        }
    }
    let mut out = vec![0f32; rows * cols * taps];
    for t in 0..taps {
        let plane = matmul(
            &a_t,
            &core_b[t * r1 * cols..(t + 1) * r1 * cols],
            rows,
            r1,
            cols,
        );
        for (index, value) in plane.into_iter().enumerate() {
            out[index * taps + t] = value;
        }
    }
    out
}

/// `kron(one, two)` for a layer of `shape`: `one` `[a, b]`, `two` `[c, d * k * k]`, giving
/// `W[p·c + q, s·d + t, kk] = one[p, s] · two[q, t, kk]`, as LyCORIS makes LoKr weights
/// (a convolution's kernel lives in the second factor).
pub(crate) fn kron(one: &Factor, two: &Factor, shape: &[usize]) -> Vec<f32> {
    let taps: usize = shape[2..].iter().product();
    let (a, b) = one.dims();
    let (c, dk) = two.dims();
    let d = dk / taps;
    let (first, second) = (one.matrix(), two.matrix());
    let width = b * d * taps;
    let mut out = vec![0f32; a * c * width];
    for p in 0..a {
        for s in 0..b {
            let scale = first[p * b + s];
            for q in 0..c {
                let row = &mut out[(p * c + q) * width + s * d * taps..][..d * taps];
                for (o, w) in row.iter_mut().zip(&second[q * dk..(q + 1) * dk]) {
                    *o = scale * w;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(data: Vec<f32>, shape: Vec<usize>) -> HostTensor {
        HostTensor { data, shape }
    }

    #[test]
    fn kron_of_matrices_is_the_textbook_one() {
        let one = Factor::Full(host(vec![1.0, 2.0, 3.0, 4.0], vec![2, 2]));
        let two = Factor::Full(host(vec![0.0, 5.0, 6.0, 7.0], vec![2, 2]));
        let made = kron(&one, &two, &[4, 4]);
        #[rustfmt::skip]
        let expected = [
            0.0, 5.0, 0.0, 10.0,
            6.0, 7.0, 12.0, 14.0,
            0.0, 15.0, 0.0, 20.0,
            18.0, 21.0, 24.0, 28.0,
        ];
        assert_eq!(made, expected);
    }

    #[test]
    fn tucker_matches_its_sum() {
        let (r1, r2, rows, cols, taps) = (2, 3, 4, 5, 4);
        let value = |i: usize| ((i * 7 % 11) as f32 - 5.0) / 4.0;
        let core = host((0..r1 * r2 * taps).map(value).collect(), vec![r1, r2, 2, 2]);
        let a = host(
            (0..r1 * rows).map(|i| value(i + 3)).collect(),
            vec![r1, rows],
        );
        let b = host(
            (0..r2 * cols).map(|i| value(i + 5)).collect(),
            vec![r2, cols],
        );
        let made = tucker(&core, &a, &b);
        for o in 0..rows {
            for i in 0..cols {
                for t in 0..taps {
                    let mut sum = 0f32;
                    for x in 0..r1 {
                        for y in 0..r2 {
                            sum += core.data[(x * r2 + y) * taps + t]
                                * a.data[x * rows + o]
                                * b.data[y * cols + i];
                        }
                    }
                    let got = made[(o * cols + i) * taps + t];
                    assert!((got - sum).abs() < 1e-5, "{o} {i} {t}: {got} vs {sum}");
                }
            }
        }
    }
}
