//! Full-text search over one string column of an immutable segment.
//!
//! Each segment column gets its own tantivy index, built once next to the segment and opened
//! read-only afterwards. Rows not yet in a segment are searched by [`matches_values`], which
//! indexes the batch in RAM with the same schema, tokenizer and query compilation, so a row
//! matches in memory exactly when it would match once flushed.
//!
//! Query language: tantivy's standard syntax on the one `text` field. Bare terms are OR-ed
//! (`error warn`), `AND`/`OR`/`NOT`, `+`/`-`, parentheses, phrases (`"disk full"`, slop
//! `"disk full"~2`), phrase prefixes (`"disk fu"*`) and `*` (every non-null row). Field-qualified
//! terms (`row:3`, `text:x`), ranges, `IN` sets, regexes and exists queries are rejected as
//! [`FullTextError::Query`]: the index has only one searchable column, and its internal `row`
//! field must not be reachable from SQL.
//!
//! Negation follows SQL-style boolean logic: a group made only of exclusions (`NOT error`,
//! `-error`, `a AND NOT b`'s `(-b)`) means "every non-null row except those". Tantivy itself
//! rejects a purely negative query and lets a nested purely negative group match nothing, so
//! such groups are completed with "all rows" before tantivy sees them.
//!
//! Nulls get no document at all, so they never match, not even `NOT x` or `*`; the empty string
//! is a document without terms, so it matches `NOT x` and `*`. Text is split on anything but
//! letters and digits and lowercased, in the query as in the rows: `&&`, `||` and `!` are not
//! operators but punctuation, and a term made only of punctuation is ignored.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Instant;

use roaring::RoaringBitmap;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::directory::{MmapDirectory, RamDirectory};
use tantivy::indexer::{IndexWriterOptions, NoMergePolicy};
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, EnableScoring, Explanation, Occur, Query, QueryParser,
    Scorer, TermQuery, Weight,
};
use tantivy::query_grammar::{self, UserInputAst, UserInputLeaf};
use tantivy::schema::{FAST, Field, Schema, TEXT};
use tantivy::tokenizer::TokenizerManager;
use tantivy::{
    DocId, DocSet, Index, IndexWriter, ReloadPolicy, Score, Searcher, SegmentReader,
    TantivyDocument,
};

