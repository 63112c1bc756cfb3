//! PLACEHOLDER (being written by a colleague): netlib-compatible loess.
#[derive(Debug)]
pub struct LoessError(pub String);
impl std::fmt::Display for LoessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
pub fn loess_fitted(_x: &[f64], _y: &[f64], _span: f64, _degree: usize) -> Result<Vec<f64>, LoessError> {
    Err(LoessError("not yet implemented".into()))
}
