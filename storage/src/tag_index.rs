//! Inverted indexes over the tag columns of a memtable: for each tag value, a roaring bitmap of
//! the rows (numbered across the memtable's batches in write order) that carry it.
//!
//! Writers never pay for it: a column is indexed the first time a reader selects on it, and
//! later readers extend the index over the batches appended since. A point query then takes
//! the few rows of one series instead of comparing every string in the memtable.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use roaring::RoaringBitmap;

use crate::error::Result;

/// Rows a reader wants by tag value: every listed column must hold one of its listed values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TagSelection {
    /// (tag column, accepted values); a row matches when it matches every entry.
    pub any_of: Vec<(String, Vec<String>)>,
}

impl TagSelection {
    /// The values the `=` and `IN` predicates among `predicates` require.
    pub fn of(predicates: &[crate::segment_tags::TagPredicate]) -> Self {
        use crate::segment_tags::TagPredicate;
        let any_of = predicates
            .iter()
            .filter_map(|p| match p {
                TagPredicate::In { column, values } => Some((column.clone(), values.clone())),
                _ => None,
            })
            .collect();
        Self { any_of }
    }

    /// Whether the selection restricts nothing.
    pub fn is_empty(&self) -> bool {
        self.any_of.is_empty()
    }
}

/// Which rows of a tag column hold one of `values` (a null tag holds none), whether the
/// column is read as strings or as a dictionary of them.
pub(crate) fn any_of_mask(
    column: &datafusion::arrow::array::ArrayRef,
    values: &[String],
) -> std::result::Result<datafusion::arrow::array::BooleanArray, datafusion::arrow::error::ArrowError>
{
    use datafusion::arrow::array::{BooleanArray, Scalar, StringArray};
    use datafusion::arrow::compute::kernels::{boolean, cmp};
    let strings = if column.data_type() == &DataType::Utf8 {
        column.clone()
    } else {
        datafusion::arrow::compute::cast(column, &DataType::Utf8)?
    };
    let mut any = BooleanArray::from(vec![false; strings.len()]);
    for v in values {
        let hit = cmp::eq(&strings, &Scalar::new(StringArray::from(vec![v.as_str()])))?;
        any = boolean::or_kleene(&any, &hit)?;
    }
    Ok(any)
}

/// The index of one tag column over a prefix of a memtable's batches.
#[derive(Debug, Default)]
struct ColumnIndex {
    batches: usize,
    values: HashMap<String, RoaringBitmap>,
}

/// Tag indexes of one table's memtable.
#[derive(Debug, Default)]
pub(crate) struct TagIndex {
    /// First row number of each batch seen so far, plus the row count after the last.
    starts: Vec<u32>,
    columns: HashMap<String, ColumnIndex>,
}

impl TagIndex {
    /// The row numbers (across `batches`, a prefix in write order of the batches this index
    /// covers) that `selection` accepts; `None` when it selects nothing (all rows).
    fn matching(
        &mut self,
        batches: &[RecordBatch],
        selection: &TagSelection,
    ) -> Option<RoaringBitmap> {
        self.cover(batches);
        let mut rows: Option<RoaringBitmap> = None;
        for (column, values) in &selection.any_of {
            let index = self.columns.entry(column.clone()).or_default();
            index.extend(column, batches, &self.starts);
            let mut matched = RoaringBitmap::new();
            for v in values {
                if let Some(b) = index.values.get(v) {
                    matched |= b;
                }
            }
            rows = Some(match rows {
                Some(r) => r & matched,
                None => matched,
            });
        }
        rows
    }

    /// The (batch, row) positions in `batches` that `selection` accepts and, if given, that
    /// `among` holds, in write order; `None` when neither restricts anything (all rows).
    pub fn positions(
        &mut self,
        batches: &[RecordBatch],
        selection: &TagSelection,
        among: Option<&RoaringBitmap>,
    ) -> Option<Vec<(usize, usize)>> {
        let rows = match (self.matching(batches, selection), among) {
            (Some(rows), Some(among)) => rows & among,
            (Some(rows), None) => rows,
            (None, Some(among)) => {
                self.cover(batches);
                among.clone()
            }
            (None, None) => return None,
        };
        // The index may already cover batches appended after this reader's prefix.
        let end = self.starts[batches.len()];
        let mut out = Vec::new();
        let mut b = 0;
        for r in rows.range(..end) {
            while self.starts[b + 1] <= r {
                b += 1;
            }
            out.push((b, (r - self.starts[b]) as usize));
        }
        Some(out)
    }