/// Errors of full-text indexing and search.
#[derive(Debug, thiserror::Error)]
pub enum FullTextError {
    /// The query is not valid; the message says what is wrong and quotes the query.
    #[error("invalid full-text query: {0}")]
    Query(String),
    /// Building, opening or searching an index failed: tantivy's message and the directory.
    #[error("full-text index {}: {message}", path.display())]
    Index {
        /// The index directory (`<in-memory>` for the batch index of [`matches_values`]).
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// Result of full-text operations.
pub type Result<T> = std::result::Result<T, FullTextError>;

/// Name of the tokenized column text; the only field a query can reach.
const TEXT_FIELD: &str = "text";
/// Name of the row-number field; fast so matches map back to rows whatever the DocId order.
const ROW_FIELD: &str = "row";
/// Writer budget of an on-disk build: bounds memory, and past it tantivy flushes a segment.
const DISK_WRITER_BUDGET: usize = 32 * 1024 * 1024;
/// Writer budget of a batch index; it only sizes the initial term hash table, which grows on
/// demand. IndexWriter's 15 MB minimum means a 2^18-slot table allocated, zeroed and scanned on
/// every call: several milliseconds, most of the cost of a small batch.
const MEMORY_WRITER_BUDGET: usize = 1 << 20;
/// Marks meta.json's commit payload as ours and versions it, so a foreign index fails to open.
const PAYLOAD_PREFIX: &str = "eddy-fulltext-v1 rows=";
/// Stands in for a directory in errors of the RAM index, which has none.
const IN_MEMORY: &str = "<in-memory>";

/// The schema and query parser shared by on-disk and in-memory indexes, built once.
struct TextSchema {
    schema: Schema,
    text: Field,
    row: Field,
    parser: QueryParser,
    tokenizers: TokenizerManager,
}

static SCHEMA: LazyLock<TextSchema> = LazyLock::new(|| {
    let mut builder = Schema::builder();
    let text = builder.add_text_field(TEXT_FIELD, TEXT);
    // Only read back as a fast field: not indexed (a quarter of `matches_values` time).
    let row = builder.add_u64_field(ROW_FIELD, FAST);
    let schema = builder.build();
    // Index::create and Index::open register TokenizerManager::default() too, so the query is
    // tokenized exactly as the indexed text, and one parser serves every index.
    let tokenizers = TokenizerManager::default();
    let parser = QueryParser::new(schema.clone(), vec![text], tokenizers.clone());
    TextSchema {
        schema,
        text,
        row,
        parser,
        tokenizers,
    }
});

/// Checks a query's syntax without an index (for a clear error at planning time).
pub fn check_query(query: &str) -> Result<()> {
    compile(query).map(|_| ())
}

/// Parses, validates and rewrites `query` into the tantivy query both index kinds run.
fn compile(query: &str) -> Result<Box<dyn Query>> {
    let ast = query_grammar::parse_query(query).map_err(|_| syntax_error(query))?;
    reject_unsupported(&ast)
        .map_err(|reason| FullTextError::Query(format!("{reason} in {query:?}")))?;
    let compiled = SCHEMA
        .parser
        .build_query_from_user_input_ast(normalize(ast))
        .map_err(|e| FullTextError::Query(format!("{e} in {query:?}")))?;
    Ok(guard_exclusions(compiled))
}

/// Builds the Query error of a grammar failure, with the position the lenient parser points at.
fn syntax_error(query: &str) -> FullTextError {
    // The strict grammar only says "no"; the lenient one says where and why.
    let (_, errors) = query_grammar::parse_query_lenient(query);
    let detail = errors
        .iter()
        .map(|e| format!("{} at position {}", e.message, e.pos))
        .collect::<Vec<_>>()
        .join("; ");
    if detail.is_empty() {
        FullTextError::Query(format!("syntax error in {query:?}"))
    } else {
        FullTextError::Query(format!("syntax error ({detail}) in {query:?}"))
    }
}

/// Refuses what would reach past the text column or has no meaning on it.
fn reject_unsupported(ast: &UserInputAst) -> std::result::Result<(), String> {
    match ast {
        UserInputAst::Clause(clauses) => clauses
            .iter()
            .try_for_each(|(_, sub)| reject_unsupported(sub)),
        UserInputAst::Boost(inner, _) => reject_unsupported(inner),
        UserInputAst::Leaf(leaf) => match leaf.as_ref() {
            UserInputLeaf::Literal(literal) => match &literal.field_name {
                Some(field) => Err(format!(
                    "field-qualified terms such as `{field}:` are not supported (quote text that contains ':')"
                )),
                None => Ok(()),
            },
            UserInputLeaf::All => Ok(()),
            UserInputLeaf::Range { .. } => Err("range queries are not supported".to_string()),
            UserInputLeaf::Set { .. } => Err("IN sets are not supported".to_string()),
            UserInputLeaf::Exists { .. } => {
                Err("exists queries (field:*) are not supported".to_string())
            }
            UserInputLeaf::Regex { .. } => Err("regex queries are not supported".to_string()),
        },
    }
}

/// Gives every group made only of exclusions an "all rows" clause to exclude from, and drops
/// boosts.
///
/// Tantivy rejects a top-level purely negative query and lets a nested one (as in
/// `a OR NOT b`) match nothing; SQL users expect the complement. Tantivy also drops terms that
/// tokenize to nothing (`!!`), so `!! -warn` is purely negative too. Boosts only change scores,
/// which a filter ignores, and without them no BoostQuery hides a BooleanQuery from
/// [`guard_exclusions`].
fn normalize(ast: UserInputAst) -> UserInputAst {
    match ast {
        UserInputAst::Clause(clauses) => {
            let mut clauses: Vec<_> = clauses
                .into_iter()
                .map(|(occur, sub)| (occur, normalize(sub)))
                .collect();
            let excludes = clauses
                .iter()
                .any(|(occur, _)| *occur == Some(Occur::MustNot));
            let includes = clauses
                .iter()
                .any(|(occur, sub)| *occur != Some(Occur::MustNot) && !is_void(sub));
            if excludes && !includes {
                clauses.push((
                    Some(Occur::Must),
                    UserInputAst::Leaf(Box::new(UserInputLeaf::All)),
                ));
            }
            UserInputAst::Clause(clauses)
        }
        UserInputAst::Boost(inner, _) => normalize(*inner),
        leaf @ UserInputAst::Leaf(_) => leaf,
    }
}

/// Whether tantivy will drop `ast` for having no terms: a text without a single token, or a
/// group of such.
fn is_void(ast: &UserInputAst) -> bool {
    match ast {
        UserInputAst::Clause(clauses) => clauses.iter().all(|(_, sub)| is_void(sub)),
        UserInputAst::Boost(inner, _) => is_void(inner),
        UserInputAst::Leaf(leaf) => match leaf.as_ref() {
            UserInputLeaf::Literal(literal) => {
                let Some(mut analyzer) = SCHEMA.tokenizers.get("default") else {
                    return false;
                };
                !analyzer.token_stream(&literal.phrase).advance()
            }
            _ => false,
        },
    }
}

/// Wraps every excluded sub-query that could be a phrase in [`ForwardOnlyQuery`].
///
/// Tantivy 0.27's Exclude probes its exclusion set with `seek_danger(doc)` for each candidate,
/// including candidates behind the set's current document; PhraseScorer asserts that never
/// happens (`target (0) should be greater than or equal to doc (494)`), so `a AND NOT "b c"`
/// panics in debug builds. Terms, `*` and empty queries keep their own scorers, which cope.
fn guard_exclusions(query: Box<dyn Query>) -> Box<dyn Query> {
    let Some(boolean) = query.downcast_ref::<BooleanQuery>() else {
        return query;
    };
    let clauses = boolean
        .clauses()
        .iter()
        .map(|(occur, sub)| {
            let sub = guard_exclusions(sub.box_clone());
            let safe = sub.is::<TermQuery>() || sub.is::<AllQuery>() || sub.is::<EmptyQuery>();
            if *occur == Occur::MustNot && !safe {
                (*occur, Box::new(ForwardOnlyQuery(sub)) as Box<dyn Query>)
            } else {
                (*occur, sub)
            }
        })
        .collect();
    Box::new(BooleanQuery::new(clauses))
}

/// A query whose scorer answers probes behind its current document instead of asserting.
#[derive(Debug)]
struct ForwardOnlyQuery(Box<dyn Query>);

impl Clone for ForwardOnlyQuery {
    fn clone(&self) -> Self {
        ForwardOnlyQuery(self.0.box_clone())
    }
}

impl Query for ForwardOnlyQuery {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(ForwardOnlyWeight(self.0.weight(enable_scoring)?)))
    }
}

