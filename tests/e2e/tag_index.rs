//! The tag index in each segment's footer: tag predicates (`=`, `IN`, `<>`, `NOT IN`,
//! `LIKE 'prefix%'`) answer exactly what the rows hold, in segments and memory alike, and a
//! value the page statistics cannot rule out is found by reading one granule, not the file.

use std::collections::BTreeMap;

use crate::common::{Server, data_dir};

/// 2024-01-01T00:00:00Z.
const START: i64 = 1_704_067_200_000_000_000;

/// One row's tags: host, kind, region (None: the line has no region tag).
type Tags = (String, String, Option<String>);

/// Every host has kinds `a` and `z` (so every page's kind statistics span a..z); only host
/// h042 also has kind `m`. Region follows the host; every tenth host has none.
fn rows() -> Vec<(Tags, i64)> {
    let mut out = Vec::new();
    for h in 0..100 {
        let host = format!("h{h:03}");
        let region = (h % 10 != 9).then(|| format!("r{}", h % 7));
        let mut kinds = vec![("a", 300), ("z", 300)];
        if h == 42 {
            kinds.push(("m", 50));
        }
        for (kind, n) in kinds {
            for i in 0..n {
                out.push((
                    (host.clone(), kind.to_string(), region.clone()),
                    START + i * 1_000_000_000,
                ));
            }
        }
    }
    out
}

fn line_protocol(rows: &[(Tags, i64)]) -> String {
    let mut body = String::new();
    for ((host, kind, region), t) in rows {
        let region = region
            .as_ref()
            .map_or(String::new(), |r| format!(",region={r}"));
        body.push_str(&format!("m,host={host},kind={kind}{region} v=1 {t}\n"));
    }
    body
}

/// The predicates, each with the brute-force test of a row.
#[allow(clippy::type_complexity)]
fn predicates() -> Vec<(&'static str, Box<dyn Fn(&Tags) -> bool>)> {
    vec![
        ("kind = 'm'", Box::new(|t: &Tags| t.1 == "m")),
        ("kind = 'b'", Box::new(|t: &Tags| t.1 == "b")),
        ("kind IN ('m', 'b')", Box::new(|t: &Tags| t.1 == "m")),
        ("host <> 'h001'", Box::new(|t: &Tags| t.0 != "h001")),
        (
            "host NOT IN ('h001', 'h042')",
            Box::new(|t: &Tags| t.0 != "h001" && t.0 != "h042"),
        ),
        (
            "host LIKE 'h04%'",
            Box::new(|t: &Tags| t.0.starts_with("h04")),
        ),
        (
            "host LIKE 'h0_2%'",
            Box::new(|t: &Tags| t.0.len() >= 4 && t.0.starts_with("h0") && &t.0[3..4] == "2"),
        ),
        (
            "region = 'r3'",
            Box::new(|t: &Tags| t.2.as_deref() == Some("r3")),
        ),
        (
            "region <> 'r3'",
            Box::new(|t: &Tags| t.2.as_deref().is_some_and(|r| r != "r3")),
        ),
        ("region IS NULL", Box::new(|t: &Tags| t.2.is_none())),
        (
            "kind = 'm' AND region = 'r0'",
            Box::new(|t: &Tags| t.1 == "m" && t.2.as_deref() == Some("r0")),
        ),
        (
            "region IN ('r1', 'r2') AND host LIKE 'h0%'",
            Box::new(|t: &Tags| {
                matches!(t.2.as_deref(), Some("r1" | "r2")) && t.0.starts_with("h0")
            }),
        ),
    ]
}

/// The rows a segment scan looked at after its indexes chose them, whichever reader the plan
/// took: the Parquet reader counts them as pruned or matched by the pushed-down filter, the
/// scan of decoded columns (`DecodedSegmentExec`) as selected.
pub(crate) fn rows_looked_at(plan: &str) -> f64 {
    metric(plan, "pushdown_rows_pruned")
        + metric(plan, "pushdown_rows_matched")
        + metric(plan, "rows_selected")
}

