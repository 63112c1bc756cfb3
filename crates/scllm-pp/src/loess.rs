//! One-predictor loess as computed by netlib's `dloess` (Cleveland, Grosse & Shyu), the code
//! behind scikit-misc's `loess`, which scanpy's `highly_variable_genes(flavor="seurat_v3")` uses
//! for its mean–variance trend.
//!
//! [`loess_fitted`] reproduces `skmisc.loess.loess(x, y, span, degree).fit()` followed by
//! `outputs.fitted_values` with scikit-misc's defaults: `surface="interpolate"`,
//! `family="gaussian"` (no robustness iterations), `cell=0.2`, unit weights. `normalize` only
//! acts with two or more predictors, so it plays no part here. This is an independent
//! implementation written from the algorithm (routine names in comments refer to `loessf.f`):
//!
//! 1. **k-d tree** (`ehg126`, `ehg124`, `ehg129`): the bounding box of x is widened by 0.5 % of
//!    its range on each side (`ehg126`). Cells are split at the median of their points
//!    (`m = (l+u)/2` in sorted order; if the median value is tied with its successor, the
//!    nearest position `m±j` whose value differs from the next one is used instead, probing
//!    `j = 0, 1, -1, 2, -2, …`), until a cell holds at most `fc = floor(n·span·cell)` points,
//!    or the split value would coincide with a cell bound. Leaves are the intervals between
//!    consecutive vertices (the bounding box ends and all split values).
//! 2. **Vertex fits** (`ehg139`, `ehg127`): at each vertex `q` a local polynomial of degree
//!    `degree` is fitted by weighted least squares to the `nf = floor(n·span + 1e-5)` nearest
//!    points with tricube weights `(1 − (d/dmax)³)³`, `dmax` the distance of the `nf`-th
//!    nearest point (points at exactly `dmax` get weight zero). As in `ehg127`, the weighted
//!    design columns are equilibrated (scaled to unit norm), reduced by Householder QR and
//!    solved through the SVD of the triangular factor. The fit's value and slope at `q` are kept.
//! 3. **Interpolation** (`ehg128`): the fitted value at a point is the cubic Hermite interpolant
//!    of the value and slope at the two vertices of its leaf.
//!
//! Where `dloess` reports a problem, scikit-misc raises `ValueError` and returns no fit; the
//! same situations are errors here ([`LoessError`]): a near-singular local fit (netlib's
//! "pseudoinverse used"/"other near singularities", e.g. fewer than three distinct x values
//! with positive weight in a neighbourhood for degree 2), a zero-width neighbourhood, all
//! neighbours on the neighbourhood boundary, too few points for the degree, a k-d tree too
//! deep or too large for netlib's fixed workspace, and a smoother trace outside [k, n] in the
//! approximate statistics scikit-misc computes alongside every fit (`ehg141`; the trace is
//! exact for n < 500 — the diagonal of the operator from the vertex influences, as `ehg139`
//! computes it — and netlib's closed-form approximation `ehg196` otherwise). When the exact
//! trace equals n (a neighbourhood of k+1 points, i.e. pure interpolation) scikit-misc's
//! verdict depends on rounding and may differ from ours.
//!
//! Agreement with scikit-misc 0.5.3 on the fixtures in `tests/fixtures/loess` (real gene
//! mean/variance trends and synthetic sets with ties) is at rounding level; see
//! `tests/loess_parity.rs` for the measured differences and the tolerances asserted.
//!
//! Cost: one sort (O(n log n)), one O(nf) fit per vertex (about `2/(span·cell)` vertices,
//! ~35 for span 0.3, independent of n), and an O(depth) descent per point.

use std::fmt;

