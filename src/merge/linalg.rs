//! The little dense linear algebra the merge needs, in f64: a row-major matrix, products through
//! `gemm` (the optimized kernel burn-flex already builds), and Jacobi methods on small matrices
//! (symmetric eigendecomposition, one-sided SVD) whose size is a LoRA rank, not a hidden size.

use std::ops::{Index, IndexMut};

use crate::model::weights::HostTensor;

/// A row-major dense f64 matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Mat {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Mat {
    pub fn zeros(rows: usize, cols: usize) -> Mat {
        Mat { rows, cols, data: vec![0.0; rows * cols] }
    }

    pub fn identity(n: usize) -> Mat {
        Mat::from_fn(n, n, |r, c| if r == c { 1.0 } else { 0.0 })
    }

    /// Entries `f(row, col)`, generated in row-major order.
    pub fn from_fn(rows: usize, cols: usize, mut f: impl FnMut(usize, usize) -> f64) -> Mat {
        let mut data = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for c in 0..cols {
                data.push(f(r, c));
            }
        }
        Mat { rows, cols, data }
    }

    /// A row-major `[rows, cols]` host tensor.
    pub fn from_host(t: &HostTensor) -> Mat {
        Mat { rows: t.shape[0], cols: t.shape[1], data: t.data.iter().map(|x| *x as f64).collect() }
    }

    pub fn to_host(&self) -> HostTensor {
        HostTensor { shape: vec![self.rows, self.cols], data: self.data.iter().map(|x| *x as f32).collect() }
    }

    pub fn nrows(&self) -> usize {
        self.rows
    }

    pub fn ncols(&self) -> usize {
        self.cols
    }

    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Row-major entries.
    pub fn as_slice(&self) -> &[f64] {
        &self.data
    }

    pub fn as_mut_slice(&mut self) -> &mut [f64] {
        &mut self.data
    }

    pub fn transpose(&self) -> Mat {
        Mat::from_fn(self.cols, self.rows, |r, c| self[(c, r)])
    }

    /// Sum of squared entries (the squared Frobenius norm).
    pub fn norm_squared(&self) -> f64 {
        self.data.iter().map(|x| x * x).sum()
    }

    pub fn max_abs(&self) -> f64 {
        self.data.iter().fold(0.0, |m, x| m.max(x.abs()))
    }

    /// Largest entry-wise difference from a matrix of the same shape.
    pub fn max_abs_diff(&self, other: &Mat) -> f64 {
        assert_eq!(self.shape(), other.shape(), "max_abs_diff of different shapes");
        self.data.iter().zip(&other.data).fold(0.0, |m, (a, b)| m.max((a - b).abs()))
    }

    pub fn scaled(mut self, s: f64) -> Mat {
        self.data.iter_mut().for_each(|x| *x *= s);
        self
    }

    /// `self += s * other` (same shape).
    pub fn add_scaled(&mut self, other: &Mat, s: f64) {
        assert_eq!(self.shape(), other.shape(), "add_scaled of different shapes");
        self.data.iter_mut().zip(&other.data).for_each(|(a, b)| *a += s * b);
    }

    /// Each column `j` multiplied by `d[j]`.
    pub fn scale_cols(&self, d: &[f64]) -> Mat {
        Mat::from_fn(self.rows, d.len(), |r, c| self[(r, c)] * d[c])
    }
}

impl Index<(usize, usize)> for Mat {
    type Output = f64;
    fn index(&self, (r, c): (usize, usize)) -> &f64 {
        &self.data[r * self.cols + c]
    }
}

impl IndexMut<(usize, usize)> for Mat {
    fn index_mut(&mut self, (r, c): (usize, usize)) -> &mut f64 {
        &mut self.data[r * self.cols + c]
    }
}

/// `op(a) op(b)` where `op` transposes when asked; shapes are checked.
fn product(a: &Mat, ta: bool, b: &Mat, tb: bool) -> Mat {
    let (m, k) = if ta { (a.cols, a.rows) } else { (a.rows, a.cols) };
    let (k2, n) = if tb { (b.cols, b.rows) } else { (b.rows, b.cols) };
    assert_eq!(k, k2, "matrix product of incompatible shapes");
    let mut out = Mat::zeros(m, n);
    if m == 0 || n == 0 || k == 0 {
        return out;
    }
    // Strides (row, column) of a row-major matrix, or of its transpose.
    let strides = |x: &Mat, t: bool| if t { (1isize, x.cols as isize) } else { (x.cols as isize, 1isize) };
    let (a_rs, a_cs) = strides(a, ta);
    let (b_rs, b_cs) = strides(b, tb);
    // SAFETY: every pointer covers its matrix (m x k, k x n, m x n elements addressed through the
    // strides above, checked by the shape assertion), `out` does not alias the inputs, and gemm
    // only writes `out`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.data.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    out
}

/// `a b`
pub fn matmul(a: &Mat, b: &Mat) -> Mat {
    product(a, false, b, false)
}

/// `a^T b`
pub fn matmul_tn(a: &Mat, b: &Mat) -> Mat {
    product(a, true, b, false)
}

/// `a b^T`
pub fn matmul_nt(a: &Mat, b: &Mat) -> Mat {
    product(a, false, b, true)
}

/// Jacobi rotation (c, s) that zeroes the off-diagonal entry `g` of a symmetric 2x2 block with
/// diagonal `(alpha, beta)`.
fn rotation(alpha: f64, beta: f64, g: f64) -> (f64, f64) {
    let theta = (beta - alpha) / (2.0 * g);
    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
    let c = 1.0 / (t * t + 1.0).sqrt();
    (c, t * c)
}

