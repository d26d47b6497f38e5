//! Bind parameters decoded into Arrow values (arrow-pg), after the checks that keep a
//! client's bytes from reaching a decoder that panics on them.

use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::into_pg_type;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

/// Decodes `portal`'s parameters as `types` (the planner's inferred types, by position).
pub(crate) fn decode_parameters<S: Clone>(
    portal: &Portal<S>,
    types: &[Option<&DataType>],
) -> PgWireResult<ParamValues> {
    for (i, bytes) in portal.parameters.iter().enumerate() {
        let Some(bytes) = bytes else { continue };
        let declared = portal.statement.parameter_types.get(i).cloned().flatten();
        let inferred = types
            .get(i)
            .copied()
            .flatten()
            .and_then(|dt| into_pg_type(dt).ok());
        let is_numeric = declared.or(inferred).is_some_and(|t| t == Type::NUMERIC);
        if is_numeric && portal.parameter_format.is_binary(i) && numeric_too_large(bytes) {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_string(),
                "22003".to_string(),
                format!("numeric field overflow: parameter ${} is too large", i + 1),
            ))));
        }
    }
    deserialize_parameters(portal, types)
}

/// Whether a binary NUMERIC has more integer digits beyond its digit groups than rust_decimal
/// can scale by: rust_decimal 1.43 panics ("Number exceeds maximum value") on 8 or more such
/// 4-digit groups (10^32) instead of failing. Those values are far beyond the 28 digits it
/// holds, so they are refused here as out of range.
fn numeric_too_large(bytes: &[u8]) -> bool {
    let (Some(groups), Some(weight)) = (bytes.get(0..2), bytes.get(2..4)) else {
        return false;
    };
    let groups = i32::from(u16::from_be_bytes([groups[0], groups[1]]));
    let weight = i32::from(i16::from_be_bytes([weight[0], weight[1]]));
    let integer_groups = weight + 1;
    integer_groups > groups && integer_groups - groups >= 8
}

#[cfg(test)]
mod tests {
    use super::numeric_too_large;

    fn numeric(groups: u16, weight: i16) -> Vec<u8> {
        let mut b = groups.to_be_bytes().to_vec();
        b.extend(weight.to_be_bytes());
        b.extend([0, 0, 0, 0]);
        b.extend(std::iter::repeat_n(0u8, 2 * usize::from(groups)));
        b
    }

    #[test]
    fn only_groups_beyond_what_rust_decimal_scales_are_refused() {
        assert!(!numeric_too_large(&numeric(1, 0)));
        assert!(!numeric_too_large(&numeric(0, 6)));
        assert!(numeric_too_large(&numeric(0, 7)));
        assert!(numeric_too_large(&numeric(1, 8)));
        assert!(!numeric_too_large(&numeric(2, 8)));
        assert!(numeric_too_large(&numeric(0, i16::MAX)));
        assert!(!numeric_too_large(&numeric(0, -5)));
        assert!(!numeric_too_large(&[0, 1]));
    }
}
