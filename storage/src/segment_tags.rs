//! The tag index of a segment: for each tag column, a roaring bitmap per value of the
//! granules (runs of [`TAG_INDEX_GRANULE_ROWS`] rows in file order) that hold it.
//!
//! It is built while the segment is written (at flush and at compaction) and stored in the
//! segment's own Parquet footer under the key [`TAG_INDEX_KEY`], so it is as durable and as
//! verified as the rows, needs no file of its own and goes wherever the segment goes. Other
//! Parquet readers ignore the key.
//!
//! Page statistics already narrow a lookup on the leading tag (rows are sorted by it); the
//! index answers what they cannot: a later tag (`region = 'x'` in a file sorted by host),
//! `<>` and `NOT IN`, and `LIKE 'prefix%'`. Granules, not rows, keep the index small (a
//! series that fills a thousand rows costs one bit) while still letting the Parquet reader
//! skip pages inside a row group.

use std::collections::HashMap;
use std::ops::Range;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use roaring::RoaringBitmap;

use crate::limits::{TAG_INDEX_BYTES_MAX, TAG_INDEX_GRANULE_ROWS, TAG_INDEX_VALUES_MAX};
use crate::schema::TableSchema;

/// The Parquet footer key that holds a segment's tag index.
pub const TAG_INDEX_KEY: &str = "eddy.tag_index";

/// Version of the encoded index; an unknown one is ignored (the scan reads without it).
const TAG_INDEX_VERSION: u32 = 1;

/// A condition on one tag column that the index can answer by granules.
#[derive(Debug, Clone, PartialEq)]
pub enum TagPredicate {
    /// `tag = v` or `tag IN (v, ...)`.
    In {
        /// The tag column.
        column: String,
        /// Accepted values.
        values: Vec<String>,
    },
    /// `tag <> v` or `tag NOT IN (v, ...)` (a null tag matches neither).
    NotIn {
        /// The tag column.
        column: String,
        /// Refused values.
        values: Vec<String>,
    },
    /// `tag LIKE 'prefix%'`.
    Prefix {
        /// The tag column.
        column: String,
        /// The literal prefix.
        prefix: String,
    },
    /// `tag IS NULL` (rows written without the tag).
    IsNull {
        /// The tag column.
        column: String,
    },
}

impl TagPredicate {
    fn column(&self) -> &str {
        match self {
            Self::In { column, .. }
            | Self::NotIn { column, .. }
            | Self::Prefix { column, .. }
            | Self::IsNull { column } => column,
        }
    }
}

/// One column's index: values in ascending order with their granules, and the null granules.
#[derive(Debug, Default)]
struct ColumnTags {
    values: Vec<(String, RoaringBitmap)>,
    nulls: RoaringBitmap,
}

impl ColumnTags {
    fn union<'a>(bitmaps: impl Iterator<Item = &'a RoaringBitmap>) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        for b in bitmaps {
            out |= b;
        }
        out
    }

    fn granules(&self, predicate: &TagPredicate) -> RoaringBitmap {
        let find = |v: &str| {
            self.values
                .binary_search_by(|(k, _)| k.as_str().cmp(v))
                .ok()
                .map(|i| &self.values[i].1)
        };
        match predicate {
            TagPredicate::In { values, .. } => Self::union(values.iter().filter_map(|v| find(v))),
            TagPredicate::NotIn { values, .. } => Self::union(
                self.values
                    .iter()
                    .filter(|(k, _)| !values.contains(k))
                    .map(|(_, b)| b),
            ),
            TagPredicate::Prefix { prefix, .. } => {
                let start = self
                    .values
                    .partition_point(|(k, _)| k.as_str() < prefix.as_str());
                Self::union(
                    self.values[start..]
                        .iter()
                        .take_while(|(k, _)| k.starts_with(prefix.as_str()))
                        .map(|(_, b)| b),
                )
            }
            TagPredicate::IsNull { .. } => self.nulls.clone(),
        }
    }
}

/// The tag index of one segment, decoded.
#[derive(Debug, Default)]
pub struct SegmentTagIndex {
    rows: u64,
    granule_rows: u32,
    columns: HashMap<String, ColumnTags>,
}

impl SegmentTagIndex {
    /// Rows of the segment it covers.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether `column` is indexed (a column with too many values in this segment is not).
    pub fn covers(&self, column: &str) -> bool {
        self.columns.contains_key(column)
    }

