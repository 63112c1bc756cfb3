//! Reduced-precision inference for linear layers: the weights are converted once (bf16, or
//! int8 with one symmetric scale per output channel), the activations per call (bf16, or int8
//! with one symmetric scale per row), and the product runs on the CPU's bf16 / int8 dot
//! instructions with an f32 (bf16) or i32 (int8) accumulator. Everything around the products
//! (LayerNorm, softmax, residuals, activations) stays f32.
//!
//! The products come from `gemmkit` (crates.io), which picks its kernel at run time: AVX-512
//! BF16 `vdpbf16ps` for bf16, AVX-512 VNNI `vpdpbusd` for int8, else a widen-to-f32 kernel on
//! AVX-512F, AVX2+FMA or scalar code. Measured before choosing it (docs/precision.md): on the
//! 2-core AMD EPYC of this project (AVX-512 BF16/VNNI), a 2048×512×1536 product ran ~1.9x (bf16)
//! and ~2.5x (int8) faster than the f32 `gemm` crate burn-flex uses. gemmkit has no AMX kernel
//! and no crate offering one was found; AMX machines get the AVX-512 kernels.

use std::fmt;
use std::str::FromStr;

use gemmkit::{bf16, MatMut, MatRef, Parallelism};
use rayon::prelude::*;

use super::bf16_dot::{self, PackedB};
use super::convert_loops::{
    dequantize_rows, quantize_rows, quantize_scaled, round_bf16, scale_of, to_bf16, widen_rows,
};

/// The number format of the linear layers' products at inference.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// burn's f32 products (the reference's numbers).
    #[default]
    F32,
    /// bf16 inputs and weights, f32 accumulation.
    Bf16,
    /// int8 inputs (per-row scale) and weights (per-output-channel scale), i32 accumulation.
    Int8,
}

impl Precision {
    pub const NAMES: &'static str = "f32, bf16 or int8";

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }

    /// The precision `embed` and `annotate` take when none is given: bf16 where bf16 runs on
    /// scllm's AVX-512 BF16 kernel ([`own_bf16_dot`]: 1.86-2.13x f32 at cosine ≥ 0.99999 on the
    /// whole-human scGPT, bench/RESULTS.md), f32 elsewhere (bf16 there widens to f32 in gemmkit,
    /// not measured faster than f32 end to end).
    pub fn cpu_default() -> Precision {
        if own_bf16_dot() {
            Precision::Bf16
        } else {
            Precision::F32
        }
    }

    /// The precision asked for, else [`Self::cpu_default`]; `true` when defaulted, so the
    /// output can say so (the CLI's `--precision`, the binding's `precision=`).
    pub fn or_cpu_default(given: Option<Precision>) -> (Precision, bool) {
        match given {
            Some(p) => (p, false),
            None => (Precision::cpu_default(), true),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            "int8" | "i8" => Ok(Precision::Int8),
            other => Err(format!(
                "unknown precision `{other}`: use {}",
                Precision::NAMES
            )),
        }
    }
}

/// The environment variable gemmkit reads to pin (or forbid) a kernel; [`kernel`] checks it
/// against the CPU so a wrong value is a clean error, not gemmkit's panic.
pub const KERNEL_ENV: &str = "GEMMKIT_REQUIRE_ISA";

/// What the CPU offers, as gemmkit's kernel ladder sees it.
#[derive(Clone, Copy, Debug)]
struct Cpu {
    avx2_fma: bool,
    avx512f: bool,
    avx512bf16: bool,
    avx512vnni: bool,
}

impl Cpu {
    fn detect() -> Cpu {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            let f = std::arch::is_x86_feature_detected!("avx512f");
            Cpu {
                avx2_fma: std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma"),
                avx512f: f,
                avx512bf16: f && std::arch::is_x86_feature_detected!("avx512bf16"),
                avx512vnni: f
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vnni"),
            }
        }
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        Cpu {
            avx2_fma: false,
            avx512f: false,
            avx512bf16: false,
            avx512vnni: false,
        }
    }
}

