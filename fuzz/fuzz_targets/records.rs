//! Fuzzes the input side of `crossrank score`: `LineReader` over arbitrary bytes, `parse_record`
//! on every line as JSONL and as TSV, the output/rejects writers and `check_resume`. See
//! `check_records` in fuzz/src/checks.rs for the invariants. Seeds: fuzz/seeds/records.

#![no_main]

#[path = "../src/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_records(data));