/// The weight of [`ForwardOnlyQuery`].
struct ForwardOnlyWeight(Box<dyn Weight>);

impl Weight for ForwardOnlyWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(ForwardOnlyScorer(self.0.scorer(reader, boost)?)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.0.explain(reader, doc)
    }
}

/// Keeps DocSet's default `seek_danger`, which compares with `doc()` and only ever seeks
/// forward, in front of a scorer whose own `seek_danger` does not accept such probes.
struct ForwardOnlyScorer(Box<dyn Scorer>);

impl DocSet for ForwardOnlyScorer {
    fn advance(&mut self) -> DocId {
        self.0.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        let doc = self.0.doc();
        if doc >= target {
            doc
        } else {
            self.0.seek(target)
        }
    }

    fn doc(&self) -> DocId {
        self.0.doc()
    }

    fn size_hint(&self) -> u32 {
        self.0.size_hint()
    }

    fn cost(&self) -> u64 {
        self.0.cost()
    }
}

impl Scorer for ForwardOnlyScorer {
    fn score(&mut self) -> Score {
        self.0.score()
    }
}

/// Builds the index of one column's rows (file order, None = null) into the new directory `dir`.
pub fn build_index<'a>(dir: &Path, values: impl Iterator<Item = Option<&'a str>>) -> Result<u64> {
    let started = Instant::now();
    // create_dir, not create_dir_all: an existing directory is someone else's index.
    std::fs::create_dir(dir)
        .map_err(|e| index_error(dir, format!("cannot create the directory: {e}")))?;
    match build_into(dir, values) {
        Ok(rows) => {
            tracing::debug!(dir = %dir.display(), rows, elapsed = ?started.elapsed(), "built full-text index");
            Ok(rows)
        }
        Err(e) => {
            // What is there is not known complete nor durable; removing it lets a retry start over.
            if let Err(cleanup) = std::fs::remove_dir_all(dir) {
                tracing::warn!(dir = %dir.display(), error = %cleanup, "cannot remove a failed full-text index");
            }
            Err(e)
        }
    }
}

/// The body of [`build_index`], run in the directory it has just created.
fn build_into<'a>(dir: &Path, values: impl Iterator<Item = Option<&'a str>>) -> Result<u64> {
    let fail = |e: tantivy::TantivyError| index_error(dir, e.to_string());
    let directory = MmapDirectory::open(dir).map_err(|e| index_error(dir, e.to_string()))?;
    let index =
        Index::create(directory, SCHEMA.schema.clone(), Default::default()).map_err(fail)?;
    let mut writer = new_writer(&index, DISK_WRITER_BUDGET).map_err(fail)?;
    let rows =
        add_rows(values, |doc| writer.add_document(doc).map(|_| ())).map_err(|e| e.at(dir))?;
    let mut commit = writer.prepare_commit().map_err(fail)?;
    commit.set_payload(&format!("{PAYLOAD_PREFIX}{rows}"));
    commit.commit().map_err(fail)?;
    // Joins the writer's threads and drops its lock file before the final directory sync.
    writer.wait_merging_threads().map_err(fail)?;
    sync_dir(dir)?;
    // The new directory's own entry lives in the parent.
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent)?,
        _ => sync_dir(Path::new("."))?,
    }
    Ok(rows)
}

/// A single-threaded writer that never merges.
///
/// Merging would only rewrite what was just written (the index is built once), and would add
/// background threads and memory; several flushed segments are searched just as well.
fn new_writer(index: &Index, budget: usize) -> tantivy::Result<IndexWriter> {
    let options = IndexWriterOptions::builder()
        .num_worker_threads(1)
        .num_merge_threads(1)
        .memory_budget_per_thread(budget)
        .build();
    let writer = index.writer_with_options(options)?;
    writer.set_merge_policy(Box::new(NoMergePolicy));
    Ok(writer)
}

