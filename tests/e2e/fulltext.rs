//! Full-text search: `CREATE INDEX ... USING fulltext (column)` and `matches(column, 'query')`
//! answer exactly what a brute-force scan of random text answers, for segments indexed after
//! the fact, at flush and at compaction, and for rows still in memory; a rare word is found by
//! reading the rows the index names, not the segment; bad input gets clear errors.

use std::collections::BTreeSet;

use crate::common::{Server, data_dir};

/// 2024-01-01T00:00:00Z.
const START: i64 = 1_704_067_200_000_000_000;

const WORDS: [&str; 16] = [
    "error", "disk", "full", "warning", "timeout", "retry", "network", "down", "up", "cpu",
    "memory", "high", "low", "ok", "failed", "node",
];

/// A small deterministic generator (no dependency, same text every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Row `n`'s message (None: the line has no msg field).
fn message(rng: &mut Lcg, n: u64) -> Option<String> {
    if rng.below(20) == 0 {
        return None;
    }
    let len = 1 + rng.below(8);
    let mut words: Vec<&str> = (0..len)
        .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
        .collect();
    // A rare word in a few rows, for the index-use check.
    if n % 997 == 5 {
        words.push("zyzzyva");
    }
    Some(words.join(" "))
}

/// Rows `from..to` as line protocol, and the model.
fn rows(
    rng: &mut Lcg,
    from: u64,
    to: u64,
    model: &mut Vec<(u64, String, Option<String>)>,
) -> String {
    let mut body = String::new();
    for n in from..to {
        let host = format!("h{}", n % 4);
        let msg = message(rng, n);
        let t = START + n as i64 * 1_000_000_000;
        match &msg {
            Some(m) => body.push_str(&format!("logs,host={host} n={n}i,msg=\"{m}\" {t}\n")),
            None => body.push_str(&format!("logs,host={host} n={n}i {t}\n")),
        }
        model.push((n, host, msg));
    }
    body
}

/// The brute-force reading of the query forms the test uses.
#[derive(Debug, Clone)]
enum Q {
    Term(&'static str),
    And(&'static str, &'static str),
    Or(&'static str, &'static str),
    AndNot(&'static str, &'static str),
    Phrase(&'static str, &'static str),
}

impl Q {
    fn text(&self) -> String {
        match self {
            Q::Term(a) => a.to_string(),
            Q::And(a, b) => format!("{a} AND {b}"),
            Q::Or(a, b) => format!("{a} OR {b}"),
            Q::AndNot(a, b) => format!("{a} AND NOT {b}"),
            Q::Phrase(a, b) => format!("\"{a} {b}\""),
        }
    }

