//! Fuzz target `line_protocol`: the body, and what it checks, is `eddy_ingest::fuzzing::line_protocol`.
//! How to run it: docs/fuzzing.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eddy_ingest::fuzzing::line_protocol(data);
});