/// A count metric of an `EXPLAIN ANALYZE` plan (summed over operators), as DataFusion prints
/// it (`1.02 K`).
pub(crate) fn metric(plan: &str, name: &str) -> f64 {
    let mut total = 0.0;
    for part in plan.split(&format!("{name}=")).skip(1) {
        let text: String = part
            .chars()
            .take_while(|c| *c != ',' && *c != ']')
            .collect();
        let mut words = text.split_whitespace();
        let n: f64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0.0);
        let scale = match words.next() {
            Some("K") => 1e3,
            Some("M") => 1e6,
            Some("B") => 1e9,
            _ => 1.0,
        };
        total += n * scale;
    }
    total
}

async fn explain(s: &Server, sql: &str) -> String {
    let c = s.pg().await;
    c.query(&format!("EXPLAIN ANALYZE {sql}"), &[])
        .await
        .expect("explain")
        .iter()
        .map(|r| r.get::<_, String>(1))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_predicates_use_the_segment_tag_index_and_match_a_brute_force_scan() {
    let dir = data_dir();
    let mut s = Server::start_with(dir.path(), &["--compaction", "false"]);
    let mut all = rows();
    assert_eq!(s.write_lp(line_protocol(&all)).await.0, 204);
    // A clean stop flushes: the rows are in one segment, with its tag index.
    assert_eq!(s.stop(), Some(0));
    s.restart();
    // Rows still in memory are answered too: a later hour of kind m on another host.
    let later: Vec<(Tags, i64)> = (0..20)
        .map(|i| {
            (
                ("h007".to_string(), "m".to_string(), Some("r0".to_string())),
                START + 3_600_000_000_000 + i,
            )
        })
        .collect();
    assert_eq!(s.write_lp(line_protocol(&later)).await.0, 204);
    all.extend(later);

    let c = s.pg().await;
    for (predicate, test) in predicates() {
        let want = all.iter().filter(|(t, _)| test(t)).count() as i64;
        let sql = format!("SELECT count(*) FROM m WHERE {predicate}");
        let got: i64 = c.query_one(&sql, &[]).await.expect(&sql).get(0);
        assert_eq!(got, want, "{sql}");
        // The same rows by value, not only by count.
        let sql = format!(
            "SELECT count(DISTINCT host || '/' || kind || '/' || coalesce(region, '-')) FROM m WHERE {predicate}"
        );
        let got: i64 = c.query_one(&sql, &[]).await.expect(&sql).get(0);
        let mut series: BTreeMap<String, ()> = BTreeMap::new();
        for (t, _) in all.iter().filter(|(t, _)| test(t)) {
            series.insert(
                format!("{}/{}/{}", t.0, t.1, t.2.as_deref().unwrap_or("-")),
                (),
            );
        }
        assert_eq!(got, series.len() as i64, "{sql}");
    }

    // Through the cache of decoded columns, then (with the cache off) the Parquet reader.
    assert_scans_read_what_the_index_selects(&s, "DecodedSegmentExec").await;
    assert_eq!(s.stop(), Some(0));
    let s = Server::start_with(
        dir.path(),
        &["--compaction", "false", "--decoded-cache-bytes", "0"],
    );
    assert_scans_read_what_the_index_selects(&s, "DataSourceExec").await;
}

/// A scan for a tag value reads the granules the tag index names, through `reader`.
async fn assert_scans_read_what_the_index_selects(s: &Server, reader: &str) {
    // Kind `m` is inside every page's a..z statistics; the index finds its one or two
    // granules (1,024 rows each) among the file's 60,050 rows (and the later rows of kind m).
    let plan = explain(s, "SELECT count(*) FROM m WHERE kind = 'm'").await;
    assert!(plan.contains(reader), "{plan}");
    let looked_at = rows_looked_at(&plan);
    assert!(
        (50.0..=3.0 * 1024.0 + 20.0).contains(&looked_at),
        "the scan should have read the granules of kind m only ({looked_at} rows):\n{plan}"
    );
    // A value no segment holds: the segment is not read at all.
    let plan = explain(s, "SELECT count(*) FROM m WHERE kind = 'b'").await;
    assert!(
        !plan.contains(".parquet"),
        "the tag index rules the segment out:\n{plan}"
    );
    // Without a tag predicate the whole file is read (the metric means what it says).
    let plan = explain(s, "SELECT count(*) FROM m WHERE v > 0").await;
    let looked_at = rows_looked_at(&plan);
    assert!(looked_at >= 60_000.0, "{looked_at} rows:\n{plan}");
}