/// Why adding rows failed, before the caller knows which path to blame.
enum AddError {
    /// A row number past u32::MAX, which the RoaringBitmap results cannot hold.
    TooManyRows,
    /// Tantivy refused a document.
    Tantivy(tantivy::TantivyError),
}

impl AddError {
    fn at(self, path: &Path) -> FullTextError {
        match self {
            AddError::TooManyRows => {
                index_error(path, format!("more than {} rows", u64::from(u32::MAX) + 1))
            }
            AddError::Tantivy(e) => index_error(path, e.to_string()),
        }
    }
}

/// Adds one document per non-null value, tagged with its row number; returns the row count.
fn add_rows<'a>(
    values: impl Iterator<Item = Option<&'a str>>,
    mut add: impl FnMut(TantivyDocument) -> tantivy::Result<()>,
) -> std::result::Result<u64, AddError> {
    let mut rows = 0u64;
    for value in values {
        if rows > u64::from(u32::MAX) {
            return Err(AddError::TooManyRows);
        }
        if let Some(text) = value {
            let mut doc = TantivyDocument::new();
            doc.add_text(SCHEMA.text, text);
            doc.add_u64(SCHEMA.row, rows);
            add(doc).map_err(AddError::Tantivy)?;
        }
        rows += 1;
    }
    Ok(rows)
}

/// Fsyncs a directory so the entries created in it survive a crash.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| index_error(dir, format!("cannot fsync the directory: {e}")))
}

fn index_error(path: &Path, message: impl Into<String>) -> FullTextError {
    FullTextError::Index {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// An opened on-disk index of one segment column.
pub struct SegmentTextIndex {
    path: PathBuf,
    // One searcher for the index's life: it is never written again, so never reloaded.
    searcher: Searcher,
    rows: u64,
}

impl fmt::Debug for SegmentTextIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentTextIndex")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .field("segments", &self.searcher.segment_readers().len())
            .finish()
    }
}

impl SegmentTextIndex {
    /// Opens an index built by build_index.
    pub fn open(dir: &Path) -> Result<Self> {
        let fail = |e: tantivy::TantivyError| index_error(dir, e.to_string());
        let directory = MmapDirectory::open(dir).map_err(|e| index_error(dir, e.to_string()))?;
        let index = Index::open(directory).map_err(fail)?;
        if index.schema() != SCHEMA.schema {
            return Err(index_error(
                dir,
                "not a full-text index of this version (schema differs)",
            ));
        }
        let payload = index.load_metas().map_err(fail)?.payload;
        let rows = payload
            .as_deref()
            .and_then(|p| p.strip_prefix(PAYLOAD_PREFIX))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| {
                index_error(
                    dir,
                    format!("not a full-text index of this version (commit payload {payload:?})"),
                )
            })?;
        // Tantivy checks its files' footers only when asked. An index is opened once per
        // segment and process, so reading it whole here is cheap next to a wrong answer from
        // a flipped byte (a damaged posting list would silently drop matching rows).
        let damaged = index.validate_checksum().map_err(fail)?;
        if !damaged.is_empty() {
            let mut names: Vec<String> = damaged.iter().map(|p| p.display().to_string()).collect();
            names.sort();
            return Err(index_error(
                dir,
                format!("checksum mismatch in {}", names.join(", ")),
            ));
        }
        // Manual: the default policy watches meta.json with a thread, useless for a frozen index.
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(fail)?;
        Ok(SegmentTextIndex {
            path: dir.to_path_buf(),
            searcher: reader.searcher(),
            rows,
        })
    }

    /// The row numbers whose text matches `query`. A row number beyond the rows indexed, or
    /// a panic inside tantivy, is an error of the index (the caller reads the segment
    /// without it), never an answer.
    pub fn search(&self, query: &str) -> Result<RoaringBitmap> {
        let query = compile(query)?;
        let searched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.searcher.search(query.as_ref(), &RowCollector)
        }));
        let matched = match searched {
            Ok(found) => found.map_err(|e| index_error(&self.path, e.to_string()))?,
            Err(_) => return Err(index_error(&self.path, "the search panicked")),
        };
        if let Some(max) = matched.max()
            && u64::from(max) >= self.rows
        {
            return Err(index_error(
                &self.path,
                format!("row {max} matched, but the index has {} rows", self.rows),
            ));
        }
        Ok(matched)
    }

    /// Rows indexed.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    #[cfg(test)]
    fn segment_count(&self) -> usize {
        self.searcher.segment_readers().len()
    }
}

