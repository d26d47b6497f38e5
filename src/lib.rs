//! Eddy's load generator as a library: `eddy gen` and `eddy bench` in the binary and the
//! criterion benches in `benches/` build the same data from the same code.

pub mod bench;
pub mod generator;