/// Why a loess fit could not be computed.
#[derive(Debug, Clone, PartialEq)]
pub enum LoessError {
    /// `x` and `y` differ in length.
    LengthMismatch { x: usize, y: usize },
    /// A value of `x` or `y` is NaN or infinite.
    NonFinite { index: usize, which: &'static str },
    /// `span` must be finite and in (0, 1] (scikit-misc's rule).
    InvalidSpan(f64),
    /// `degree` must be 0, 1 or 2.
    InvalidDegree(usize),
    /// Fewer points in a neighbourhood (`nf = floor(n·span)`) than the local model needs
    /// (netlib: "span too small").
    TooFewPoints { n: usize, nf: usize, needed: usize },
    /// All `nf` nearest neighbours of a vertex coincide with it (netlib error 120).
    ZeroWidthNeighbourhood { at: f64 },
    /// Every neighbour lies on the neighbourhood boundary, so all weights are zero (netlib 121).
    AllOnBoundary { at: f64 },
    /// The local least-squares problem at a vertex is numerically singular (smallest singular
    /// value ≤ 100·ε·largest); netlib falls back to a pseudoinverse and scikit-misc raises.
    NearSingular { at: f64, rcond: f64 },
    /// The k-d tree exceeds netlib's fixed limits (vertex/cell workspace or depth 20).
    TreeTooLarge,
    /// The trace of the smoother matrix is below the number of local parameters or above n;
    /// netlib's approximate statistics (`ehg141`, "Chernobyl! trL<k" / "trL>n") then fail and
    /// scikit-misc raises. Only happens for degenerate settings (tiny n or tiny span).
    TraceOutOfRange { trace: f64, n: usize, params: usize },
}

impl fmt::Display for LoessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoessError::LengthMismatch { x, y } => {
                write!(f, "loess: x has {x} values but y has {y}")
            }
            LoessError::NonFinite { index, which } => {
                write!(f, "loess: {which}[{index}] is NaN or infinite")
            }
            LoessError::InvalidSpan(s) => write!(f, "loess: span must be in (0, 1], got {s}"),
            LoessError::InvalidDegree(d) => write!(f, "loess: degree must be 0, 1 or 2, got {d}"),
            LoessError::TooFewPoints { n, nf, needed } => write!(
                f,
                "loess: span too small: {nf} of {n} points per neighbourhood, the local model needs at least {needed}"
            ),
            LoessError::ZeroWidthNeighbourhood { at } => {
                write!(f, "loess: zero-width neighbourhood at x = {at}; make span bigger")
            }
            LoessError::AllOnBoundary { at } => write!(
                f,
                "loess: all data on the boundary of the neighbourhood at x = {at}; make span bigger"
            ),
            LoessError::NearSingular { at, rcond } => write!(
                f,
                "loess: near-singular local fit at x = {at} (reciprocal condition {rcond:.3e}); too few distinct x values in the neighbourhood"
            ),
            LoessError::TreeTooLarge => write!(f, "loess: k-d tree exceeds netlib's limits"),
            LoessError::TraceOutOfRange { trace, n, params } => write!(
                f,
                "loess: trace of the smoother ({trace:.4}) outside [{params}, {n}]; span too small or too few points"
            ),
        }
    }
}

impl std::error::Error for LoessError {}

/// scikit-misc's default `cell`: leaves hold at most `floor(n·span·cell)` points.
const CELL: f64 = 0.2;
/// netlib aborts evaluation when the path from the root reaches 20 cells (`ehg128`, error 181).
const MAX_PATH: usize = 20;

