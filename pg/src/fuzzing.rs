//! Fuzz targets of the PostgreSQL front end's decoders of client bytes: the bodies of
//! `fuzz/fuzz_targets/{copy_text,copy_csv,copy_binary,pg_frontend}.rs` (the coverage-guided
//! long pass, `scripts/fuzz.sh`) and of the short pass in the test suite
//! (`tests/e2e/fuzz_corpus.rs`), which replays the corpus and mutations of it.
//!
//! The contract is that every function here returns normally for every input: a panic is a
//! panic in a decoder or a broken invariant asserted here. The first byte of each input is a
//! control byte that the fuzzer mutates like the rest, so one corpus covers every chunking of
//! the data and every option set:
//!
//! - COPY (`copy_text`, `copy_csv`, `copy_binary`): bits 0-3 are the size of the CopyData
//!   chunks the rest is cut into (0: one chunk), bit 4 asks for `HEADER`, bit 5 for the other
//!   option set (text: `DELIMITER '|' NULL 'NULL'`; CSV: `DELIMITER ';' QUOTE '''' ESCAPE '\'
//!   NULL 'NULL'`); binary ignores bits 4 and 5. In ASCII: `@` is the defaults in one chunk,
//!   `A`-`O` the defaults in chunks of 1-15 bytes, `P` with a header, `` ` `` the other
//!   options, `p` both. The target table has one column of every kind an Eddy table has
//!   ([`copy_fields`]).
//! - Messages (`frontend_messages`): bits 0-1 are where the connection starts (0: before the
//!   SSL request, 1: before the startup message, 2-3: after it), bit 2 the protocol version
//!   (3.0 or 3.2), bits 3-7 the size of the reads the bytes arrive in (0: one read).
//!
//! Not a public API: it exists for the fuzzers and may change with them.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::api::stmt::StoredStatement;
use pgwire::messages::startup::PasswordMessageFamily;
use pgwire::messages::{
    DecodeContext, PgWireFrontendMessage, ProtocolVersion, SslNegotiationMetaMessage,
};

use crate::copy::{CopyDecoder, CopyError, CopyFormat, CopyOptions};

/// Decodes the input after the control byte as `COPY ... FROM STDIN` text; panics only on a bug.
pub fn copy_text(data: &[u8]) {
    copy(data, CopyFormat::Text);
}

/// Decodes the input after the control byte as `COPY ... FROM STDIN (FORMAT csv)`; panics only
/// on a bug.
pub fn copy_csv(data: &[u8]) {
    copy(data, CopyFormat::Csv);
}

/// Decodes the input after the control byte as `COPY ... FROM STDIN (FORMAT binary)`; panics
/// only on a bug.
pub fn copy_binary(data: &[u8]) {
    copy(data, CopyFormat::Binary);
}

/// The target columns of the COPY targets: the time column (never NULL), a tag, and a field of
/// each type.
pub fn copy_fields() -> Vec<FieldRef> {
    let column = |name: &str, data_type: DataType, nullable: bool| {
        Arc::new(Field::new(name, data_type, nullable))
    };
    vec![
        column(
            "time",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        ),
        column("host", DataType::Utf8, true),
        column("usage", DataType::Float64, true),
        column("count", DataType::Int64, true),
        column("ucount", DataType::UInt64, true),
        column("ok", DataType::Boolean, true),
        column("msg", DataType::Utf8, true),
    ]
}

/// Rows decoded before a batch is taken, so taking batches mid-stream is exercised too.
const FUZZ_BATCH_ROWS: usize = 3;

