//! Fuzz target `copy_csv`: the body, and what it checks, is `eddy_pg::fuzzing::copy_csv`.
//! How to run it: docs/fuzzing.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eddy_pg::fuzzing::copy_csv(data);
});
