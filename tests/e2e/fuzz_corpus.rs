//! The short fuzzing pass, run with every test run: each fuzz target's body (the functions in
//! `eddy_ingest::fuzzing` and `eddy_pg::fuzzing`, which the cargo-fuzz targets in fuzz/ call)
//! gets every input of its corpus (fuzz/corpus/<target>/) and its regressions
//! (fuzz/regressions/<target>/), then a fixed number of deterministic mutations of them: bit
//! flips, byte inserts and deletes, duplicated chunks, splices of two inputs, interesting
//! values, length fields made huge or negative, tokens of fuzz/dict/<target>.dict.
//!
//! This pass is not coverage-guided: it only replays what the long pass (scripts/fuzz.sh,
//! libFuzzer) found and pokes around it, so a change that breaks a decoder on an input near the
//! corpus fails here in seconds. Unlike the other modules of this binary it starts no server:
//! the targets are the decoders themselves. See docs/fuzzing.md.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// A fuzz target's body: returns normally for every input.
type Target = fn(&[u8]);

/// Mutated inputs per target, unless `EDDY_FUZZ_MUTATIONS` says otherwise.
const MUTATIONS_PER_TARGET: usize = 20_000;

/// Longest mutated input: longer ones are cut.
const INPUT_BYTES_MAX: usize = 64 * 1024;

/// Most bytes of a failing input shown in hex in the failure message (all of it is saved).
const HEX_SHOWN_BYTES_MAX: usize = 4096;

#[test]
fn line_protocol() {
    short_pass("line_protocol", eddy_ingest::fuzzing::line_protocol);
}

#[test]
fn copy_text() {
    short_pass("copy_text", eddy_pg::fuzzing::copy_text);
}

#[test]
fn copy_csv() {
    short_pass("copy_csv", eddy_pg::fuzzing::copy_csv);
}

#[test]
fn copy_binary() {
    short_pass("copy_binary", eddy_pg::fuzzing::copy_binary);
}

#[test]
fn pg_frontend() {
    short_pass("pg_frontend", eddy_pg::fuzzing::frontend_messages);
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn short_pass(target: &str, body: Target) {
    let corpus = read_inputs(&fuzz_dir().join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is empty or missing: the seeds are part of the repository"
    );
    let regressions = read_inputs(&fuzz_dir().join("regressions").join(target));
    for (name, input) in corpus.iter() {
        run(target, body, input, &format!("fuzz/corpus/{target}/{name}"));
    }
    for (name, input) in regressions.iter() {
        run(
            target,
            body,
            input,
            &format!("fuzz/regressions/{target}/{name}"),
        );
    }
    let dict = read_dict(&fuzz_dir().join("dict").join(format!("{target}.dict")));
    let inputs: Vec<Vec<u8>> = corpus
        .into_iter()
        .chain(regressions)
        .map(|(_, input)| input)
        .collect();
    let mutations = std::env::var("EDDY_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MUTATIONS_PER_TARGET);
    let mut rng = Rng::new(target);
    for i in 0..mutations {
        let input = mutate(&mut rng, &inputs, &dict);
        run(target, body, &input, &format!("mutation {i}"));
    }
}

/// The files of a directory, by name, skipping hidden ones; none if it does not exist.
fn read_inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut inputs: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.expect("read corpus directory"))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .map(|name| {
            let input = std::fs::read(dir.join(&name)).expect("read corpus file");
            (name, input)
        })
        .collect();
    inputs.sort();
    inputs
}

/// The tokens of a libFuzzer dictionary (`name="value"` lines with `\\`, `\"` and `\xHH`).
fn read_dict(path: &Path) -> Vec<Vec<u8>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut tokens = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (Some(open), Some(close)) = (line.find('"'), line.rfind('"')) else {
            continue;
        };
        if close <= open {
            continue;
        }
        let raw = &line.as_bytes()[open + 1..close];
        let mut token = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            match (raw[i], raw.get(i + 1).copied()) {
                (b'\\', Some(b'x')) => {
                    let hex = raw
                        .get(i + 2..i + 4)
                        .and_then(|h| std::str::from_utf8(h).ok());
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => {
                            token.push(b);
                            i += 4;
                        }
                        None => {
                            token.push(b'x');
                            i += 2;
                        }
                    }
                }
                (b'\\', Some(c)) => {
                    token.push(c);
                    i += 2;
                }
                (c, _) => {
                    token.push(c);
                    i += 1;
                }
            }
        }
        tokens.push(token);
    }
    tokens
}