fn copy(data: &[u8], format: CopyFormat) {
    let Some((&control, body)) = data.split_first() else {
        return;
    };
    let header = control & 0x10 != 0;
    let other = control & 0x20 != 0;
    let options = match format {
        CopyFormat::Text if other => CopyOptions {
            delimiter: b'|',
            null: "NULL".to_string(),
            header,
            ..CopyOptions::text()
        },
        CopyFormat::Text => CopyOptions {
            header,
            ..CopyOptions::text()
        },
        CopyFormat::Csv if other => CopyOptions {
            delimiter: b';',
            quote: b'\'',
            escape: b'\\',
            null: "NULL".to_string(),
            header,
            ..CopyOptions::csv()
        },
        CopyFormat::Csv => CopyOptions {
            header,
            ..CopyOptions::csv()
        },
        CopyFormat::Binary => CopyOptions::binary(),
    };
    let chunk = match usize::from(control & 0x0F) {
        0 => body.len().max(1),
        n => n,
    };
    let mut decoder = CopyDecoder::try_new(options, copy_fields())
        .unwrap_or_else(|e| panic!("every column kind of an Eddy table decodes: {e}"));
    let schema = decoder.schema();
    let mut rows = 0u64;
    let mut check_batch = |batch: Option<datafusion::arrow::record_batch::RecordBatch>| {
        let Some(batch) = batch else { return };
        assert_eq!(batch.schema(), schema, "a batch of another schema");
        assert!(batch.num_rows() > 0, "an empty batch instead of None");
        assert_eq!(
            batch.column(0).null_count(),
            0,
            "a NULL in the NOT NULL time column"
        );
        rows += batch.num_rows() as u64;
    };
    for piece in body.chunks(chunk) {
        if let Err(e) = decoder.push(piece) {
            check_error(&e);
            check_sticky(&mut decoder, &e);
            return;
        }
        if decoder.rows_buffered() >= FUZZ_BATCH_ROWS {
            match decoder.take_batch() {
                Ok(batch) => check_batch(batch),
                Err(e) => panic!("decoded rows that make no batch: {e}"),
            }
        }
    }
    match decoder.finish() {
        Ok(batch) => check_batch(batch),
        Err(e) => {
            check_error(&e);
            check_sticky(&mut decoder, &e);
            return;
        }
    }
    assert_eq!(
        rows,
        decoder.rows_total(),
        "rows handed out != rows decoded"
    );
    // After the end, text and CSV ignore more data; binary refuses it.
    let _ = decoder.push(b"more");
}

fn check_error(e: &CopyError) {
    assert!(
        !e.message.starts_with("could not build COPY batch"),
        "decoded rows that make no batch: {e}"
    );
    assert!(e.line != Some(0), "an error on line 0: {e}");
    assert!(!e.to_string().is_empty(), "an error without a message");
}

/// After an error every later push and finish reports it again.
fn check_sticky(decoder: &mut CopyDecoder, e: &CopyError) {
    assert_eq!(
        decoder.push(b"x").err().as_ref(),
        Some(e),
        "push after an error"
    );
    assert_eq!(
        decoder.finish().err().as_ref(),
        Some(e),
        "finish after an error"
    );
}

/// Statements kept from Parse messages, at most (more are not kept).
const STATEMENTS_MAX: usize = 64;

/// What the planner may have inferred for parameter `i`, cycled through the column types of
/// Eddy tables (and nothing): Bind parameter values are decoded by these when the client sent
/// no type.
fn inferred_type(i: usize) -> Option<&'static DataType> {
    static TYPES: [DataType; 6] = [
        DataType::Int64,
        DataType::Float64,
        DataType::Utf8,
        DataType::Boolean,
        DataType::UInt64,
        DataType::Timestamp(TimeUnit::Nanosecond, None),
    ];
    match i % (TYPES.len() + 1) {
        0 => None,
        n => TYPES.get(n - 1),
    }
}