/// Which of `values` match `query`, exactly as an on-disk index of them would answer.
pub fn matches_values<'a>(
    values: impl Iterator<Item = Option<&'a str>>,
    query: &str,
) -> Result<Vec<bool>> {
    // Compiled first so that a bad query fails the same way whatever the batch holds.
    let query = compile(query)?;
    let mut values = values.peekable();
    if values.peek().is_none() {
        return Ok(Vec::new());
    }
    let memory = Path::new(IN_MEMORY);
    let fail = |e: tantivy::TantivyError| index_error(memory, e.to_string());
    // The single-segment writer indexes in this thread: no worker, updater or merge threads
    // per batch, and no 15 MB minimum budget. One segment or several match the same rows.
    // It is #[doc(hidden)] in tantivy 0.27 (Quickwit's API); should an upgrade remove it,
    // new_writer(&index, 15_000_000) gives the same answers at a few milliseconds more a call.
    let mut writer = Index::builder()
        .schema(SCHEMA.schema.clone())
        .single_segment_index_writer::<TantivyDocument>(
            RamDirectory::create(),
            MEMORY_WRITER_BUDGET,
        )
        .map_err(fail)?;
    let rows = add_rows(values, |doc| writer.add_document(doc)).map_err(|e| e.at(memory))?;
    let index = writer.finalize().map_err(fail)?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(fail)?;
    let matched = reader
        .searcher()
        .search(query.as_ref(), &RowCollector)
        .map_err(fail)?;
    let len = usize::try_from(rows)
        .map_err(|_| index_error(memory, format!("{rows} rows do not fit in memory")))?;
    let mut result = vec![false; len];
    for row in &matched {
        // Row numbers come from this batch, so they are below `len`.
        if let Some(slot) = result.get_mut(row as usize) {
            *slot = true;
        }
    }
    Ok(result)
}

/// Collects matches as row numbers read from the `row` fast field.
///
/// DocIds are per segment and their order is the writer's business; the fast field is the
/// only reliable link back to the row.
struct RowCollector;

/// The per-segment half of [`RowCollector`].
struct RowSegmentCollector {
    rows: Column<u64>,
    matched: RoaringBitmap,
    buffer: Vec<Option<u64>>,
    // SegmentCollector::collect cannot fail, so the first bad document waits for merge_fruits.
    bad: Option<String>,
}

impl RowSegmentCollector {
    fn add(&mut self, doc: DocId, row: Option<u64>) {
        match row.map(u32::try_from) {
            Some(Ok(row)) => {
                self.matched.insert(row);
            }
            Some(Err(_)) => {
                self.bad.get_or_insert_with(|| {
                    format!("row number {row:?} of document {doc} exceeds u32::MAX")
                });
            }
            None => {
                self.bad
                    .get_or_insert_with(|| format!("document {doc} has no row number"));
            }
        }
    }
}

impl Collector for RowCollector {
    type Fruit = RoaringBitmap;
    type Child = RowSegmentCollector;

    fn for_segment(
        &self,
        _segment_local_id: u32,
        segment: &SegmentReader,
    ) -> tantivy::Result<RowSegmentCollector> {
        Ok(RowSegmentCollector {
            rows: segment.fast_fields().u64(ROW_FIELD)?,
            matched: RoaringBitmap::new(),
            buffer: Vec::new(),
            bad: None,
        })
    }

    fn requires_scoring(&self) -> bool {
        // Lets tantivy skip BM25 and hand over whole blocks of DocIds.
        false
    }

    fn merge_fruits(
        &self,
        segment_fruits: Vec<std::result::Result<RoaringBitmap, String>>,
    ) -> tantivy::Result<RoaringBitmap> {
        let mut all = RoaringBitmap::new();
        for fruit in segment_fruits {
            all |= fruit.map_err(tantivy::TantivyError::InternalError)?;
        }
        Ok(all)
    }
}

