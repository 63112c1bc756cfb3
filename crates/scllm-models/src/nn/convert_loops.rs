//! The element loops around the reduced-precision products (`super::precision`,
//! `super::packed_attention`): f32 → bf16 rounding, int8 quantization, and back to f32 with
//! scales and bias. The crate is built for the x86-64 baseline (SSE2), where these loops run 4
//! lanes wide or scalar; perf put them at ~15 % of a bf16 embedding run. Each is compiled a
//! second time for AVX-512 (and AVX2) and picked by CPU detection, as the attention's softmax is.

use gemmkit::bf16;

/// Defines `pub fn $name(args)` running `$body` compiled for AVX-512F/BW/VL or AVX2+FMA where
/// the CPU has them, else for the baseline.
macro_rules! vectorised {
    ($(#[$m:meta])* pub fn $name:ident($($a:ident: $t:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        pub fn $name($($a: $t),*) {
            #[inline(always)]
            fn portable($($a: $t),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
                unsafe fn avx512($($a: $t),*) {
                    portable($($a),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($a: $t),*) {
                    portable($($a),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the CPU has the features the function is compiled for
                    return unsafe { avx512($($a),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above
                    return unsafe { avx2($($a),*) };
                }
            }
            portable($($a),*)
        }
    };
}

/// `x` rounded to the nearest bf16 (ties to even), NaN kept a NaN: the value `bf16::from_f32`
/// gives, without branches so the loops vectorise.
#[inline(always)]
pub fn to_bf16(x: f32) -> bf16 {
    let b = x.to_bits();
    let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    let nan = ((b >> 16) as u16) | 0x40;
    bf16::from_bits(if x.is_nan() { nan } else { rounded })
}

/// A bf16's f32 value (exact).
#[inline(always)]
pub fn widen(x: bf16) -> f32 {
    f32::from_bits((x.to_bits() as u32) << 16)
}

/// `v` (already divided by its scale) rounded to the nearest integer (ties to even) in
/// [-127, 127]; adding and subtracting 1.5·2²³ rounds without a `roundf` call.
#[inline(always)]
pub fn quantize_scaled(v: f32) -> i8 {
    const ROUND: f32 = 12_582_912.0;
    ((v.clamp(-127.0, 127.0) + ROUND) - ROUND) as i8
}

/// The symmetric int8 scale of values with largest magnitude `amax` (1 for all-zero input, so
/// zeros stay zeros).
#[inline(always)]
pub fn scale_of(amax: f32) -> f32 {
    if amax > 0.0 && amax.is_finite() {
        amax / 127.0
    } else {
        1.0
    }
}

vectorised! {
    /// `dst[i] = bf16(src[i])`.
    pub fn round_bf16(src: &[f32], dst: &mut [bf16]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = to_bf16(s);
        }
    }
}

vectorised! {
    /// `dst[i] = bf16(src[i]) · scale`.
    pub fn widen_scaled(src: &[bf16], scale: f32, dst: &mut [f32]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = widen(s) * scale;
        }
    }
}

vectorised! {
    /// Row-major `out[r, j] = c[r, j] + bias[j]` (`n` columns) from bf16 products.
    pub fn widen_rows(c: &[bf16], bias: Option<&[f32]>, n: usize, out: &mut [f32]) {
        match bias {
            Some(b) => {
                for (o, c) in out.chunks_exact_mut(n).zip(c.chunks_exact(n)) {
                    for ((o, &c), &b) in o.iter_mut().zip(c).zip(b) {
                        *o = widen(c) + b;
                    }
                }
            }
            None => {
                for (o, &c) in out.iter_mut().zip(c) {
                    *o = widen(c);
                }
            }
        }
    }
}

vectorised! {
    /// Each row of `x` (`k` columns) as int8 with its own symmetric scale, into `a` and
    /// `scales`.
    pub fn quantize_rows(x: &[f32], k: usize, a: &mut [i8], scales: &mut [f32]) {
        for ((row, q), s) in x.chunks_exact(k).zip(a.chunks_exact_mut(k)).zip(scales) {
            let mut amax = [0f32; 16];
            let mut chunks = row.chunks_exact(16);
            for ch in &mut chunks {
                for i in 0..16 {
                    amax[i] = amax[i].max(ch[i].abs());
                }
            }
            let mut m = amax.iter().copied().fold(0f32, f32::max);
            for &v in chunks.remainder() {
                m = m.max(v.abs());
            }
            *s = scale_of(m);
            let inv = 1.0 / *s;
            for (q, &v) in q.iter_mut().zip(row) {
                *q = quantize_scaled(v * inv);
            }
        }
    }
}

vectorised! {
    /// Row-major `out[r, j] = c[r, j] · row_scale[r] · col_scale[j] + bias[j]` (`n` columns)
    /// from int8 products.
    pub fn dequantize_rows(
        c: &[i32],
        row_scale: &[f32],
        col_scale: &[f32],
        bias: Option<&[f32]>,
        n: usize,
        out: &mut [f32],
    ) {
        for ((o, c), &t) in out.chunks_exact_mut(n).zip(c.chunks_exact(n)).zip(row_scale) {
            match bias {
                Some(b) => {
                    for (((o, &c), &s), &b) in o.iter_mut().zip(c).zip(col_scale).zip(b) {
                        *o = c as f32 * (t * s) + b;
                    }
                }
                None => {
                    for ((o, &c), &s) in o.iter_mut().zip(c).zip(col_scale) {
                        *o = c as f32 * (t * s);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_equals_the_half_crate_and_numpy_rules() {
        let mut xs = vec![
            0.0,
            -0.0,
            1.0,
            f32::from_bits(0x3f80_8000), // 1 + 2⁻⁸: between two bf16, ties to even (down)
            f32::from_bits(0x3f81_8000), // 1 + 3·2⁻⁸: between, ties to even (up)
            3.4e38,                      // rounds to inf as bf16
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-40, // subnormal
            -2.5e-3,
        ];
        let mut s = 7u64;
        for _ in 0..10_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            xs.push(f32::from_bits(s as u32));
        }
        for &x in &xs {
            let want = bf16::from_f32(x);
            let got = to_bf16(x);
            if x.is_nan() {
                assert!(got.is_nan(), "{x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{x:e}");
                assert_eq!(widen(got), want.to_f32());
            }
        }
        let mut dst = vec![bf16::ZERO; xs.len()];
        round_bf16(&xs, &mut dst);
        for (x, d) in xs.iter().zip(&dst) {
            assert!(d.to_bits() == to_bf16(*x).to_bits() || x.is_nan());
        }
    }

    #[test]
    fn quantization_rounds_to_nearest_even_and_saturates() {
        for (v, q) in [
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-1.5, -2),
            (126.6, 127),
            (300.0, 127),
        ] {
            assert_eq!(quantize_scaled(v), q, "{v}");
        }
        assert_eq!(quantize_scaled(f32::NAN), 0);
        let x = [0.0, 0.0, 1.0, -2.0, 0.5, 0.25];
        let (mut a, mut s) = ([0i8; 6], [0f32; 2]);
        quantize_rows(&x, 3, &mut a, &mut s);
        assert_eq!(s, [1.0 / 127.0, 2.0 / 127.0]);
        assert_eq!(a, [0, 0, 127, -127, 32, 16]);
    }
}
