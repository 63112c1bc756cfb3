//! Inverted dropout with burn's `Dropout` semantics, drawn in parallel.

use burn::nn::Dropout;
use burn::tensor::{Tensor, TensorData};

/// Inverted dropout with burn's `Dropout` semantics (active only in training, see
/// [`is_training`]; kept values scaled by 1/(1-p)), but with the mask drawn in parallel by a
/// counter-based generator keyed from the device RNG (so `Device::seed` still fixes it). burn's
/// `random_like` draws every element through one host ChaCha stream: that was ~30% of a
/// fine-tuning step (perf, small config), mostly the B·h·L² attention-probability masks.
pub fn drop<const D: usize>(d: &Dropout, x: Tensor<D>) -> Tensor<D> {
    match dropout_mask(d, &x) {
        Some(mask) => x * mask,
        None => x,
    }
}

/// The scaled keep-mask [`drop`] multiplies `x` by (values 0 or 1/(1-p), shaped as `x`), or `None`
/// where dropout is the identity (p = 0, or not training).
pub fn dropout_mask<const D: usize>(d: &Dropout, x: &Tensor<D>) -> Option<Tensor<D>> {
    use rayon::prelude::*;
    if d.prob <= 0.0 || !is_training(d, x) {
        return None;
    }
    let dev = x.device();
    let shape = x.shape();
    // 4 uniform floats from the device RNG (23 random mantissa bits each) key the mask
    let key = Tensor::<1>::random([4], burn::tensor::Distribution::Default, &dev)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 key")
        .iter()
        .fold(0u64, |k, f| (k << 16) ^ (k >> 48) ^ f.to_bits() as u64);
    let keep = 1.0 - d.prob;
    let threshold = (keep * 4_294_967_296.0) as u64;
    let scale = (1.0 / keep) as f32;
    let mut mask = vec![0f32; shape.num_elements()];
    const CHUNK: usize = 1 << 15;
    mask.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
        let mut state = key ^ (c as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
        // one SplitMix64 draw decides two elements (its high and low 32 bits)
        for pair in out.chunks_mut(2) {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            for (v, u) in pair.iter_mut().zip([z >> 32, z & 0xFFFF_FFFF]) {
                *v = if u < threshold { scale } else { 0.0 };
            }
        }
    });
    Some(Tensor::<D>::from_data(TensorData::new(mask, shape), &dev))
}

/// Whether `x` runs in training mode: on an autodiff device with the module's training flag on
/// (burn's `Dropout` rule; `valid()` switches it off).
pub fn is_training<const D: usize>(flag: &Dropout, x: &Tensor<D>) -> bool {
    flag.training.is_enabled() && x.device().is_autodiff()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::DropoutConfig;
    use burn::tensor::Device;

    fn ones(dev: &Device) -> Tensor<2> {
        Tensor::<2>::ones([500, 400], dev)
    }

    /// The parallel-mask dropout keeps a fraction 1-p of the values, scaled by 1/(1-p), is
    /// reproducible under `Device::seed`, and is the identity outside training.
    #[test]
    fn dropout_rate_scale_seed_and_inference() {
        let plain = Device::flex();
        let dev = plain.clone().autodiff();
        let d = DropoutConfig::new(0.2).init();
        let run = |seed: u64| -> Vec<f32> {
            dev.seed(seed);
            drop(&d, ones(&dev))
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let a = run(1);
        let zeros = a.iter().filter(|&&v| v == 0.0).count() as f64 / a.len() as f64;
        assert!((zeros - 0.2).abs() < 0.005, "dropped fraction {zeros}");
        assert!(a.iter().all(|&v| v == 0.0 || (v - 1.25).abs() < 1e-6));
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
        assert_eq!(a, run(1), "same seed, same mask");
        assert_ne!(a, run(2), "another seed, another mask");
        // inference: plain device, or a module switched off by valid()
        let x: Vec<f32> = drop(&d, ones(&plain)).into_data().try_to_vec().unwrap();
        assert!(x.iter().all(|&v| v == 1.0));
    }
}