/// Local regression fitted values at the data points, as netlib loess computes them with
/// `surface="interpolate"` (scikit-misc's default, used by scanpy's seurat_v3 HVG flavour):
/// k-d tree vertices, exact local fits (value and slope) at the vertices, cubic Hermite
/// interpolation in between. `span` is the fraction of points in each neighbourhood, `degree`
/// the local polynomial degree (0, 1 or 2). Unit weights, no robustness iterations.
pub fn loess_fitted(
    x: &[f64],
    y: &[f64],
    span: f64,
    degree: usize,
) -> Result<Vec<f64>, LoessError> {
    if x.len() != y.len() {
        return Err(LoessError::LengthMismatch {
            x: x.len(),
            y: y.len(),
        });
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(LoessError::NonFinite {
            index: i,
            which: "x",
        });
    }
    if let Some(i) = y.iter().position(|v| !v.is_finite()) {
        return Err(LoessError::NonFinite {
            index: i,
            which: "y",
        });
    }
    if !(span > 0.0 && span <= 1.0) {
        return Err(LoessError::InvalidSpan(span));
    }
    if degree > 2 {
        return Err(LoessError::InvalidDegree(degree));
    }
    let n = x.len();
    // loess_workspace: nf = min(n, floor(n*f + 1e-5)); ehg139 needs k <= nf - 1.
    let nf = ((n as f64 * span + 1e-5).floor() as usize).min(n);
    let k = degree + 1;
    if nf < k + 1 {
        return Err(LoessError::TooFewPoints {
            n,
            nf,
            needed: k + 1,
        });
    }

    // Sorted copy: every step only depends on the multiset of x values in a cell, and the
    // cells of a 1-d k-d tree are ranges of the sorted order.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let xs: Vec<f64> = order.iter().map(|&i| x[i]).collect();
    let ys: Vec<f64> = order.iter().map(|&i| y[i]).collect();

    // netlib's k-d tree is fixed in size: nvmax = ncmax = max(200, n).
    let nvmax = n.max(200);
    // fc = floor(n * (span*cell)); the product span*cell is formed first, as in loess_().
    let fc = (n as f64 * (span * CELL)).floor() as i64;
    let tree = KdTree::build(&xs, fc, nvmax)?;

    // scikit-misc asks for the exact trace of the smoother when n < 500 (trace_hat "exact",
    // computed from the vertex influence on the diagonal of L, ehg139) and for an
    // approximation otherwise (ehg196); either feeds the approximate statistics (ehg141),
    // whose sanity check makes the whole fit fail.
    let exact_trace = n < 500;
    let mut adjacent: Vec<Vec<usize>> = Vec::new();
    if exact_trace {
        adjacent = vec![Vec::new(); tree.vertices.len()];
        for (c, cell) in tree.cells.iter().enumerate() {
            if cell.split.is_none() {
                adjacent[cell.lo_v].push(c);
                adjacent[cell.hi_v].push(c);
            }
        }
    }
    let mut diag = vec![0.0; if exact_trace { n } else { 0 }];

    let mut fitter = LocalFit::new(nf, degree, exact_trace);
    let mut vval = Vec::with_capacity(tree.vertices.len());
    for (v, &q) in tree.vertices.iter().enumerate() {
        let fit = fitter.fit(&xs, &ys, q, span)?;
        vval.push(fit.coef);
        if exact_trace {
            for &c in &adjacent[v] {
                let cell = &tree.cells[c];
                for pos in cell.l..=cell.u {
                    let i = (pos - 1) as usize;
                    if i >= fit.lo && i < fit.hi {
                        let g = fitter.resp[i - fit.lo];
                        diag[i] += tree.vertex_influence(xs[i], v, g)?;
                    }
                }
            }
        }
    }
    let tau = if degree > 1 { 3 } else { 2 };
    let trace = if exact_trace {
        diag.iter().sum()
    } else {
        approximate_trace(tau, span)
    };
    check_trace(trace, n, tau)?;

    let mut out = Vec::with_capacity(n);
    for &z in x {
        out.push(tree.interpolate(z, &vval)?);
    }
    Ok(out)
}

/// One cell of the k-d tree. Point ranges are 1-based and inclusive (`l..=u`, empty when
/// `u = l - 1`), as in `ehg124`, over the sorted x values.
struct Cell {
    l: i64,
    u: i64,
    /// Vertex indices of the lower and upper cell bound.
    lo_v: usize,
    hi_v: usize,
    /// `None` for a leaf; otherwise the split value and the two children.
    split: Option<(f64, usize, usize)>,
}

struct KdTree {
    vertices: Vec<f64>,
    cells: Vec<Cell>,
}