/// Decodes the input after the control byte as client messages, arriving in reads of any size,
/// the way the server's codec does: the SSL request, the startup message, then typed
/// messages; a password message is read as each of its kinds and Bind parameters are
/// decoded as the extended-query path would. Panics only on a bug.
pub fn frontend_messages(data: &[u8]) {
    let Some((&control, body)) = data.split_first() else {
        return;
    };
    let version = if control & 0x04 == 0 {
        ProtocolVersion::PROTOCOL3_0
    } else {
        ProtocolVersion::PROTOCOL3_2
    };
    // A new context awaits the SSL request and then the startup message.
    let mut ctx = DecodeContext::new(version);
    match control & 0x03 {
        0 => {}
        1 => ctx.awaiting_frontend_ssl = false,
        _ => {
            ctx.awaiting_frontend_ssl = false;
            ctx.awaiting_frontend_startup = false;
        }
    }
    let read = match usize::from(control >> 3) {
        0 => body.len().max(1),
        n => n,
    };
    let mut statements: HashMap<String, Arc<StoredStatement<()>>> = HashMap::new();
    let mut buf = BytesMut::new();
    for piece in body.chunks(read) {
        buf.extend_from_slice(piece);
        loop {
            // Typed messages (after startup) have a type byte before the length.
            let offset = usize::from(!ctx.awaiting_frontend_startup);
            let declared = buf
                .get(offset..offset + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(i32::from_be_bytes);
            let before = buf.len();
            let message = match PgWireFrontendMessage::decode(&mut buf, &ctx) {
                Ok(Some(m)) => m,
                // Wait for more bytes.
                Ok(None) => break,
                // The server answers an error and closes the connection.
                Err(_) => return,
            };
            let consumed = before - buf.len();
            if let PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::None) = message
            {
                // Not an SSL request: nothing is consumed, the startup message follows.
                assert_eq!(consumed, 0, "no SSL request, yet bytes were consumed");
                ctx.awaiting_frontend_ssl = false;
                continue;
            }
            let expected = declared
                .and_then(|len| usize::try_from(len).ok())
                .map(|len| offset + len);
            assert_eq!(
                Some(consumed),
                expected,
                "a message must consume exactly its declared length ({declared:?}, offset \
                 {offset}): {message:?}"
            );
            if !on_message(message, &mut ctx, &mut statements) {
                return;
            }
        }
    }
}

/// Moves the connection on as the server would after `message`; `false` when it closes.
fn on_message(
    message: PgWireFrontendMessage,
    ctx: &mut DecodeContext,
    statements: &mut HashMap<String, Arc<StoredStatement<()>>>,
) -> bool {
    match message {
        // Answered 'N' (or TLS, whose plaintext is the same messages).
        PgWireFrontendMessage::SslNegotiation(_) => ctx.awaiting_frontend_ssl = false,
        PgWireFrontendMessage::Startup(startup) => {
            ctx.awaiting_frontend_ssl = false;
            ctx.awaiting_frontend_startup = false;
            ctx.protocol_version = ProtocolVersion::from_version_number(
                startup.protocol_number_major,
                startup.protocol_number_minor,
            )
            .unwrap_or(ProtocolVersion::PROTOCOL3_2);
        }
        PgWireFrontendMessage::CancelRequest(_) | PgWireFrontendMessage::Terminate(_) => {
            return false;
        }
        PgWireFrontendMessage::PasswordMessageFamily(PasswordMessageFamily::Raw(body)) => {
            // Which kind it is depends on the authentication method; read it as each.
            let _ = PasswordMessageFamily::Raw(body.clone()).into_password();
            let _ = PasswordMessageFamily::Raw(body.clone()).into_sasl_initial_response();
            let _ = PasswordMessageFamily::Raw(body).into_sasl_response();
        }
        PgWireFrontendMessage::Parse(parse) => {
            let name = parse.name.clone().unwrap_or_default();
            if statements.len() < STATEMENTS_MAX || statements.contains_key(&name) {
                let types = parse
                    .type_oids
                    .iter()
                    .map(|&oid| Type::from_oid(oid))
                    .collect();
                statements.insert(
                    name.clone(),
                    Arc::new(StoredStatement::new(name, (), types)),
                );
            }
        }
        PgWireFrontendMessage::Bind(bind) => {
            // An unknown statement is an error to the client; decoding the parameters against
            // an untyped one anyway reaches more of the decoders.
            let name = bind.statement_name.clone().unwrap_or_default();
            let statement = statements
                .get(&name)
                .cloned()
                .unwrap_or_else(|| Arc::new(StoredStatement::new(name, (), Vec::new())));
            if let Ok(portal) = Portal::try_new(&bind, statement)
                && portal.parameter_len() > 0
            {
                let types: Vec<Option<&DataType>> =
                    (0..portal.parameter_len()).map(inferred_type).collect();
                let _ = crate::params::decode_parameters(&portal, &types);
            }
        }
        _ => {}
    }
    true
}