/// The kernel `precision`'s products run on here, named for the output (`--json`, progress
/// line): gemmkit's own choice (its `select_bf16` / `select_i8` ladders in
/// `src/dispatch/{mixed,int}.rs`), including a pin through [`KERNEL_ENV`]. An unknown pin, or
/// one naming an instruction set this CPU lacks, is an error naming the variable.
pub fn kernel(precision: Precision) -> Result<String, String> {
    if precision == Precision::F32 {
        return Ok("f32 (burn-flex gemm)".into());
    }
    let cpu = Cpu::detect();
    let pin = pinned();
    let lacks = |isa: &str| {
        Err(format!(
            "{KERNEL_ENV}={pin}: this CPU does not report {isa}; unset it or name one of: {}",
            available(cpu)
        ))
    };
    const DOT_BF16: &str = "on AVX-512 BF16 (vdpbf16ps)";
    const DOT_I8: &str = "on AVX-512 VNNI (vpdpbusd)";
    const WIDEN_512: &str = "widened on AVX-512F";
    const WIDEN_256: &str = "widened on AVX2+FMA";
    let how = match pin.as_str() {
        "" | "auto" => match precision {
            Precision::Bf16 if cpu.avx512bf16 => DOT_BF16,
            Precision::Int8 if cpu.avx512vnni => DOT_I8,
            _ if cpu.avx512f => WIDEN_512,
            _ if cpu.avx2_fma => WIDEN_256,
            _ => "scalar",
        },
        "scalar" => "scalar",
        "fma" | "avx2" if !cpu.avx2_fma => return lacks("avx2+fma"),
        "fma" | "avx2" => WIDEN_256,
        "avx512f" if !cpu.avx512f => return lacks("avx512f"),
        "avx512f" => WIDEN_512,
        "avx512bf16" | "bf16" if !cpu.avx512bf16 => return lacks("avx512f+avx512bf16"),
        "avx512vnni" | "vnni" if !cpu.avx512vnni => return lacks("avx512f+bw+vnni"),
        // gemmkit: a bf16 pin gives int8 the AVX-512F widen kernel, and a VNNI pin bf16
        "avx512bf16" | "bf16" if precision == Precision::Bf16 => DOT_BF16,
        "avx512vnni" | "vnni" if precision == Precision::Int8 => DOT_I8,
        "avx512bf16" | "bf16" | "avx512vnni" | "vnni" => WIDEN_512,
        other => {
            return Err(format!(
                "{KERNEL_ENV}={other}: unknown kernel; use auto, scalar, avx2, avx512f, \
                 avx512bf16 or avx512vnni (this CPU: {})",
                available(cpu)
            ))
        }
    };
    Ok(format!("{precision} {how}"))
}

fn available(cpu: Cpu) -> String {
    let mut v = vec!["scalar"];
    if cpu.avx2_fma {
        v.push("avx2");
    }
    if cpu.avx512f {
        v.push("avx512f");
    }
    if cpu.avx512bf16 {
        v.push("avx512bf16");
    }
    if cpu.avx512vnni {
        v.push("avx512vnni");
    }
    v.join(", ")
}

/// Whether bf16 products run on [`bf16_dot`] (the CPU has AVX-512 BF16 and [`KERNEL_ENV`] does
/// not pin another kernel), decided once per process as gemmkit decides its own.
pub fn own_bf16_dot() -> bool {
    static OWN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OWN.get_or_init(|| {
        bf16_dot::cpu_has() && matches!(pinned().as_str(), "" | "auto" | "avx512bf16" | "bf16")
    })
}

/// [`KERNEL_ENV`]'s value, trimmed and lower-case ("" when unset).
fn pinned() -> String {
    let pin = std::env::var(KERNEL_ENV).unwrap_or_default();
    pin.trim().to_ascii_lowercase()
}

/// Layers with fewer inputs than this keep f32: nothing to gain, only rounding (scGPT's value
/// encoder `Linear(1, d)`).
pub const MIN_INPUTS: usize = 16;

/// A linear layer's weights converted for a reduced precision, with its f32 bias.
#[derive(Debug)]
pub struct LowWeights {
    d_in: usize,
    d_out: usize,
    weights: Converted,
    bias: Option<Vec<f32>>,
}

#[derive(Debug)]
enum Converted {
    /// `[d_in, d_out]` row-major (burn's layout of a `Linear` weight), for gemmkit.
    Bf16(Vec<bf16>),
    /// Packed once for [`bf16_dot`] (CPUs with AVX-512 BF16, see [`own_bf16_dot`]).
    Bf16Packed(PackedB),
    /// `[d_in, d_out]` row-major, and one scale per output column: `w ≈ q · scale`.
    Int8 { q: Vec<i8>, scale: Vec<f32> },
}