impl KdTree {
    /// `ehg126` + `ehg124` in one dimension.
    fn build(xs: &[f64], fc: i64, nvmax: usize) -> Result<Self, LoessError> {
        let n = xs.len();
        // ehg126: bounding box widened by 0.5 % (with a floor for a degenerate range).
        let (alpha, beta) = (xs[0], xs[n - 1]);
        let margin = 0.005 * (beta - alpha).max(1e-10 * alpha.abs().max(beta.abs()) + 1e-30);
        let mut vertices = vec![alpha - margin, beta + margin];
        let mut cells = vec![Cell {
            l: 1,
            u: n as i64,
            lo_v: 0,
            hi_v: 1,
            split: None,
        }];
        let ncmax = nvmax;
        let at = |pos: i64| xs[(pos - 1) as usize];

        let mut p = 0;
        while p < cells.len() {
            let (l, u) = (cells[p].l, cells[p].u);
            let (lower, upper) = (vertices[cells[p].lo_v], vertices[cells[p].hi_v]);
            let diam = (upper - lower).abs();
            // fd = 0 (wv(3)): the diameter test only fires for a zero-width cell.
            let mut leaf = (u - l) < fc || diam <= 0.0; // count u-l+1 <= fc
            if !leaf {
                // Workspace limits: ncmax < nc + 2 or nvmax < nv + vc/2.
                leaf = ncmax < cells.len() + 2 || (nvmax as f64) < vertices.len() as f64 + 1.0;
            }
            let mut m = (l + u) / 2;
            if !leaf {
                // Ties go with the upper son: move the split to the nearest position whose
                // value differs from the next one, probing offsets 0, 1, -1, 2, -2, ...
                let mut offset: i64 = 0;
                loop {
                    let c = m + offset;
                    if c >= u || c < l {
                        break; // no such position in range: keep the median
                    }
                    if at(c) == at(c + 1) {
                        offset = -offset;
                        if offset >= 0 {
                            offset += 1;
                        }
                    } else {
                        m = c;
                        break;
                    }
                }
                let xm = at(m);
                leaf = lower == xm || upper == xm;
            }
            if !leaf {
                let xi = at(m);
                // ehg125: in 1-d the new vertex lies strictly inside the cell, so it is new.
                vertices.push(xi);
                let v = vertices.len() - 1;
                let left = cells.len();
                let (lo_v, hi_v) = (cells[p].lo_v, cells[p].hi_v);
                cells.push(Cell {
                    l,
                    u: m,
                    lo_v,
                    hi_v: v,
                    split: None,
                });
                cells.push(Cell {
                    l: m + 1,
                    u,
                    lo_v: v,
                    hi_v,
                    split: None,
                });
                cells[p].split = Some((xi, left, left + 1));
            }
            p += 1;
        }
        // lowesb reports (and scikit-misc raises) when the tree hit its workspace limits.
        if (nvmax as f64) < vertices.len() as f64 + 1.0 || ncmax < cells.len() + 2 {
            return Err(LoessError::TreeTooLarge);
        }
        Ok(KdTree { vertices, cells })
    }

    /// The leaf holding `z` as `ehg128` finds it (`z <= split` goes left), with the relative
    /// position `h` of `z` in it.
    fn locate(&self, z: f64) -> Result<(&Cell, f64, f64, f64), LoessError> {
        let mut j = 0;
        let mut path = 1;
        while let Some((xi, lo, hi)) = self.cells[j].split {
            path += 1;
            if path >= MAX_PATH {
                return Err(LoessError::TreeTooLarge);
            }
            j = if z <= xi { lo } else { hi };
        }
        let cell = &self.cells[j];
        let (v0, v1) = (self.vertices[cell.lo_v], self.vertices[cell.hi_v]);
        Ok((cell, (z - v0) / (v1 - v0), v0, v1))
    }

    /// `ehg128` in one dimension: cubic Hermite interpolation between the two vertices of the
    /// leaf holding `z`, from the fitted values and slopes there.
    fn interpolate(&self, z: f64, vval: &[[f64; 2]]) -> Result<f64, LoessError> {
        let (cell, h, v0, v1) = self.locate(z)?;
        let (g0, g1) = (vval[cell.lo_v], vval[cell.hi_v]);
        let [phi0, phi1, psi0, psi1] = hermite(h);
        Ok(phi0 * g0[0] + phi1 * g1[0] + (psi0 * g0[1] + psi1 * g1[1]) * (v1 - v0))
    }

