//! Fuzz target `copy_text`: the body, and what it checks, is `eddy_pg::fuzzing::copy_text`.
//! How to run it: docs/fuzzing.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eddy_pg::fuzzing::copy_text(data);
});