    /// The granules that may hold rows matching every predicate on an indexed column; `None`
    /// when no predicate is on one (the index cannot narrow the scan).
    pub fn granules(&self, predicates: &[TagPredicate]) -> Option<RoaringBitmap> {
        let mut out: Option<RoaringBitmap> = None;
        for p in predicates {
            let Some(column) = self.columns.get(p.column()) else {
                continue;
            };
            let g = column.granules(p);
            out = Some(match out {
                Some(o) => o & g,
                None => g,
            });
        }
        out
    }

    /// The row ranges (ascending, disjoint, adjacent ones joined) of `granules`.
    pub fn row_ranges(&self, granules: &RoaringBitmap) -> Vec<Range<u64>> {
        let size = u64::from(self.granule_rows.max(1));
        let mut out: Vec<Range<u64>> = Vec::new();
        for g in granules {
            let start = u64::from(g) * size;
            if start >= self.rows {
                break;
            }
            let end = (start + size).min(self.rows);
            match out.last_mut() {
                Some(last) if last.end == start => last.end = end,
                _ => out.push(start..end),
            }
        }
        out
    }

    /// Decodes an index stored by [`TagIndexBuilder::encode`]; `None` (with the reason) for
    /// bytes this version cannot read.
    pub fn decode(text: &str) -> Result<Self, String> {
        use base64::Engine as _;
        let compressed = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("not base64: {e}"))?;
        let raw = zstd::bulk::decompress(&compressed, TAG_INDEX_BYTES_MAX * 64)
            .map_err(|e| format!("not zstd: {e}"))?;
        let mut r = Reader { bytes: &raw, at: 0 };
        let version = r.u32()?;
        if version != TAG_INDEX_VERSION {
            return Err(format!(
                "version {version}, this Eddy reads {TAG_INDEX_VERSION}"
            ));
        }
        let granule_rows = r.u32()?;
        let rows = r.u64()?;
        let columns_n = r.u32()?;
        let mut columns = HashMap::new();
        for _ in 0..columns_n {
            let name = r.string()?;
            let nulls = r.bitmap()?;
            let n = r.u32()?;
            let mut values = Vec::with_capacity((n as usize).min(TAG_INDEX_VALUES_MAX));
            for _ in 0..n {
                let v = r.string()?;
                let b = r.bitmap()?;
                values.push((v, b));
            }
            if !values.is_sorted_by(|a, b| a.0 < b.0) {
                return Err(format!("values of column '{name}' are not in order"));
            }
            columns.insert(name, ColumnTags { values, nulls });
        }
        Ok(Self {
            rows,
            granule_rows,
            columns,
        })
    }
}

/// A bounds-checked cursor over encoded bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| format!("truncated at byte {}", self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let lo = u64::from(self.u32()?);
        let hi = u64::from(self.u32()?);
        Ok(lo | (hi << 32))
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| format!("invalid UTF-8 before byte {}", self.at))
    }

    fn bitmap(&mut self) -> Result<RoaringBitmap, String> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        RoaringBitmap::deserialize_from(b).map_err(|e| format!("bad bitmap: {e}"))
    }
}

/// One tag column's index while the segment is written.
#[derive(Debug)]
struct ColumnBuilder {
    name: String,
    index: usize,
    values: HashMap<String, RoaringBitmap>,
    nulls: RoaringBitmap,
    /// The last (value, granule) added: rows are sorted by series, so most rows repeat it.
    last: Option<(Option<String>, u32)>,
    /// Too many distinct values to be worth indexing in this segment.
    dropped: bool,
}

/// Builds a segment's tag index from its rows in file order (the default indexes nothing).
#[derive(Debug, Default)]
pub struct TagIndexBuilder {
    rows: u64,
    columns: Vec<ColumnBuilder>,
}

impl TagIndexBuilder {
    /// A builder for the tag columns of `table`.
    pub fn new(table: &TableSchema) -> Self {
        let schema = table.arrow_schema();
        let columns = table
            .tag_indices()
            .iter()
            .map(|&i| ColumnBuilder {
                name: schema.field(i).name().clone(),
                index: i,
                values: HashMap::new(),
                nulls: RoaringBitmap::new(),
                last: None,
                dropped: false,
            })
            .collect();
        Self { rows: 0, columns }
    }