/// Rotate columns p, q of `m`: `(m_p, m_q) <- (c m_p - s m_q, s m_p + c m_q)`.
fn rotate_cols(m: &mut Mat, p: usize, q: usize, c: f64, s: f64) {
    for r in 0..m.rows {
        let (x, y) = (m[(r, p)], m[(r, q)]);
        m[(r, p)] = c * x - s * y;
        m[(r, q)] = s * x + c * y;
    }
}

/// Eigendecomposition of a symmetric matrix by cyclic Jacobi: eigenvalues in decreasing order and
/// the matching orthonormal eigenvectors as columns.
pub fn sym_eigen(g: &Mat) -> (Vec<f64>, Mat) {
    let n = g.rows;
    let mut a = g.clone();
    let mut v = Mat::identity(n);
    let scale = g.norm_squared();
    for _ in 0..100 {
        let off: f64 = (0..n).flat_map(|p| (p + 1..n).map(move |q| (p, q))).map(|(p, q)| a[(p, q)] * a[(p, q)]).sum();
        if off <= scale * 1e-30 || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let g = a[(p, q)];
                if g == 0.0 {
                    continue;
                }
                let (c, s) = rotation(a[(p, p)], a[(q, q)], g);
                rotate_cols(&mut a, p, q, c, s);
                for k in 0..n {
                    let (x, y) = (a[(p, k)], a[(q, k)]);
                    a[(p, k)] = c * x - s * y;
                    a[(q, k)] = s * x + c * y;
                }
                rotate_cols(&mut v, p, q, c, s);
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[(j, j)].total_cmp(&a[(i, i)]));
    let values = order.iter().map(|&i| a[(i, i)]).collect();
    (values, Mat::from_fn(n, n, |r, c| v[(r, order[c])]))
}

/// SVD `m = U diag(s) V^T` of a small matrix by one-sided Jacobi (accurate for small singular
/// values too), singular values decreasing; U is `rows x min`, V^T is `min x cols`.
pub fn svd_small(m: &Mat) -> (Mat, Vec<f64>, Mat) {
    if m.rows < m.cols {
        let (u, s, vt) = svd_small(&m.transpose());
        return (vt.transpose(), s, u.transpose());
    }
    let n = m.cols;
    let mut u = m.clone();
    let mut v = Mat::identity(n);
    for _ in 0..100 {
        let mut rotated = false;
        for p in 0..n {
            for q in p + 1..n {
                let (mut alpha, mut beta, mut gamma) = (0.0, 0.0, 0.0);
                for r in 0..u.rows {
                    let (x, y) = (u[(r, p)], u[(r, q)]);
                    alpha += x * x;
                    beta += y * y;
                    gamma += x * y;
                }
                if gamma == 0.0 || gamma.abs() <= 1e-15 * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let (c, s) = rotation(alpha, beta, gamma);
                rotate_cols(&mut u, p, q, c, s);
                rotate_cols(&mut v, p, q, c, s);
            }
        }
        if !rotated {
            break;
        }
    }
    let norms: Vec<f64> = (0..n).map(|c| (0..u.rows).map(|r| u[(r, c)] * u[(r, c)]).sum::<f64>().sqrt()).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| norms[j].total_cmp(&norms[i]));
    let s: Vec<f64> = order.iter().map(|&i| norms[i]).collect();
    let u = Mat::from_fn(u.rows, n, |r, c| if norms[order[c]] > 0.0 { u[(r, order[c])] / norms[order[c]] } else { 0.0 });
    let vt = Mat::from_fn(n, n, |r, c| v[(c, order[r])]);
    (u, s, vt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random(rows: usize, cols: usize, seed: u64) -> Mat {
        let mut rng = Rng::new(seed);
        Mat::from_fn(rows, cols, |_, _| rng.unit() - 0.5)
    }

    fn naive(a: &Mat, b: &Mat) -> Mat {
        Mat::from_fn(a.nrows(), b.ncols(), |r, c| (0..a.ncols()).map(|k| a[(r, k)] * b[(k, c)]).sum())
    }

    #[test]
    fn products_match_the_definition() {
        let (a, b) = (random(5, 3, 1), random(3, 4, 2));
        assert!(matmul(&a, &b).max_abs_diff(&naive(&a, &b)) < 1e-14);
        assert!(matmul_tn(&a.transpose(), &b).max_abs_diff(&naive(&a, &b)) < 1e-14);
        assert!(matmul_nt(&a, &b.transpose()).max_abs_diff(&naive(&a, &b)) < 1e-14);
    }

    #[test]
    fn eigen_and_svd_reconstruct() {
        let x = random(7, 5, 3);
        let g = matmul_tn(&x, &x);
        let (l, v) = sym_eigen(&g);
        assert!(l.windows(2).all(|w| w[0] >= w[1]));
        assert!(matmul_nt(&v.scale_cols(&l), &v).max_abs_diff(&g) < 1e-12);
        assert!(matmul_tn(&v, &v).max_abs_diff(&Mat::identity(5)) < 1e-12);
        for m in [random(6, 4, 4), random(3, 8, 5)] {
            let (u, s, vt) = svd_small(&m);
            assert!(s.windows(2).all(|w| w[0] >= w[1]));
            assert!(matmul(&u.scale_cols(&s), &vt).max_abs_diff(&m) < 1e-12);
        }
    }
}