    /// The rows of `batches` (a prefix, in write order, of the batches this index covers)
    /// that `selection` accepts, batch by batch; batches without a match are left out.
    pub fn select(
        &mut self,
        batches: &[RecordBatch],
        selection: &TagSelection,
    ) -> Result<Vec<RecordBatch>> {
        let Some(rows) = self.matching(batches, selection) else {
            return Ok(batches.to_vec());
        };
        // One interleave per run of batches sharing a schema: a take per batch and column
        // costs more in calls than in rows when a series has a few rows in each batch.
        let mut out = Vec::new();
        let mut i = 0;
        while i < batches.len() {
            let mut end = i + 1;
            while end < batches.len() && batches[end].schema_ref() == batches[i].schema_ref() {
                end += 1;
            }
            let mut picks: Vec<(usize, usize)> = Vec::new();
            for (k, b) in (i..end).enumerate() {
                let (lo, hi) = (self.starts[b], self.starts[b + 1]);
                picks.extend(rows.range(lo..hi).map(|r| (k, (r - lo) as usize)));
            }
            if !picks.is_empty() {
                let run: Vec<&RecordBatch> = batches[i..end].iter().collect();
                out.push(interleave_record_batch(&run, &picks)?);
            }
            i = end;
        }
        Ok(out)
    }

    /// Records the row numbering of batches not seen before.
    fn cover(&mut self, batches: &[RecordBatch]) {
        if self.starts.is_empty() {
            self.starts.push(0);
        }
        let known = self.starts.len() - 1;
        for b in batches.iter().skip(known) {
            let last = self.starts[self.starts.len() - 1];
            self.starts.push(last + b.num_rows() as u32);
        }
    }
}

impl ColumnIndex {
    fn extend(&mut self, column: &str, batches: &[RecordBatch], starts: &[u32]) {
        for (i, batch) in batches.iter().enumerate().skip(self.batches) {
            // A batch written before the tag existed has no such column: all its rows are null.
            if let Some(array) = batch.column_by_name(column)
                && array.data_type() == &DataType::Utf8
            {
                let strings = array.as_string::<i32>();
                // Rows of a series arrive together: index runs of one value at a time.
                let mut r = 0;
                while r < strings.len() {
                    let mut end = r + 1;
                    if strings.is_null(r) {
                        r = end;
                        continue;
                    }
                    let v = strings.value(r);
                    while end < strings.len() && strings.is_valid(end) && strings.value(end) == v {
                        end += 1;
                    }
                    let rows = starts[i] + r as u32..starts[i] + end as u32;
                    match self.values.get_mut(v) {
                        Some(bitmap) => {
                            bitmap.insert_range(rows);
                        }
                        None => {
                            let mut bitmap = RoaringBitmap::new();
                            bitmap.insert_range(rows);
                            self.values.insert(v.to_string(), bitmap);
                        }
                    }
                    r = end;
                }
            }
            self.batches = i + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(hosts: &[Option<&str>], first: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", DataType::Utf8, true),
            Field::new("v", DataType::Int64, false),
        ]));
        let n = hosts.len() as i64;
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(hosts.to_vec())),
                Arc::new(Int64Array::from_iter_values(first..first + n)),
            ],
        )
        .expect("batch")
    }

    fn values(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                b.column(1)
                    .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn selects_rows_across_batches_and_grows_with_them() {
        let mut index = TagIndex::default();
        let mut batches = vec![
            batch(&[Some("a"), Some("b"), Some("a")], 0),
            batch(&[None, Some("a")], 3),
        ];
        let sel = |v: &[&str]| TagSelection {
            any_of: vec![("host".into(), v.iter().map(|s| s.to_string()).collect())],
        };
        assert_eq!(
            values(&index.select(&batches, &sel(&["a"])).unwrap()),
            [0, 2, 4]
        );
        batches.push(batch(&[Some("b"), Some("a")], 5));
        assert_eq!(
            values(&index.select(&batches, &sel(&["a"])).unwrap()),
            [0, 2, 4, 6]
        );
        // A reader holding an older prefix sees only its own rows.
        assert_eq!(
            values(&index.select(&batches[..1], &sel(&["a", "b"])).unwrap()),
            [0, 1, 2]
        );
        assert!(index.select(&batches, &sel(&["zz"])).unwrap().is_empty());
        // Positions name the same rows without copying them.
        assert_eq!(
            index.positions(&batches, &sel(&["a"]), None),
            Some(vec![(0, 0), (0, 2), (1, 1), (2, 1)])
        );
        assert_eq!(
            index.positions(&batches[..2], &sel(&["b"]), None),
            Some(vec![(0, 1)])
        );
        assert_eq!(index.positions(&batches, &sel(&["zz"]), None), Some(vec![]));
        assert_eq!(
            index.positions(&batches, &TagSelection::default(), None),
            None
        );
    }
}
