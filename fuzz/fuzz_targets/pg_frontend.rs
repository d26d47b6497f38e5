//! Fuzz target `pg_frontend`: the body, and what it checks, is `eddy_pg::fuzzing::frontend_messages`.
//! How to run it: docs/fuzzing.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eddy_pg::fuzzing::frontend_messages(data);
});
