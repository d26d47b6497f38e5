//! Every limit of the query layer, each with what it trades. Limits of the storage engine are
//! in `eddy_storage::limits`; limits of a protocol are in its front end.

/// Stack of each query thread. A statement's passes (parse, rewrite, plan, optimize, drop)
/// recurse once per level of nesting, and DataFusion's frames are large in places; 64 MiB
/// holds [`STATEMENT_DEPTH_MAX`] levels with a wide margin. It is address space: only the
/// pages a deep statement touches are memory.
pub const QUERY_THREAD_STACK_BYTES: usize = 64 << 20;

/// Deepest nesting of expressions, subqueries and set operations a statement may have
/// (`1+1+...+1` with n terms nests n deep, as does a chain of n `UNION ALL`). Beyond it the
/// statement is refused as too complex before it is planned: planning time and stack grow
/// with depth, and some of DataFusion's passes grow with its square. Tools generate lists
/// (`IN (...)`) rather than chains, so real statements stay far below.
pub const STATEMENT_DEPTH_MAX: usize = 1_000;

/// Result batches computed ahead of a client that is still reading: enough to overlap
/// computing with sending, few enough that a slow client holds little memory.
pub const RESULT_BATCHES_IN_FLIGHT: usize = 2;

/// Largest single text or binary value a function may build (`lpad`, `rpad`, `repeat`).
/// PostgreSQL refuses values over 1 GB; Eddy stops at 256 MiB because every row of a result
/// may hold one, and the allocation happens before the memory pool can see it.
pub const VALUE_BYTES_MAX: usize = 256 << 20;

/// Most characters of a statement's text kept for `eddy_queries`: enough to recognize a
/// statement, little enough that a huge `INSERT ... VALUES` is not held twice while it runs.
pub const QUERY_TEXT_CHARS_MAX: usize = 2_048;