    /// Adds the rows of `batch` (conformed to the table schema), which follow every row added
    /// so far in the file.
    pub fn add(&mut self, batch: &RecordBatch) {
        let first = self.rows;
        self.rows += batch.num_rows() as u64;
        for c in &mut self.columns {
            if c.dropped {
                continue;
            }
            let column = batch.column(c.index);
            if column.data_type() != &DataType::Utf8 {
                c.dropped = true;
                continue;
            }
            let strings = column.as_string::<i32>();
            for i in 0..strings.len() {
                let Ok(granule) = u32::try_from((first + i as u64) / TAG_INDEX_GRANULE_ROWS) else {
                    c.dropped = true;
                    break;
                };
                let value = strings.is_valid(i).then(|| strings.value(i));
                if let Some((last, g)) = &c.last
                    && *g == granule
                    && last.as_deref() == value
                {
                    continue;
                }
                match value {
                    None => {
                        c.nulls.insert(granule);
                    }
                    Some(v) => match c.values.get_mut(v) {
                        Some(b) => {
                            b.insert(granule);
                        }
                        None => {
                            if c.values.len() >= TAG_INDEX_VALUES_MAX {
                                c.dropped = true;
                                c.values = HashMap::new();
                                c.nulls = RoaringBitmap::new();
                                break;
                            }
                            c.values
                                .insert(v.to_string(), RoaringBitmap::from_iter([granule]));
                        }
                    },
                }
                c.last = Some((value.map(str::to_string), granule));
            }
        }
    }

