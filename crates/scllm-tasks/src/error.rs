//! Input problems the verbs find themselves (CLI exit code 2; a `ValueError` in Python).

/// An input problem found by a verb, in one line naming the file, field and fix.
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

pub fn bad(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(msg.into()))
}

/// Whether `e` (or a cause in its chain) is a problem with the user's input rather than a
/// failure of scllm itself: the CLI's exit code 2, the Python package's `ValueError`.
pub fn is_bad_input(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<scllm_io::IoError>().is_some()
            || cause.downcast_ref::<scllm_pp::PpError>().is_some()
            || cause
                .downcast_ref::<scllm_tokenize::TokenizeError>()
                .is_some()
            || cause.downcast_ref::<BadInput>().is_some()
            || cause.downcast_ref::<scllm_eval::EvalError>().is_some()
            || cause
                .downcast_ref::<scllm_integrate::IntegrateError>()
                .is_some()
            || cause
                .downcast_ref::<scllm_train::TrainError>()
                .is_some_and(|e| e.is_bad_input())
            || cause
                .downcast_ref::<scllm_benchmark::BenchError>()
                .is_some_and(|e| e.is_bad_input())
            || cause
                .downcast_ref::<scllm_models::ModelError>()
                .is_some_and(|e| e.is_bad_input())
    })
}

/// The error as the CLI prints it after `error: `: every cause, joined by `: `.
pub fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// The first of `flags` that is set, refused with `message(its name)`: options a family or a
/// path cannot honour fail by name instead of being ignored.
pub fn refuse_flags(
    flags: &[(bool, &str)],
    message: impl Fn(&str) -> String,
) -> anyhow::Result<()> {
    match flags.iter().find(|(set, _)| *set) {
        Some((_, name)) => Err(bad(message(name))),
        None => Ok(()),
    }
}