impl LowWeights {
    /// Converts `weight` (`[d_in, d_out]` row-major, burn's `Linear` layout) to `precision`
    /// (bf16: round to nearest even; int8: `round(w / s)` with `s = max|w_col| / 127`).
    /// `None` for f32.
    pub fn convert(
        weight: &[f32],
        bias: Option<Vec<f32>>,
        d_in: usize,
        d_out: usize,
        precision: Precision,
    ) -> Option<LowWeights> {
        assert_eq!(weight.len(), d_in * d_out, "weight shape");
        let weights = match precision {
            Precision::F32 => return None,
            Precision::Bf16 if own_bf16_dot() => {
                Converted::Bf16Packed(PackedB::from_f32(weight, d_in, d_out))
            }
            Precision::Bf16 => Converted::Bf16(weight.iter().map(|&w| to_bf16(w)).collect()),
            Precision::Int8 => {
                let mut amax = vec![0f32; d_out];
                for row in weight.chunks_exact(d_out) {
                    for (a, &w) in amax.iter_mut().zip(row) {
                        *a = a.max(w.abs());
                    }
                }
                let scale: Vec<f32> = amax.iter().map(|&a| scale_of(a)).collect();
                let q = weight
                    .chunks_exact(d_out)
                    .flat_map(|row| row.iter().zip(&scale).map(|(&w, &s)| quantize(w, s)))
                    .collect();
                Converted::Int8 { q, scale }
            }
        };
        Some(LowWeights {
            d_in,
            d_out,
            weights,
            bias,
        })
    }

    pub fn d_in(&self) -> usize {
        self.d_in
    }

    pub fn d_out(&self) -> usize {
        self.d_out
    }

    pub fn precision(&self) -> Precision {
        match self.weights {
            Converted::Bf16(_) | Converted::Bf16Packed(_) => Precision::Bf16,
            Converted::Int8 { .. } => Precision::Int8,
        }
    }

    /// `x W + b` for `x` `[m, d_in]` row-major; returns `[m, d_out]` row-major f32.
    ///
    /// Blocks of rows run as separate tasks (each converts its inputs, runs a one-thread
    /// product and writes its f32 outputs while the block is still in cache): measured ~20-40 %
    /// faster than converting the whole input, one parallel product and converting the whole
    /// output (docs/precision.md).
    pub fn forward(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (k, n) = (self.d_in, self.d_out);
        assert_eq!(x.len(), m * k, "input shape");
        // every element is written below (the loops cover all rows and columns)
        let mut out = vec![0f32; m * n];
        if m == 0 {
            return out;
        }
        // at least two blocks per thread where the rows allow, at most 512 rows: gemmkit packs
        // the weight for every block, and 512 rows beat 256 by 3-6 % in bf16 in three A/B pairs
        // (1,024: no steadier gain; docs/precision.md)
        let threads = rayon::current_num_threads().max(1);
        let rows = m.div_ceil(2 * threads).clamp(32, 512);
        let bias = self.bias.as_deref();
        match &self.weights {
            // no packing per block here, so blocks only need to share the rows out evenly
            Converted::Bf16Packed(w) => {
                let rows = rows.min(128);
                out.par_chunks_mut(rows * n)
                    .zip(x.par_chunks(rows * k))
                    .for_each_init(Vec::new, |a: &mut Vec<bf16>, (o, x)| {
                        let r = x.len() / k;
                        a.resize(r * k, bf16::ZERO);
                        round_bf16(x, a);
                        bf16_dot::gemm(a, k, r, w, 1.0, bias, o, n);
                    })
            }
            Converted::Bf16(w) => out
                .par_chunks_mut(rows * n)
                .zip(x.par_chunks(rows * k))
                .for_each_init(
                    || (Vec::new(), Vec::new()),
                    |(a, c): &mut (Vec<bf16>, Vec<bf16>), (o, x)| {
                        let r = x.len() / k;
                        a.resize(r * k, bf16::ZERO);
                        round_bf16(x, a);
                        c.resize(r * n, bf16::ZERO);
                        gemmkit::gemm(
                            bf16::ONE,
                            MatRef::new(a, r, k, k as isize, 1),
                            MatRef::new(w, k, n, n as isize, 1),
                            bf16::ZERO,
                            MatMut::new(c, r, n, n as isize, 1),
                            Parallelism::Serial,
                        );
                        widen_rows(c, bias, n, o);
                    },
                ),
            Converted::Int8 { q, scale } => out
                .par_chunks_mut(rows * n)
                .zip(x.par_chunks(rows * k))
                .for_each_init(
                    || (Vec::new(), Vec::new(), Vec::new()),
                    |(a, c, rs): &mut (Vec<i8>, Vec<i32>, Vec<f32>), (o, x)| {
                        let r = x.len() / k;
                        a.resize(r * k, 0);
                        rs.resize(r, 0.0);
                        quantize_rows(x, k, a, rs);
                        c.resize(r * n, 0);
                        gemmkit::gemm_i8(
                            1,
                            MatRef::new(a, r, k, k as isize, 1),
                            MatRef::new(q, k, n, n as isize, 1),
                            0,
                            MatMut::new(c, r, n, n as isize, 1),
                            Parallelism::Serial,
                        );
                        dequantize_rows(c, rs, scale, bias, n, o);
                    },
                ),
        }
        out
    }
}

/// `round(v / scale)` in [-127, 127].
fn quantize(v: f32, scale: f32) -> i8 {
    quantize_scaled(v / scale)
}