    /// The interpolated value at `z` when vertex `v` carries `g` (value, slope) and every
    /// other vertex zero: the influence of one vertex on the surface.
    fn vertex_influence(&self, z: f64, v: usize, g: [f64; 2]) -> Result<f64, LoessError> {
        let (cell, h, v0, v1) = self.locate(z)?;
        let [phi0, phi1, psi0, psi1] = hermite(h);
        Ok(if cell.lo_v == v {
            phi0 * g[0] + psi0 * g[1] * (v1 - v0)
        } else if cell.hi_v == v {
            phi1 * g[0] + psi1 * g[1] * (v1 - v0)
        } else {
            0.0
        })
    }
}

/// Cubic Hermite basis on [0, 1]: value weights at 0 and 1, then slope weights at 0 and 1.
fn hermite(h: f64) -> [f64; 4] {
    [
        (1.0 - h) * (1.0 - h) * (1.0 + 2.0 * h),
        h * h * (3.0 - 2.0 * h),
        h * ((1.0 - h) * (1.0 - h)),
        h * h * (h - 1.0),
    ]
}

/// `ehg196`/`ehg197` for one predictor: the approximate trace of the smoother matrix that
/// scikit-misc uses when n >= 500.
fn approximate_trace(tau: usize, span: f64) -> f64 {
    let g1 = (-0.08125 * 1.0 + 0.13) * 1.0 + 1.05;
    let stretch = 1.0 + ((g1 - span) / span).max(0.0);
    let (trla, trlb) = (2.0 * stretch, 3.0 * stretch);
    let alpha = (tau as f64 - 2.0) / (3.0 - 2.0);
    (1.0 - alpha) * trla + alpha * trlb
}

/// The sanity check of `ehg141`: z = (sqrt(k/trL) - sqrt(k/n)) / (1 - sqrt(k/n)) must lie
/// in [0, 1], i.e. k <= trL <= n. A NaN z passes, as in netlib.
#[allow(clippy::manual_range_contains)]
fn check_trace(trace: f64, n: usize, tau: usize) -> Result<(), LoessError> {
    let k = tau as f64;
    let corx = (k / n as f64).sqrt();
    let z = ((k / trace).sqrt() - corx) / (1.0 - corx);
    if 1.0 < z || z < 0.0 {
        return Err(LoessError::TraceOutOfRange {
            trace,
            n,
            params: tau,
        });
    }
    Ok(())
}

/// Local weighted polynomial fit at one point (`ehg127`), with reusable buffers.
struct LocalFit {
    nf: usize,
    k: usize,
    /// Weighted design matrix, column-major `nf × k`.
    b: Vec<f64>,
    /// Weighted responses, overwritten by Qᵀ·eta.
    eta: Vec<f64>,
    /// Whether to fill `resp`.
    want_resp: bool,
    /// Square-root weights of the window rows.
    w: Vec<f64>,
    /// Per window row: d(value, slope)/dy of the fit (the vertex's row of the operator L).
    resp: Vec<[f64; 2]>,
}

/// A vertex fit: value and slope at the vertex, and the window `lo..hi` (positions in the
/// sorted x) of its `nf` nearest neighbours.
struct Fit {
    coef: [f64; 2],
    lo: usize,
    hi: usize,
}

impl LocalFit {
    fn new(nf: usize, degree: usize, want_resp: bool) -> Self {
        let k = degree + 1;
        LocalFit {
            nf,
            k,
            b: vec![0.0; nf * k],
            eta: vec![0.0; nf],
            want_resp,
            w: vec![0.0; nf],
            resp: vec![[0.0; 2]; if want_resp { nf } else { 0 }],
        }
    }

