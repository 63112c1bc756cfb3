//! Blocks every family shares: attention from a packed Q/K/V projection (with the packed-cell
//! inference kernel and a softmax with its own backward for training), dropout, padding masks.

pub mod bf16_dot;
pub mod convert_loops;
pub mod dropout;
pub mod encoder_layer;
pub mod linear;
pub mod mask;
pub mod packed_attention;
pub mod precision;
pub mod self_attention;
pub mod softmax;

pub use dropout::{drop, dropout_mask, is_training};
pub use encoder_layer::EncoderBlock;
pub use linear::Linear;
pub use mask::{extend_mask, key_padding_mask, right_padded_lengths};
pub use precision::Precision;
pub use self_attention::{attend, Queries};

use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, LinearConfig};
use burn::tensor::Device;

/// PyTorch's `Linear(din, dout, bias)` with its default init (kaiming-uniform a=√5, bias
/// U(±1/√fan_in)), which is burn's default too.
pub fn linear(din: usize, dout: usize, bias: bool, dev: &Device) -> Linear {
    LinearConfig::new(din, dout)
        .with_bias(bias)
        .init(dev)
        .into()
}

/// `LayerNorm(d, eps)` with weight 1 and bias 0.
pub fn layer_norm(d: usize, eps: f64, dev: &Device) -> LayerNorm {
    LayerNormConfig::new(d).with_epsilon(eps).init(dev)
}

pub fn dropout(p: f64) -> Dropout {
    DropoutConfig::new(p).init()
}