    fn matches(&self, text: Option<&str>) -> bool {
        let Some(text) = text else { return false };
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let has = |w: &str| tokens.contains(&w);
        match self {
            Q::Term(a) => has(a),
            Q::And(a, b) => has(a) && has(b),
            Q::Or(a, b) => has(a) || has(b),
            Q::AndNot(a, b) => has(a) && !has(b),
            Q::Phrase(a, b) => tokens.windows(2).any(|w| w[0] == *a && w[1] == *b),
        }
    }
}

fn queries(rng: &mut Lcg, n: usize) -> Vec<Q> {
    let mut w = || WORDS[rng.below(WORDS.len() as u64) as usize];
    let mut out = vec![
        Q::Term("zyzzyva"),
        Q::Phrase("disk", "full"),
        Q::And("error", "disk"),
    ];
    for i in 0..n {
        out.push(match i % 5 {
            0 => Q::Term(w()),
            1 => Q::And(w(), w()),
            2 => Q::Or(w(), w()),
            3 => Q::AndNot(w(), w()),
            _ => Q::Phrase(w(), w()),
        });
    }
    out
}

async fn check_all(s: &Server, model: &[(u64, String, Option<String>)], qs: &[Q], stage: &str) {
    let c = s.pg().await;
    for q in qs {
        let want: BTreeSet<i64> = model
            .iter()
            .filter(|r| q.matches(r.2.as_deref()))
            .map(|r| r.0 as i64)
            .collect();
        let sql = format!("SELECT n FROM logs WHERE matches(msg, '{}')", q.text());
        let got: BTreeSet<i64> = c
            .query(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{stage}: {sql}: {e}"))
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got, want, "{stage}: {sql}");
        // Combined with another predicate.
        let want_h1 = model
            .iter()
            .filter(|r| r.1 == "h1" && q.matches(r.2.as_deref()))
            .count() as i64;
        let sql = format!(
            "SELECT count(*) FROM logs WHERE host = 'h1' AND matches(msg, '{}') AND n >= 0",
            q.text()
        );
        let got: i64 = c.query_one(&sql, &[]).await.expect(&sql).get(0);
        assert_eq!(got, want_h1, "{stage}: {sql}");
    }
}

async fn wait_indexed(s: &Server) {
    let c = s.pg().await;
    for _ in 0..300 {
        let row = c
            .query_one(
                "SELECT segments, segments_indexed FROM eddy_indexes WHERE index_name = 'logs_msg'",
                &[],
            )
            .await
            .expect("eddy_indexes");
        let (all, built): (i64, i64) = (row.get(0), row.get(1));
        if all > 0 && all == built {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("full-text indexes were not built within 30 s");
}

/// The scan for the rare word reads the rows the segments' indexes name, not the segments.
async fn assert_rare_word_read_by_index(s: &Server) {
    let c = s.pg().await;
    let plan: String = c
        .query(
            "EXPLAIN ANALYZE SELECT count(*) FROM logs WHERE matches(msg, 'zyzzyva') AND n >= 0",
            &[],
        )
        .await
        .expect("explain")
        .iter()
        .map(|r| r.get::<_, String>(1))
        .collect::<Vec<_>>()
        .join("\n");
    let looked_at = crate::tag_index::rows_looked_at(&plan);
    assert!(
        looked_at < 100.0,
        "the segments' full-text indexes should have named a few rows ({looked_at} read):\n{plan}"
    );
}

async fn sqlstate(s: &Server, sql: &str) -> (String, String) {
    let c = s.pg().await;
    let e = c.batch_execute(sql).await.expect_err(sql);
    let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
    (db.code().code().to_string(), db.message().to_string())
}

fn fts_dirs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("data")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "fts") {
                out.push(p);
            } else if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_agrees_with_a_brute_force_scan_in_segments_and_memory() {
    let dir = data_dir();
    let mut s = Server::start_with(dir.path(), &["--compaction", "false"]);
    let mut rng = Lcg(42);
    let mut model = Vec::new();
    let qs = queries(&mut Lcg(7), 40);

    // A segment written before the index exists: indexed after the fact.
    assert_eq!(s.write_lp(rows(&mut rng, 0, 1500, &mut model)).await.0, 204);
    // matches() works without any index (every row is checked).
    check_all(&s, &model, &qs[..6], "no index, memory").await;
    assert_eq!(s.stop(), Some(0));
    s.restart();
    s.psql("CREATE INDEX logs_msg ON logs USING fulltext (msg)");
    wait_indexed(&s).await;
    // A segment flushed while the index exists.
    assert_eq!(
        s.write_lp(rows(&mut rng, 1500, 3000, &mut model)).await.0,
        204
    );
    assert_eq!(s.stop(), Some(0));
    s.restart();
    wait_indexed(&s).await;
    // Rows only in memory are searched too.
    assert_eq!(
        s.write_lp(rows(&mut rng, 3000, 3600, &mut model)).await.0,
        204
    );
    check_all(&s, &model, &qs, "two indexed segments and memory").await;

    // The rare word: the scan reads the rows the index names, not the segments.
    assert_rare_word_read_by_index(&s).await;

    // Errors name what is wrong.
    let (code, msg) = sqlstate(
        &s,
        "SELECT count(*) FROM logs WHERE matches(msg, 'error AND (')",
    )
    .await;
    assert_eq!(code, "22023", "{msg}");
    assert!(msg.contains("error AND ("), "{msg}");
    let (code, msg) = sqlstate(&s, "CREATE INDEX bad ON logs USING fulltext (n)").await;
    assert!(msg.contains("text column"), "{code}: {msg}");
    let (code, msg) = sqlstate(&s, "CREATE INDEX bad ON logs (msg)").await;
    assert_eq!(code, "0A000", "{msg}");
    let (code, msg) = sqlstate(&s, "CREATE INDEX bad ON nope USING fulltext (msg)").await;
    assert_eq!(code, "42P01", "{msg}");
    let (code, msg) = sqlstate(&s, "CREATE INDEX logs_msg ON logs USING fulltext (msg)").await;
    assert_eq!(code, "42P07", "{msg}");
    s.psql("CREATE INDEX IF NOT EXISTS logs_msg ON logs USING fulltext (msg)");
    let (code, msg) = sqlstate(&s, "DROP INDEX nope").await;
    assert_eq!(code, "42704", "{msg}");
    s.psql("DROP INDEX IF EXISTS nope");

    // Compaction merges the two segments into one, and the indexer indexes it.
    assert_eq!(s.stop(), Some(0));
    let mut s = Server::start_with(dir.path(), &["--compaction-quiet-ms", "0"]);
    s.wait_for(
        "SELECT count(*) FROM eddy_segments WHERE table_name = 'logs'",
        1,
        60,
    )
    .await;
    wait_indexed(&s).await;
    check_all(&s, &model, &qs, "compacted").await;

    // DROP INDEX removes the files; queries still answer (without an index).
    assert!(!fts_dirs(dir.path()).is_empty());
    s.psql("DROP INDEX logs_msg");
    let mut gone = false;
    for _ in 0..100 {
        if fts_dirs(dir.path()).is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "index files left: {:?}", fts_dirs(dir.path()));
    check_all(&s, &model, &qs[..6], "dropped").await;
    s.assert_no_panic();
    let _ = s.stop();
}

/// The files of every built full-text index (not the unfinished `.tmp` ones).
fn index_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for root in fts_dirs(dir) {
        for index in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(index.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if f.path().is_file() {
                    out.push(f.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// Indexes are accelerators: one killed half-way through its build, or with a flipped byte in
/// any of its files, changes no answer and fails no query. The damaged index is found by its
/// checksums, dropped, and built again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_unfinished_index_never_changes_an_answer() {
    let dir = data_dir();
    let logs = tempfile::tempdir().expect("log dir");
    let log = logs.path().join("eddy.log");
    let mut s = Server::start_logged(dir.path(), &["--compaction", "false"], &log);
    let mut rng = Lcg(99);
    let mut model = Vec::new();
    let qs = queries(&mut Lcg(3), 10);
    for chunk in 0..4 {
        let body = rows(&mut rng, chunk * 10_000, (chunk + 1) * 10_000, &mut model);
        assert_eq!(s.write_lp(body).await.0, 204);
    }
    assert_eq!(s.stop(), Some(0));
    s.restart();

    // kill -9 while the indexer builds (40,000 rows take a few hundred milliseconds).
    s.psql("CREATE INDEX logs_msg ON logs USING fulltext (msg)");
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    s.kill9();
    s.restart();
    check_all(&s, &model, &qs, "after kill -9 during the build").await;
    wait_indexed(&s).await;
    for root in fts_dirs(dir.path()) {
        for entry in std::fs::read_dir(&root).expect("fts").flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            assert!(!name.ends_with(".tmp"), "unfinished build left: {name}");
        }
    }
    check_all(&s, &model, &qs, "built after the crash").await;
    assert_rare_word_read_by_index(&s).await;

    // A flipped byte in every file of the index.
    assert_eq!(s.stop(), Some(0));
    let files = index_files(dir.path());
    assert!(files.len() > 3, "{files:?}");
    for f in &files {
        let mut bytes = std::fs::read(f).expect("read");
        if bytes.is_empty() {
            continue;
        }
        let at = bytes.len() / 2;
        bytes[at] ^= 0x20;
        std::fs::write(f, &bytes).expect("write");
    }
    s.restart();
    check_all(&s, &model, &qs, "damaged index").await;
    assert!(
        s.log_text().contains("damaged full-text index"),
        "the damage was not logged:\n{}",
        s.log_text()
    );
    // Dropped by the first query that opened it, then built again by the indexer, and used.
    wait_indexed(&s).await;
    check_all(&s, &model, &qs, "rebuilt after damage").await;
    assert_rare_word_read_by_index(&s).await;
    s.assert_no_panic();
    let _ = s.stop();
}