    /// Fitted value and slope of the local polynomial at `q`.
    fn fit(&mut self, xs: &[f64], ys: &[f64], q: f64, span: f64) -> Result<Fit, LoessError> {
        let (n, nf, k) = (xs.len(), self.nf, self.k);

        // The nf nearest points form a window of the sorted x; grow it from q outwards,
        // always taking the nearer side. Squared distances as netlib forms them.
        let d2 = |i: usize| {
            let d = xs[i] - q;
            d * d
        };
        let mut hi = xs.partition_point(|&v| v < q);
        let mut lo = hi;
        let mut rho = 0.0;
        for _ in 0..nf {
            let take_left = match (lo > 0, hi < n) {
                (true, true) => d2(lo - 1) <= d2(hi),
                (true, false) => true,
                (false, _) => false,
            };
            if take_left {
                lo -= 1;
                rho = d2(lo);
            } else {
                rho = d2(hi);
                hi += 1;
            }
        }
        // rho is the nf-th smallest squared distance (scaled by span when span > 1).
        rho *= span.max(1.0);
        if rho <= 0.0 {
            return Err(LoessError::ZeroWidthNeighbourhood { at: q });
        }

        // Tricube weights (square roots, as they multiply the rows) and the design matrix.
        let (b, eta, wv) = (&mut self.b, &mut self.eta, &mut self.w);
        let mut wmax: f64 = 0.0;
        for (r, i) in (lo..hi).enumerate() {
            let t = (d2(i) / rho).sqrt();
            let c = 1.0 - t * t * t;
            let w = (c * c * c).sqrt();
            wmax = wmax.max(w);
            wv[r] = w;
            let dx = xs[i] - q;
            b[r] = w;
            if k > 1 {
                b[nf + r] = w * dx;
            }
            if k > 2 {
                b[2 * nf + r] = w * (dx * dx);
            }
            eta[r] = w * ys[i];
        }
        if wmax == 0.0 {
            return Err(LoessError::AllOnBoundary { at: q });
        }

        // Equilibrate columns.
        let mut colnor = [1.0f64; 3];
        for (j, cn) in colnor.iter_mut().enumerate().take(k) {
            let col = &mut b[j * nf..(j + 1) * nf];
            let scal = col.iter().map(|v| v * v).sum::<f64>().sqrt();
            if scal > 0.0 {
                col.iter_mut().for_each(|v| *v /= scal);
                *cn = scal;
            }
        }

        // Householder QR without pivoting (dqrdc), applying each reflector to eta (dqrsl).
        let mut r = [[0.0f64; 3]; 3];
        for l in 0..k.min(nf) {
            let (head, tail) = b.split_at_mut((l + 1) * nf);
            let col = &mut head[l * nf + l..(l + 1) * nf];
            let mut norm = col.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm != 0.0 && l + 1 < nf {
                if col[0] != 0.0 {
                    norm = norm.copysign(col[0]);
                }
                col.iter_mut().for_each(|v| *v /= norm);
                col[0] += 1.0;
                let piv = col[0];
                for j in l + 1..k {
                    let other = &mut tail[(j - l - 1) * nf + l..(j - l) * nf];
                    let t = -dot(col, other) / piv;
                    other
                        .iter_mut()
                        .zip(col.iter())
                        .for_each(|(o, c)| *o += t * c);
                }
                let e = &mut eta[l..nf];
                let t = -dot(col, e) / piv;
                e.iter_mut().zip(col.iter()).for_each(|(o, c)| *o += t * c);
                r[l][l] = -norm;
            } else {
                r[l][l] = col[0];
            }
            for j in l + 1..k {
                r[l][j] = tail[(j - l - 1) * nf + l];
            }
        }

        // SVD of the k×k triangular factor; least squares through its pseudoinverse.
        let (sigma, u, v) = svd_small(&r, k);
        let tol = sigma[0] * (100.0 * f64::EPSILON);
        if sigma[k - 1] <= tol {
            let rcond = if sigma[0] > 0.0 {
                sigma[k - 1] / sigma[0]
            } else {
                0.0
            };
            return Err(LoessError::NearSingular { at: q, rcond });
        }
        let mut gamma = [0.0f64; 3];
        for j in 0..k {
            let ut: f64 = (0..k).map(|i| u[i][j] * eta[i]).sum();
            gamma[j] = ut / sigma[j];
        }
        let coef = |i: usize| -> f64 { (0..k).map(|j| (v[i][j] / colnor[i]) * gamma[j]).sum() };
        let value = coef(0);
        let slope = if k > 1 { coef(1) } else { 0.0 };

        if self.want_resp {
            // d coef / d y_r = diag(1/colnor) (BᵀB)⁻¹ b_r w_r with B the equilibrated design,
            // (BᵀB)⁻¹ = V Σ⁻² Vᵀ; ehg139 gets the same through Qᵀ and the SVD.
            let mut kinv = [[0.0f64; 3]; 3];
            for (i, row) in kinv.iter_mut().enumerate().take(k) {
                for (j, e) in row.iter_mut().enumerate().take(k) {
                    *e = (0..k)
                        .map(|m| v[i][m] * v[j][m] / (sigma[m] * sigma[m]))
                        .sum();
                }
            }
            for (r, i) in (lo..hi).enumerate() {
                let w = self.w[r];
                let dx = xs[i] - q;
                let row = [w / colnor[0], w * dx / colnor[1], w * (dx * dx) / colnor[2]];
                let mut g = [0.0f64; 2];
                for (c, gc) in g.iter_mut().enumerate().take(k.min(2)) {
                    let t: f64 = (0..k).map(|j| kinv[c][j] * row[j]).sum();
                    *gc = t * w / colnor[c];
                }
                self.resp[r] = g;
            }
        }
        Ok(Fit {
            coef: [value, slope],
            lo,
            hi,
        })
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Singular value decomposition `a = u·diag(sigma)·vᵀ` of the leading `k×k` block of `a`
/// (k ≤ 3) by one-sided Jacobi rotations; singular values in decreasing order.
#[allow(clippy::needless_range_loop)]
fn svd_small(a: &[[f64; 3]; 3], k: usize) -> ([f64; 3], [[f64; 3]; 3], [[f64; 3]; 3]) {
    let mut w = *a;
    let mut v = [[0.0f64; 3]; 3];
    for i in 0..k {
        v[i][i] = 1.0;
    }
    for _sweep in 0..60 {
        let mut rotated = false;
        for p in 0..k {
            for q in p + 1..k {
                let (mut alpha, mut beta, mut gamma) = (0.0, 0.0, 0.0);
                for i in 0..k {
                    alpha += w[i][p] * w[i][p];
                    beta += w[i][q] * w[i][q];
                    gamma += w[i][p] * w[i][q];
                }
                if gamma == 0.0 || gamma.abs() <= f64::EPSILON * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for m in [&mut w, &mut v] {
                    for i in 0..k {
                        let (x, y) = (m[i][p], m[i][q]);
                        m[i][p] = c * x - s * y;
                        m[i][q] = s * x + c * y;
                    }
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let mut sig = [0.0f64; 3];
    for j in 0..k {
        sig[j] = (0..k).map(|i| w[i][j] * w[i][j]).sum::<f64>().sqrt();
    }
    let mut idx = [0usize, 1, 2];
    idx[..k].sort_by(|&a, &b| sig[b].total_cmp(&sig[a]));
    let (mut so, mut uo, mut vo) = ([0.0f64; 3], [[0.0f64; 3]; 3], [[0.0f64; 3]; 3]);
    for (jn, &j) in idx[..k].iter().enumerate() {
        so[jn] = sig[j];
        for i in 0..k {
            uo[i][jn] = if sig[j] > 0.0 { w[i][j] / sig[j] } else { 0.0 };
            vo[i][jn] = v[i][j];
        }
    }
    (so, uo, vo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn rejects_bad_input() {
        let x = [1.0, 2.0, 3.0];
        assert!(matches!(
            loess_fitted(&x, &[1.0, 2.0], 0.3, 2),
            Err(LoessError::LengthMismatch { x: 3, y: 2 })
        ));
        let xs: Vec<f64> = (0..100).map(f64::from).collect();
        let mut ys = xs.clone();
        ys[7] = f64::NAN;
        assert!(matches!(
            loess_fitted(&xs, &ys, 0.3, 2),
            Err(LoessError::NonFinite {
                index: 7,
                which: "y"
            })
        ));
        let mut xb = xs.clone();
        xb[3] = f64::INFINITY;
        assert!(matches!(
            loess_fitted(&xb, &xs, 0.3, 2),
            Err(LoessError::NonFinite {
                index: 3,
                which: "x"
            })
        ));
        assert!(matches!(
            loess_fitted(&xs, &xs, 0.0, 2),
            Err(LoessError::InvalidSpan(_))
        ));
        assert!(matches!(
            loess_fitted(&xs, &xs, 1.5, 2),
            Err(LoessError::InvalidSpan(_))
        ));
        assert!(matches!(
            loess_fitted(&xs, &xs, f64::NAN, 2),
            Err(LoessError::InvalidSpan(_))
        ));
        assert!(matches!(
            loess_fitted(&xs, &xs, 0.3, 3),
            Err(LoessError::InvalidDegree(3))
        ));
        // 10 points * 0.3 = 3 neighbours < 4 needed by a local quadratic.
        assert!(matches!(
            loess_fitted(&xs[..10], &xs[..10], 0.3, 2),
            Err(LoessError::TooFewPoints {
                n: 10,
                nf: 3,
                needed: 4
            })
        ));
        assert!(matches!(
            loess_fitted(&[], &[], 0.3, 2),
            Err(LoessError::TooFewPoints { .. })
        ));
        // Only five distinct x values: neighbourhoods with < 3 distinct x are singular, which
        // scikit-misc reports as an error ("There are other near singularities as well").
        let xr: Vec<f64> = (0..100).map(|i| f64::from(i / 20)).collect();
        assert!(matches!(
            loess_fitted(&xr, &xs, 0.3, 2),
            Err(LoessError::NearSingular { .. })
        ));
        // Messages are readable.
        let e = loess_fitted(&x, &[1.0], 0.3, 2).unwrap_err();
        assert!(e.to_string().contains("x has 3 values"));
    }

    #[test]
    fn reproduces_quadratic_exactly() {
        let mut seed = 42;
        let n = 2000;
        let x: Vec<f64> = (0..n).map(|_| -3.0 + 5.0 * lcg(&mut seed)).collect();
        // Ties too.
        let x: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if i % 3 == 0 {
                    (v * 8.0).round() / 8.0
                } else {
                    v
                }
            })
            .collect();
        let y: Vec<f64> = x.iter().map(|&v| 0.7 - 1.3 * v + 0.45 * v * v).collect();
        for span in [0.05, 0.3, 0.75, 1.0] {
            let f = loess_fitted(&x, &y, span, 2).unwrap();
            let err = f
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-11, "span {span}: max error {err}");
        }
        // A line is reproduced by degree 1 (Hermite interpolation is exact for cubics).
        let yl: Vec<f64> = x.iter().map(|&v| 2.0 + 0.5 * v).collect();
        let f = loess_fitted(&x, &yl, 0.3, 1).unwrap();
        let err = f
            .iter()
            .zip(&yl)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "degree 1: max error {err}");
        // A constant by degree 0.
        let yc = vec![3.25; n];
        let f = loess_fitted(&x, &yc, 0.3, 0).unwrap();
        assert!(f.iter().all(|v| (v - 3.25).abs() < 1e-13));
    }

    #[test]
    fn order_of_points_does_not_matter() {
        let mut seed = 7;
        let n = 500;
        let x: Vec<f64> = (0..n).map(|_| lcg(&mut seed) * 4.0).collect();
        let y: Vec<f64> = x.iter().map(|&v| v.sin() + 0.1 * lcg(&mut seed)).collect();
        let f = loess_fitted(&x, &y, 0.3, 2).unwrap();
        let xr: Vec<f64> = x.iter().rev().copied().collect();
        let yr: Vec<f64> = y.iter().rev().copied().collect();
        let fr = loess_fitted(&xr, &yr, 0.3, 2).unwrap();
        for (a, b) in f.iter().zip(fr.iter().rev()) {
            assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0));
        }
    }

    #[test]
    fn svd_small_matches_matrix() {
        let a = [[2.0, -1.0, 0.5], [0.0, 3.0, 1.0], [0.0, 0.0, 0.25]];
        let (s, u, v) = svd_small(&a, 3);
        assert!(s[0] >= s[1] && s[1] >= s[2] && s[2] > 0.0);
        for i in 0..3 {
            for j in 0..3 {
                let r: f64 = (0..3).map(|m| u[i][m] * s[m] * v[j][m]).sum();
                assert!((r - a[i][j]).abs() < 1e-14, "{i},{j}: {r} vs {}", a[i][j]);
            }
        }
    }
}