/// Runs one input; on a panic, saves the input and fails naming the target and the input.
fn run(target: &str, body: Target, input: &[u8], origin: &str) {
    let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(input))) else {
        return;
    };
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(a panic without a message)".to_string());
    let path = std::env::temp_dir().join(format!("eddy-fuzz-{target}-{:016x}", fnv1a(input)));
    let saved = match std::fs::write(&path, input) {
        Ok(()) => format!("saved to {}", path.display()),
        Err(e) => format!("could not be saved to {}: {e}", path.display()),
    };
    let shown = &input[..input.len().min(HEX_SHOWN_BYTES_MAX)];
    let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
    let more = if shown.len() < input.len() { "..." } else { "" };
    panic!(
        "fuzz target {target} panicked on {origin}: {message}\n\
         input: {} bytes, {saved}\n\
         hex: {hex}{more}\n\
         Once fixed, keep it: cp {} fuzz/regressions/{target}/",
        input.len(),
        path.display()
    );
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// xorshift64*: small, fast and the same on every machine, so every run mutates alike.
struct Rng(u64);

impl Rng {
    fn new(target: &str) -> Rng {
        Rng(fnv1a(target.as_bytes()) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Values that break decoders: the ends of each integer width, big-endian, and lengths.
const INTERESTING: [&[u8]; 16] = [
    &[0x00],
    &[0xff],
    &[0x7f],
    &[0x80],
    &[0x7f, 0xff],
    &[0x80, 0x00],
    &[0xff, 0xff],
    &[0x00, 0x00, 0x00, 0x00],
    &[0x00, 0x00, 0x00, 0x04],
    &[0x7f, 0xff, 0xff, 0xff],
    &[0x80, 0x00, 0x00, 0x00],
    &[0xff, 0xff, 0xff, 0xff],
    &[0x40, 0x00, 0x00, 0x00],
    &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
];

/// A corpus input changed by one to four mutations.
fn mutate(rng: &mut Rng, inputs: &[Vec<u8>], dict: &[Vec<u8>]) -> Vec<u8> {
    let mut data = inputs[rng.below(inputs.len())].clone();
    for _ in 0..1 + rng.below(4) {
        mutate_once(rng, &mut data, inputs, dict);
    }
    data.truncate(INPUT_BYTES_MAX);
    data
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, inputs: &[Vec<u8>], dict: &[Vec<u8>]) {
    let len = data.len();
    match rng.below(12) {
        // Flip a bit.
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        // Set a byte.
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.byte();
        }
        // Insert random bytes.
        2 => {
            let at = rng.below(len + 1);
            let bytes: Vec<u8> = (0..1 + rng.below(4)).map(|_| rng.byte()).collect();
            insert(data, at, &bytes);
        }
        // Delete a range.
        3 if len > 0 => {
            let start = rng.below(len);
            let n = 1 + rng.below((len - start).min(16));
            data.drain(start..start + n);
        }
        // Duplicate a chunk somewhere else.
        4 if len > 0 => {
            let start = rng.below(len);
            let n = 1 + rng.below((len - start).min(64));
            let chunk = data[start..start + n].to_vec();
            let at = rng.below(len + 1);
            insert(data, at, &chunk);
        }
        // Splice: this input's head, another's tail.
        5 => {
            let other = &inputs[rng.below(inputs.len())];
            data.truncate(rng.below(len + 1));
            data.extend_from_slice(&other[rng.below(other.len() + 1)..]);
        }
        // Overwrite with an interesting value.
        6 => {
            let value = INTERESTING[rng.below(INTERESTING.len())];
            overwrite(data, rng.below(len + 1), value);
        }
        // Make a length field (a big-endian i32 that fits the input) huge, negative or off by one.
        7 if len >= 4 => {
            let fields: Vec<usize> = (0..=len - 4)
                .filter(|&at| {
                    let v =
                        i32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
                    usize::try_from(v).is_ok_and(|v| v > 0 && v <= len)
                })
                .collect();
            let at = match fields.len() {
                0 => rng.below(len - 3),
                n => fields[rng.below(n)],
            };
            let v = i32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            let bad = [
                -1,
                -2,
                i32::MIN,
                i32::MAX,
                0,
                3,
                0x4000_0000,
                v.wrapping_add(1),
                v.wrapping_sub(1),
            ];
            overwrite(data, at, &bad[rng.below(bad.len())].to_be_bytes());
        }
        // Insert a dictionary token.
        8 if !dict.is_empty() => {
            let token = &dict[rng.below(dict.len())];
            insert(data, rng.below(len + 1), token);
        }
        // Overwrite with a dictionary token.
        9 if !dict.is_empty() => {
            let token = &dict[rng.below(dict.len())];
            overwrite(data, rng.below(len + 1), token);
        }
        // Cut the input short.
        10 => data.truncate(rng.below(len + 1)),
        // Change the first byte: the control byte of the COPY and message targets.
        11 if len > 0 => data[0] = rng.byte(),
        // A mutation that does not apply to this input: append a byte instead.
        _ => data.push(rng.byte()),
    }
}

/// Inserts `bytes` at `at`.
fn insert(data: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let tail = data.split_off(at);
    data.extend_from_slice(bytes);
    data.extend_from_slice(&tail);
}

/// Writes `value` at `at`, growing the input if it runs past the end.
fn overwrite(data: &mut Vec<u8>, at: usize, value: &[u8]) {
    let end = at + value.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[at..end].copy_from_slice(value);
}