impl SegmentCollector for RowSegmentCollector {
    type Fruit = std::result::Result<RoaringBitmap, String>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let row = self.rows.first(doc);
        self.add(doc, row);
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        // One batched column read per block instead of one lookup per document.
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        buffer.resize(docs.len(), None);
        self.rows.first_vals(docs, &mut buffer);
        for (&doc, &row) in docs.iter().zip(&buffer) {
            self.add(doc, row);
        }
        self.buffer = buffer;
    }

    fn harvest(self) -> Self::Fruit {
        match self.bad {
            Some(message) => Err(message),
            None => Ok(self.matched),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOCAB: [&str; 30] = [
        "error", "warn", "info", "disk", "full", "network", "timeout", "retry", "user", "login",
        "failed", "success", "cpu", "memory", "high", "low", "service", "started", "stopped",
        "node", "alpha", "beta", "gamma", "delta", "request", "response", "cache", "miss", "hit",
        "queue",
    ];

    /// xorshift64*: deterministic, dependency-free randomness for reproducible failures.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn word(&mut self) -> &'static str {
            VOCAB[self.below(VOCAB.len())]
        }
    }

    /// A query with an obvious meaning, rendered to tantivy syntax and evaluated by hand.
    enum Q {
        Term(&'static str),
        Phrase(&'static str, &'static str),
        And(Box<Q>, Box<Q>),
        Or(Box<Q>, Box<Q>),
        Not(Box<Q>),
    }

    impl Q {
        fn eval(&self, tokens: &[&str]) -> bool {
            match self {
                Q::Term(w) => tokens.contains(w),
                Q::Phrase(a, b) => tokens.windows(2).any(|p| p[0] == *a && p[1] == *b),
                Q::And(a, b) => a.eval(tokens) && b.eval(tokens),
                Q::Or(a, b) => a.eval(tokens) || b.eval(tokens),
                Q::Not(a) => !a.eval(tokens),
            }
        }

        fn render(&self) -> String {
            match self {
                Q::Term(w) => w.to_string(),
                Q::Phrase(a, b) => format!("\"{a} {b}\""),
                Q::And(a, b) => format!("{} AND {}", a.operand(), b.operand()),
                Q::Or(a, b) => format!("{} OR {}", a.operand(), b.operand()),
                Q::Not(a) => format!("NOT {}", a.operand()),
            }
        }

        fn operand(&self) -> String {
            match self {
                Q::And(..) | Q::Or(..) => format!("({})", self.render()),
                _ => self.render(),
            }
        }
    }

    fn term(rng: &mut Rng) -> Box<Q> {
        Box::new(Q::Term(rng.word()))
    }

    /// One of the six shapes the brief names.
    fn flat_query(rng: &mut Rng) -> Q {
        match rng.below(6) {
            0 => Q::Term(rng.word()),
            1 => Q::And(term(rng), term(rng)),
            2 => Q::Or(term(rng), term(rng)),
            3 => Q::And(term(rng), Box::new(Q::Not(term(rng)))),
            4 => Q::Phrase(rng.word(), rng.word()),
            _ => Q::Not(term(rng)),
        }
    }

    /// Nested combinations, where tantivy's treatment of inner negative groups shows.
    fn nested_query(rng: &mut Rng, depth: u32) -> Q {
        if depth == 0 || rng.below(4) == 0 {
            return if rng.below(3) == 0 {
                Q::Phrase(rng.word(), rng.word())
            } else {
                Q::Term(rng.word())
            };
        }
        match rng.below(3) {
            0 => Q::And(
                Box::new(nested_query(rng, depth - 1)),
                Box::new(nested_query(rng, depth - 1)),
            ),
            1 => Q::Or(
                Box::new(nested_query(rng, depth - 1)),
                Box::new(nested_query(rng, depth - 1)),
            ),
            _ => Q::Not(Box::new(nested_query(rng, depth - 1))),
        }
    }

    fn random_rows(rng: &mut Rng, n: usize) -> Vec<Option<String>> {
        (0..n)
            .map(|_| match rng.below(20) {
                0 | 1 => None,
                2 => Some(String::new()),
                _ => {
                    let words = 1 + rng.below(8);
                    Some((0..words).map(|_| rng.word()).collect::<Vec<_>>().join(" "))
                }
            })
            .collect()
    }

    fn brute_force(rows: &[Option<String>], q: &Q) -> Vec<bool> {
        rows.iter()
            .map(|row| match row {
                None => false,
                Some(text) => q.eval(&text.split_whitespace().collect::<Vec<_>>()),
            })
            .collect()
    }

    fn bitmap_to_bools(bitmap: &RoaringBitmap, n: usize) -> Vec<bool> {
        let mut out = vec![false; n];
        for row in bitmap {
            out[row as usize] = true;
        }
        out
    }

    fn values(rows: &[Option<String>]) -> impl Iterator<Item = Option<&str>> {
        rows.iter().map(|r| r.as_deref())
    }

    #[test]
    fn index_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SegmentTextIndex>();
        assert_send_sync::<FullTextError>();
    }

    #[test]
    fn random_queries_agree_with_brute_force() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let rows = random_rows(&mut rng, 2_000);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("text.idx");
        assert_eq!(build_index(&dir, values(&rows)).unwrap(), 2_000);
        let index = SegmentTextIndex::open(&dir).unwrap();
        assert_eq!(index.rows(), 2_000);

        let mut queries: Vec<Q> = (0..300).map(|_| flat_query(&mut rng)).collect();
        queries.extend((0..150).map(|_| nested_query(&mut rng, 3)));
        let mut nonempty = 0;
        for q in &queries {
            let text = q.render();
            check_query(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let expected = brute_force(&rows, q);
            let on_disk = bitmap_to_bools(&index.search(&text).unwrap(), rows.len());
            let in_memory = matches_values(values(&rows), &text).unwrap();
            let mut batched = Vec::new();
            for chunk in rows.chunks(333) {
                batched.extend(matches_values(values(chunk), &text).unwrap());
            }
            assert_eq!(on_disk, expected, "on-disk vs brute force for {text}");
            assert_eq!(in_memory, expected, "in-memory vs brute force for {text}");
            assert_eq!(
                batched, expected,
                "batched in-memory vs brute force for {text}"
            );
            if expected.contains(&true) {
                nonempty += 1;
            }
        }
        // Guards against a vacuous pass where every query matches nothing.
        assert!(
            nonempty > queries.len() / 2,
            "only {nonempty} queries matched anything"
        );
    }

    #[test]
    fn negation_nulls_and_empty_strings() {
        let rows = [
            Some("Error: disk FULL"),
            None,
            Some(""),
            Some("warn disk"),
            Some("full disk"),
        ];
        let cases: [(&str, [bool; 5]); 16] = [
            ("error", [true, false, false, false, false]),
            ("ERROR", [true, false, false, false, false]),
            ("NOT error", [false, false, true, true, true]),
            ("-error", [false, false, true, true, true]),
            ("-error -warn", [false, false, true, false, true]),
            ("NOT (error OR warn)", [false, false, true, false, true]),
            ("warn OR NOT disk", [false, false, true, true, false]),
            ("disk -warn", [true, false, false, false, true]),
            ("*", [true, false, true, true, true]),
            ("\"disk full\"", [true, false, false, false, false]),
            ("\"disk fu\"*", [true, false, false, false, false]),
            ("", [false; 5]),
            // Tokenizes to nothing, so tantivy ignores it and only the exclusion is left.
            ("!! -warn", [true, false, true, false, true]),
            // Excluded phrases tripped a debug assertion in tantivy's PhraseScorer.
            ("NOT \"disk full\"", [false, false, true, true, true]),
            (
                "disk AND NOT \"disk full\"",
                [false, false, false, true, true],
            ),
            (
                "disk -(\"full disk\" OR \"disk full\")",
                [false, false, false, true, false],
            ),
        ];
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        assert_eq!(build_index(&dir, rows.iter().copied()).unwrap(), 5);
        let index = SegmentTextIndex::open(&dir).unwrap();
        for (query, expected) in cases {
            assert_eq!(
                matches_values(rows.iter().copied(), query).unwrap(),
                expected,
                "in memory: {query:?}"
            );
            assert_eq!(
                bitmap_to_bools(&index.search(query).unwrap(), 5),
                expected,
                "on disk: {query:?}"
            );
        }
        assert!(
            matches_values(std::iter::empty(), "error")
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            matches_values([None, None].into_iter(), "NOT error").unwrap(),
            [false, false]
        );
    }

    #[test]
    fn bad_queries_are_query_errors_naming_the_query() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        build_index(&dir, [Some("row 3")].into_iter()).unwrap();
        let index = SegmentTextIndex::open(&dir).unwrap();
        let queries = [
            "error AND (disk",
            "\"unclosed",
            "error AND",
            "row:3",
            "text:error",
            "[a TO c]",
            "/err.*/",
            "\"erro\"*",
        ];
        for query in queries {
            for result in [
                check_query(query),
                index.search(query).map(|_| ()),
                matches_values([Some("row 3")].into_iter(), query).map(|_| ()),
            ] {
                match result {
                    Err(FullTextError::Query(message)) => {
                        assert!(
                            message.contains(&format!("{query:?}")),
                            "{message} does not quote {query:?}"
                        )
                    }
                    other => panic!("{query:?} gave {other:?}"),
                }
            }
        }
        let message = check_query("error AND (disk").unwrap_err().to_string();
        assert!(
            message.starts_with("invalid full-text query: syntax error"),
            "{message}"
        );
    }

    /// Copies the files of `from` into a new directory `to`.
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }

    #[test]
    fn a_flipped_byte_anywhere_is_an_index_error_or_the_right_answer() {
        let mut rng = Rng(0x51ED_2701_8A3C_44B9);
        let rows = random_rows(&mut rng, 2_000);
        let tmp = tempfile::tempdir().unwrap();
        let good = tmp.path().join("good");
        build_index(&good, values(&rows)).unwrap();
        let queries: Vec<String> = (0..6).map(|_| flat_query(&mut rng).render()).collect();
        let index = SegmentTextIndex::open(&good).unwrap();
        let expected: Vec<RoaringBitmap> =
            queries.iter().map(|q| index.search(q).unwrap()).collect();
        drop(index);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&good)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(files.len() > 3, "{files:?}");
        let (mut tried, mut refused) = (0, 0);
        for file in &files {
            let len = std::fs::metadata(file).unwrap().len();
            if len == 0 {
                continue;
            }
            let name = file.file_name().unwrap();
            let mut spots: Vec<u64> = (0..12).map(|i| i * len / 12).collect();
            spots.push(len - 1);
            spots.dedup();
            for spot in spots {
                let dir = tmp.path().join(format!("flip-{tried}"));
                copy_dir(&good, &dir);
                let target = dir.join(name);
                let mut bytes = std::fs::read(&target).unwrap();
                bytes[spot as usize] ^= 0x10;
                std::fs::write(&target, &bytes).unwrap();
                tried += 1;
                // What a query must see: an error (the segment is then read without the
                // index), a row count the caller refuses, or the undamaged answers.
                let outcome = std::panic::catch_unwind(|| {
                    let index = SegmentTextIndex::open(&dir)?;
                    if index.rows() != 2_000 {
                        return Ok(None);
                    }
                    queries
                        .iter()
                        .map(|q| index.search(q))
                        .collect::<Result<Vec<_>>>()
                        .map(Some)
                });
                match outcome {
                    Err(_) => panic!("{name:?} byte {spot}: panicked"),
                    Ok(Err(FullTextError::Index { .. })) | Ok(Ok(None)) => refused += 1,
                    Ok(Err(e)) => panic!("{name:?} byte {spot}: {e}"),
                    Ok(Ok(Some(found))) => {
                        assert_eq!(found, expected, "{name:?} byte {spot}: a wrong answer")
                    }
                }
                std::fs::remove_dir_all(&dir).unwrap();
            }
        }
        // Most flips land in checksummed segment files; all of those must be caught.
        assert!(
            refused * 2 > tried,
            "only {refused} of {tried} flips refused"
        );
    }

    #[test]
    fn open_missing_or_foreign_dir_is_index_error() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        match SegmentTextIndex::open(&missing) {
            Err(FullTextError::Index { path, message }) => {
                assert_eq!(path, missing);
                assert!(!message.is_empty());
            }
            other => panic!("{other:?}"),
        }
        // An existing directory is never built over.
        match build_index(tmp.path(), [Some("x")].into_iter()) {
            Err(FullTextError::Index { path, .. }) => assert_eq!(path, tmp.path()),
            other => panic!("{other:?}"),
        }
        // Nor is an empty directory mistaken for an index.
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(matches!(
            SegmentTextIndex::open(&empty),
            Err(FullTextError::Index { .. })
        ));
    }

    #[test]
    fn empty_and_all_null_columns() {
        let tmp = tempfile::tempdir().unwrap();
        let none = tmp.path().join("none");
        assert_eq!(build_index(&none, std::iter::empty()).unwrap(), 0);
        let index = SegmentTextIndex::open(&none).unwrap();
        assert_eq!(index.rows(), 0);
        assert!(index.search("NOT x").unwrap().is_empty());
        let nulls = tmp.path().join("nulls");
        assert_eq!(
            build_index(&nulls, [None, None, None].into_iter()).unwrap(),
            3
        );
        let index = SegmentTextIndex::open(&nulls).unwrap();
        assert_eq!(index.rows(), 3);
        assert!(index.search("*").unwrap().is_empty());
    }

    /// Rows long and distinct enough to overflow the 32 MB writer budget several times.
    fn big_row(row: u64) -> Option<String> {
        if row.is_multiple_of(17) {
            return None;
        }
        let mut text = format!("r{row} w{} common", row % 1000);
        for i in 0..12 {
            text.push_str(&format!(" t{}", (row * 7 + i * 131) % 50_000));
        }
        Some(text)
    }

    #[test]
    fn large_index_spans_several_segments() {
        const N: u64 = 300_000;
        let rows: Vec<Option<String>> = (0..N).map(big_row).collect();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("big");
        let started = Instant::now();
        assert_eq!(
            build_index(&dir, rows.iter().map(|r| r.as_deref())).unwrap(),
            N
        );
        let built = started.elapsed();
        let index = SegmentTextIndex::open(&dir).unwrap();
        let segments = index.segment_count();
        let bytes: u64 = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().metadata().unwrap().len())
            .sum();
        println!("build_index of {N} rows: {built:?}, {segments} segments, {bytes} bytes");
        assert!(segments > 1, "expected several segments, got {segments}");

        for row in [1u64, 2, 12_345, 99_999, 150_001, N - 1] {
            let expected: RoaringBitmap = if big_row(row).is_some() {
                [row as u32].into_iter().collect()
            } else {
                RoaringBitmap::new()
            };
            assert_eq!(
                index.search(&format!("r{row}")).unwrap(),
                expected,
                "r{row}"
            );
        }
        let w7: RoaringBitmap = (0..N)
            .filter(|r| r % 1000 == 7 && r % 17 != 0)
            .map(|r| r as u32)
            .collect();
        assert_eq!(index.search("w7").unwrap(), w7);
        let all: RoaringBitmap = (0..N).filter(|r| r % 17 != 0).map(|r| r as u32).collect();
        let started = Instant::now();
        assert_eq!(index.search("common").unwrap(), all);
        println!(
            "search matching {} rows: {:?}",
            all.len(),
            started.elapsed()
        );
        let mut not_w7 = all.clone();
        not_w7 -= &w7;
        assert_eq!(index.search("NOT w7").unwrap(), not_w7);
        assert_eq!(index.search("common AND NOT w7").unwrap(), not_w7);
    }

    #[test]
    fn matches_values_timing() {
        let mut rng = Rng(42);
        let rows = random_rows(&mut rng, 8_192);
        let rounds = if cfg!(debug_assertions) { 2 } else { 30 };
        for n in [rows.len(), 10] {
            let batch = &rows[..n];
            let mut times: Vec<_> = (0..rounds)
                .map(|_| {
                    let started = Instant::now();
                    let matched =
                        matches_values(values(batch), "error AND NOT \"disk full\"").unwrap();
                    assert_eq!(matched.len(), n);
                    started.elapsed()
                })
                .collect();
            times.sort();
            println!(
                "matches_values of {n} rows: min {:?}, median {:?}",
                times[0],
                times[times.len() / 2]
            );
        }
    }
}