    /// The index as footer text (zstd, then base64: footer values are strings), or `None`
    /// when no column is indexed. Columns with the most values are left out until it fits in
    /// [`TAG_INDEX_BYTES_MAX`].
    pub fn encode(self) -> Option<String> {
        use base64::Engine as _;
        let rows = self.rows;
        let mut columns: Vec<ColumnBuilder> =
            self.columns.into_iter().filter(|c| !c.dropped).collect();
        columns.sort_by_key(|c| c.values.len());
        let encoded: Vec<Vec<u8>> = columns.into_iter().map(encode_column).collect();
        let mut keep = encoded.len();
        while keep > 0 {
            let mut raw = Vec::new();
            raw.extend_from_slice(&TAG_INDEX_VERSION.to_le_bytes());
            raw.extend_from_slice(&(TAG_INDEX_GRANULE_ROWS as u32).to_le_bytes());
            raw.extend_from_slice(&rows.to_le_bytes());
            raw.extend_from_slice(&(keep as u32).to_le_bytes());
            for c in &encoded[..keep] {
                raw.extend_from_slice(c);
            }
            let compressed = zstd::bulk::compress(&raw, 3).ok()?;
            let text = base64::engine::general_purpose::STANDARD.encode(compressed);
            if text.len() <= TAG_INDEX_BYTES_MAX {
                return Some(text);
            }
            keep -= 1;
        }
        None
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_bitmap(out: &mut Vec<u8>, b: RoaringBitmap) {
    let mut bytes = Vec::with_capacity(b.serialized_size());
    // Writing to a Vec cannot fail.
    let _ = b.serialize_into(&mut bytes);
    put_bytes(out, &bytes);
}

fn encode_column(c: ColumnBuilder) -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes(&mut out, c.name.as_bytes());
    put_bitmap(&mut out, c.nulls);
    let mut values: Vec<(String, RoaringBitmap)> = c.values.into_iter().collect();
    values.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for (v, b) in values {
        put_bytes(&mut out, v.as_bytes());
        put_bitmap(&mut out, b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnDef, ColumnKind, FieldType, TableDef};
    use datafusion::arrow::array::{Float64Array, StringArray, TimestampNanosecondArray};
    use std::sync::Arc;

    fn table() -> TableSchema {
        let def = TableDef {
            id: 1,
            name: "t".into(),
            retention_ns: None,
            columns: vec![
                ColumnDef::new("host", ColumnKind::Tag),
                ColumnDef::new("region", ColumnKind::Tag),
                ColumnDef::new("time", ColumnKind::Time),
                ColumnDef::new("v", ColumnKind::Field(FieldType::Float)),
            ],
        };
        TableSchema::new(def).expect("schema")
    }

    fn batch(t: &TableSchema, hosts: &[Option<&str>], regions: &[Option<&str>]) -> RecordBatch {
        let n = hosts.len();
        RecordBatch::try_new(
            t.arrow_schema().clone(),
            vec![
                Arc::new(StringArray::from(hosts.to_vec())),
                Arc::new(StringArray::from(regions.to_vec())),
                Arc::new(TimestampNanosecondArray::from_iter_values(0..n as i64)),
                Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64))),
            ],
        )
        .expect("batch")
    }

    /// Every granule holding a matching row is selected, checked against the rows themselves.
    #[test]
    fn granules_cover_every_matching_row() {
        let t = table();
        let g = TAG_INDEX_GRANULE_ROWS as usize;
        let mut hosts = Vec::new();
        let mut regions = Vec::new();
        for i in 0..(g * 7 + 13) {
            let h = i / (g / 2 + 3);
            hosts.push(if i % 97 == 0 {
                None
            } else {
                Some(format!("host_{h:02}"))
            });
            regions.push(Some(format!("r{}", h % 3)));
        }
        let hs: Vec<Option<&str>> = hosts.iter().map(|h| h.as_deref()).collect();
        let rs: Vec<Option<&str>> = regions.iter().map(|h| h.as_deref()).collect();
        let mut b = TagIndexBuilder::new(&t);
        // Two batches, split mid-granule.
        let split = g + 100;
        b.add(&batch(&t, &hs[..split], &rs[..split]));
        b.add(&batch(&t, &hs[split..], &rs[split..]));
        let index = SegmentTagIndex::decode(&b.encode().expect("index")).expect("decode");
        assert_eq!(index.rows(), hs.len() as u64);
        let cases = vec![
            TagPredicate::In {
                column: "host".into(),
                values: vec!["host_03".into()],
            },
            TagPredicate::In {
                column: "region".into(),
                values: vec!["r1".into(), "zz".into()],
            },
            TagPredicate::NotIn {
                column: "host".into(),
                values: vec!["host_00".into()],
            },
            TagPredicate::Prefix {
                column: "host".into(),
                prefix: "host_1".into(),
            },
            TagPredicate::In {
                column: "host".into(),
                values: vec!["nope".into()],
            },
            TagPredicate::IsNull {
                column: "host".into(),
            },
        ];
        for p in cases {
            let granules = index.granules(std::slice::from_ref(&p)).expect("indexed");
            let ranges = index.row_ranges(&granules);
            let selected = |row: usize| ranges.iter().any(|r| r.contains(&(row as u64)));
            for row in 0..hs.len() {
                let (col, v) = match &p {
                    TagPredicate::In { column, .. }
                    | TagPredicate::NotIn { column, .. }
                    | TagPredicate::Prefix { column, .. }
                    | TagPredicate::IsNull { column } => {
                        (column, if column == "host" { hs[row] } else { rs[row] })
                    }
                };
                let _ = col;
                let matches = match (&p, v) {
                    (TagPredicate::IsNull { .. }, v) => v.is_none(),
                    (_, None) => false,
                    (TagPredicate::In { values, .. }, Some(v)) => values.iter().any(|x| x == v),
                    (TagPredicate::NotIn { values, .. }, Some(v)) => !values.iter().any(|x| x == v),
                    (TagPredicate::Prefix { prefix, .. }, Some(v)) => {
                        v.starts_with(prefix.as_str())
                    }
                };
                if matches {
                    assert!(selected(row), "{p:?}: row {row} ({v:?}) not selected");
                }
            }
            // It narrows: a host in a few granules selects few rows.
            if let TagPredicate::In { column, values } = &p
                && column == "host"
            {
                let rows: u64 = ranges.iter().map(|r| r.end - r.start).sum();
                assert!(
                    rows <= 2 * TAG_INDEX_GRANULE_ROWS,
                    "{values:?}: {rows} rows"
                );
            }
        }
        // A column without predicates leaves the scan as it is.
        assert!(index.granules(&[]).is_none());
    }

    /// A column with more distinct values than the limit is left out, the others stay.
    #[test]
    fn a_column_with_too_many_values_is_not_indexed() {
        let t = table();
        let n = TAG_INDEX_VALUES_MAX + 10;
        let hosts: Vec<String> = (0..n).map(|i| format!("h{i:08}")).collect();
        let hs: Vec<Option<&str>> = hosts.iter().map(|h| Some(h.as_str())).collect();
        let rs: Vec<Option<&str>> = (0..n).map(|_| Some("r")).collect();
        let mut b = TagIndexBuilder::new(&t);
        b.add(&batch(&t, &hs, &rs));
        let index = SegmentTagIndex::decode(&b.encode().expect("index")).expect("decode");
        assert!(!index.covers("host"));
        assert!(index.covers("region"));
    }

    /// Damaged text is refused with a reason, never misread.
    #[test]
    fn damaged_text_is_refused() {
        assert!(SegmentTagIndex::decode("%%%").is_err());
        use base64::Engine as _;
        let junk = base64::engine::general_purpose::STANDARD
            .encode(zstd::bulk::compress(&[1, 0, 0, 0, 0, 4, 0], 3).expect("zstd"));
        assert!(SegmentTagIndex::decode(&junk).is_err());
    }
}
