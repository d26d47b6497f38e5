//! What the query crate's tests share: an engine over a table in a temporary directory, a
//! deterministic random generator, sessions without one of Eddy's plan rules (the oracle a
//! rule is checked against), and comparison of answers.

use datafusion::arrow::array::{Array, Float64Array, RecordBatch};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::execution::session_state::SessionStateBuilder;
use eddy_ingest::Ingest;
use eddy_storage::{ColumnDef, ColumnKind, Db, StorageConfig, TableDef};

use crate::continuous::ViewRegistry;
use crate::{QueryEngine, QuerySession};

/// A deterministic generator, so a failure can be replayed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An engine over a new data directory `dir` holding table `cpu` with `columns`.
pub(crate) async fn engine(
    dir: &std::path::Path,
    columns: &[(&str, ColumnKind)],
) -> (Db, Ingest, QueryEngine) {
    engine_with(StorageConfig::new(dir), columns).await
}

/// [`engine`] with a storage configuration of the test's own.
pub(crate) async fn engine_with(
    config: StorageConfig,
    columns: &[(&str, ColumnKind)],
) -> (Db, Ingest, QueryEngine) {
    let db = Db::open(config).expect("open");
    let def = TableDef {
        id: 0,
        name: "cpu".into(),
        columns: columns
            .iter()
            .map(|(name, kind)| ColumnDef::new(*name, *kind))
            .collect(),
        retention_ns: None,
    };
    db.catalog().create_table(def, false).expect("create");
    let views = ViewRegistry::open(db.clone()).await.expect("views");
    let ingest = Ingest::new(db.clone(), views.clone());
    let engine = QueryEngine::open(ingest.clone(), views, 1 << 30).expect("engine");
    (db, ingest, engine)
}

/// A session planning without the physical optimizer rule `rule`: the oracle it is
/// checked against.
pub(crate) fn session_without(engine: &QueryEngine, rule: &str) -> QuerySession {
    engine.session_with(|state| {
        let rules = state
            .physical_optimizers()
            .iter()
            .filter(|r| r.name() != rule)
            .cloned()
            .collect();
        *state = SessionStateBuilder::new_from_existing(state.clone())
            .with_physical_optimizer_rules(rules)
            .build();
    })
}

/// The text of `EXPLAIN sql`.
pub(crate) async fn plan_text(session: &QuerySession, sql: &str) -> String {
    let batches = session
        .query(&format!("EXPLAIN {sql}"))
        .await
        .expect("explain");
    let mut text = String::new();
    for b in &batches {
        for c in b.columns() {
            let f = ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()).unwrap();
            for i in 0..c.len() {
                text.push_str(&f.value(i).to_string());
                text.push('\n');
            }
        }
    }
    text
}

/// Rows as text, floats apart (summed in another order, they may differ in the last bits).
pub(crate) fn rows(batches: &[RecordBatch]) -> Vec<(Vec<String>, Vec<Option<f64>>)> {
    let mut out = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            let mut text = Vec::new();
            let mut floats = Vec::new();
            for c in b.columns() {
                if let Some(f) = c.as_any().downcast_ref::<Float64Array>() {
                    floats.push((!f.is_null(i)).then(|| f.value(i)));
                } else {
                    let f = ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()).unwrap();
                    text.push(f.value(i).to_string());
                }
            }
            out.push((text, floats));
        }
    }
    out.sort_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| {
            a.1.iter()
                .map(|f| f.map(f64::to_bits))
                .cmp(b.1.iter().map(|f| f.map(f64::to_bits)))
        })
    });
    out
}

/// Asserts that `got` and `want` hold the same rows in any order (floats within 1e-9,
/// relative); `want` must not be empty.
pub(crate) fn assert_same(sql: &str, got: &[RecordBatch], want: &[RecordBatch]) {
    let (got, want) = (rows(got), rows(want));
    assert_eq!(got.len(), want.len(), "row count of {sql}");
    assert!(!want.is_empty(), "no rows from {sql}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, w.0, "{sql}");
        for (a, b) in g.1.iter().zip(&w.1) {
            match (a, b) {
                (Some(a), Some(b)) => assert!(
                    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
                    "{sql}: {a} against {b} in {:?}",
                    g.0
                ),
                _ => assert_eq!(a, b, "{sql}: {:?}", g.0),
            }
        }
    }
}
