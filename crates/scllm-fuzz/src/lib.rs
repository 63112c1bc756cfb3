//! Seeded mutation fuzzing for stable Rust (issue 19): [`Mutator`] makes reproducible mutants of a
//! seed file, [`run_case`] runs one command on one mutant in a child process under a memory cap
//! and a deadline and sorts the run into an [`Outcome`], [`Tally`] counts them per reader.
//!
//! A child process, not `catch_unwind`: the readers sit on a C library (HDF5) whose failures are
//! segmentation faults, and a memory blow-up must hit a cap instead of the test machine.

mod mutate;
mod run;

pub use mutate::Mutator;
pub use run::{run_case, CaseResult, Limits, Outcome, Tally};
