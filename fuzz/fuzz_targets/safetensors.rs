//! Fuzzes safetensors checkpoint loading along the path real loading takes: header parse,
//! `GteTensors::new` + `validate` against the tiny fixture's config (and a micro variant),
//! then every tensor converted with `read_f32`/`read_f16`. See `check_safetensors` in
//! fuzz/src/checks.rs for the invariants. Seeds: fuzz/seeds/safetensors (fuzz/make_seeds.py)
//! plus tests/fixtures/tiny/model.safetensors, added by tools/fuzz.sh.

#![no_main]

#[path = "../src/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_safetensors(data));
