//! Parquet in and out of `crossrank score` on the tiny fixture: every row and column kept
//! (ints, floats, lists, structs, booleans, nulls, the three string layouts), input order,
//! scores bit-equal to the JSONL path, Parquet mixed with JSONL/TSV on either side, null and
//! non-string pairs rejected naming the row, and SIGKILL/SIGINT part-way then `--resume`
//! giving the rows of an uninterrupted run, none lost and none twice. The Parquet inputs are
//! written here with the parquet crate (no pyarrow needed).

mod common;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{Int32Builder, ListBuilder};
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, LargeStringArray, RecordBatch, StringArray, StringViewArray,
    StructArray,
};
use arrow_schema::{DataType, Field, SchemaRef};
use common::*;
use crossrank::error::exit_code;
use crossrank::parquet_io::ParquetLines;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

fn query(i: usize) -> String {
    let words = "Dept. of Physics, Graduate School of Science ".repeat(1 + i % 5);
    format!("{words}{i}")
}

fn document(i: usize) -> String {
    format!("University {}", i % 11)
}

/// `n` rows of many column types; `query` is `string_view`, `document` `large_string`.
fn typed_batch(n: usize) -> RecordBatch {
    let mut tags = ListBuilder::new(Int32Builder::new());
    for i in 0..n {
        if i % 4 == 3 {
            tags.append_null();
        } else {
            for t in 0..(i % 3) {
                tags.values().append_value((i * 10 + t) as i32);
            }
            tags.append(true);
        }
    }
    let meta = StructArray::from(vec![
        (
            Arc::new(Field::new("rank", DataType::Int64, true)),
            Arc::new(Int64Array::from_iter((0..n).map(|i| (i % 2 == 0).then_some(i as i64)))) as ArrayRef,
        ),
        (
            Arc::new(Field::new("source", DataType::Utf8, true)),
            Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("src{}", i % 3)))) as ArrayRef,
        ),
    ]);
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| i * 1000 - 7))),
        ),
        ("query", Arc::new(StringViewArray::from_iter_values((0..n).map(query)))),
        (
            "document",
            Arc::new(LargeStringArray::from_iter_values((0..n).map(document))),
        ),
        (
            "weight",
            Arc::new(Float64Array::from_iter(
                (0..n).map(|i| (i % 5 != 1).then_some(i as f64 / 3.0)),
            )),
        ),
        ("tags", Arc::new(tags.finish())),
        (
            "flag",
            Arc::new(BooleanArray::from_iter(
                (0..n).map(|i| (i % 7 != 2).then_some(i % 2 == 0)),
            )),
        ),
        ("meta", Arc::new(meta)),
        (
            "score",
            Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| -i))),
        ),
    ];
    RecordBatch::try_from_iter(columns).unwrap()
}

/// Writes `batch` as a Parquet file in row groups of `group_rows`.
fn write_parquet(path: &Path, batch: &RecordBatch, group_rows: usize) {
    let props = WriterProperties::builder().set_max_row_group_size(group_rows).build();
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// Pairs with a plain `query`/`document` string schema, some rows replaced by `bad`.
fn pairs_batch(n: usize, bad: &[usize]) -> RecordBatch {
    let q = StringArray::from_iter((0..n).map(|i| (!bad.contains(&i)).then(|| query(i))));
    let d = StringArray::from_iter_values((0..n).map(document));
    let id = Int64Array::from_iter_values(0..n as i64);
    RecordBatch::try_from_iter([
        ("id", Arc::new(id) as ArrayRef),
        ("query", Arc::new(q)),
        ("document", Arc::new(d)),
    ])
    .unwrap()
}

/// The part files of an output directory, by name; each one a complete Parquet file.
fn parts(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
}

/// Schema and row count of each part, read with the parquet crate directly.
fn part_shapes(dir: &Path) -> Vec<(SchemaRef, usize)> {
    parts(dir)
        .iter()
        .map(|p| {
            let b = ParquetRecordBatchReaderBuilder::try_new(File::open(p).unwrap()).unwrap();
            let schema = b.schema().clone();
            let rows: usize = b.build().unwrap().map(|r| r.unwrap().num_rows()).sum();
            (schema, rows)
        })
        .collect()
}

/// Every row of a Parquet file or directory as a JSON object.
fn rows(path: &Path) -> Vec<Value> {
    let mut text = String::new();
    ParquetLines::open(path, true)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn score_cli(input: &Path, output: &Path, extra: &[&str]) -> std::process::Output {
    run(crossrank()
        .args(["score", "--device", "cpu", "--model"])
        .arg(fixture_dir())
        .arg("-i")
        .arg(input)
        .arg("-o")
        .arg(output)
        .args(extra))
}

fn bits(v: &Value) -> u32 {
    (v.as_f64().unwrap() as f32).to_bits()
}

#[test]
fn parquet_round_trip_keeps_every_row_and_column_and_scores_equal_the_jsonl_path() {
    let dir = tempfile::tempdir().unwrap();
    let n = 37;
    let batch = typed_batch(n);
    let input = dir.path().join("in.parquet");
    write_parquet(&input, &batch, 10);
    let input_rows = rows(&input);
    assert_eq!(input_rows.len(), n);

    // The JSONL path on the same rows: the reference scores.
    let jsonl_in = dir.path().join("in.jsonl");
    let text: String = input_rows.iter().map(|r| r.to_string() + "\n").collect();
    std::fs::write(&jsonl_in, text).unwrap();
    let jsonl_out = dir.path().join("ref.jsonl");
    let o = score_cli(&jsonl_in, &jsonl_out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let reference = json_lines(&jsonl_out);
    assert_eq!(reference.len(), n);

    // Parquet -> Parquet, in parts of 8 rows.
    let out = dir.path().join("out.parquet");
    let o = score_cli(&input, &out, &["--part-rows", "8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("scored {n} pairs")), "{}", stderr(&o));
    assert!(out.is_dir() && !dir.path().join("out.parquet.partial").exists());
    let shapes = part_shapes(&out);
    assert_eq!(
        shapes.iter().map(|s| s.1).collect::<Vec<_>>(),
        [8, 8, 8, 8, 5],
        "parts of 8 rows"
    );
    // Schema: every input column with its type; `score` (an int64 input column) replaced in
    // place by float32, `logit` appended.
    let want_fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "score" => Field::new("score", DataType::Float32, true),
            _ => f.as_ref().clone(),
        })
        .chain([Field::new("logit", DataType::Float32, true)])
        .collect();
    for (schema, _) in &shapes {
        let got: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        assert_eq!(got, want_fields);
    }
    let got = rows(&out);
    assert_eq!(got.len(), n);
    for (i, ((g, inp), r)) in got.iter().zip(&input_rows).zip(&reference).enumerate() {
        for (k, v) in inp.as_object().unwrap() {
            if k != "score" {
                assert_eq!(&g[k], v, "row {i} column {k}");
            }
        }
        assert_eq!(
            bits(&g["logit"]),
            bits(&r["logit"]),
            "row {i}: logit differs from the JSONL path"
        );
        assert_eq!(
            bits(&g["score"]),
            bits(&r["score"]),
            "row {i}: score differs from the JSONL path"
        );
    }

    // Parquet -> JSONL: the rows as JSON objects, nulls kept, the same scores.
    let out_jsonl = dir.path().join("out.jsonl");
    let o = score_cli(&input, &out_jsonl, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&out_jsonl);
    assert_eq!(lines, reference, "Parquet in, JSONL out = JSONL in, JSONL out");
    assert!(lines[3]["tags"].is_null() && lines[1]["weight"].is_null());

    // JSONL -> Parquet: schema inferred from the rows; the same values and scores.
    let out2 = dir.path().join("from-jsonl.parquet");
    let o = score_cli(&jsonl_in, &out2, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = rows(&out2);
    assert_eq!(got.len(), n);
    for (i, (g, r)) in got.iter().zip(&reference).enumerate() {
        assert_eq!(g["id"], r["id"], "row {i}");
        assert_eq!(g["query"], r["query"], "row {i}");
        assert_eq!(g["tags"], r["tags"], "row {i}");
        assert_eq!(bits(&g["logit"]), bits(&r["logit"]), "row {i}");
    }

    // TSV -> Parquet: query, document, logit, score.
    let tsv_in = dir.path().join("in.tsv");
    let tsv: String = (0..n).map(|i| format!("{}\t{}\n", query(i), document(i))).collect();
    std::fs::write(&tsv_in, tsv).unwrap();
    let out3 = dir.path().join("from-tsv.parquet");
    let o = score_cli(&tsv_in, &out3, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = rows(&out3);
    let keys: Vec<&str> = got[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["query", "document", "logit", "score"]);
    for (i, (g, r)) in got.iter().zip(&reference).enumerate() {
        assert_eq!(g["document"], r["document"], "row {i}");
        assert_eq!(bits(&g["logit"]), bits(&r["logit"]), "row {i}");
        assert_eq!(bits(&g["score"]), bits(&r["score"]), "row {i}");
    }

    // Rerunning into an existing output directory replaces it.
    let o = score_cli(&input, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(part_shapes(&out).len(), 1);
    assert_eq!(rows(&out).len(), n);
}

#[test]
fn an_empty_parquet_input_gives_one_empty_part_with_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.parquet");
    write_parquet(&input, &pairs_batch(0, &[]), 10);
    let out = dir.path().join("out.parquet");
    let o = score_cli(&input, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shapes = part_shapes(&out);
    assert_eq!(shapes.len(), 1);
    assert_eq!(shapes[0].1, 0);
    let names: Vec<&str> = shapes[0].0.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "query", "document", "logit", "score"]);
}

#[test]
fn null_or_non_string_pairs_are_bad_records_naming_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.parquet");
    // Rows 3 and 9 (1-based) have a null query.
    write_parquet(&input, &pairs_batch(12, &[2, 8]), 5);
    let out = dir.path().join("out.parquet");

    let o = score_cli(&input, &out, &[]);
    assert_eq!(o.status.code(), Some(exit_code::INPUT), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("in.parquet:3: field `query` must be a string, found null"),
        "{err}"
    );
    // Everything before the bad row is kept, in closed parts.
    assert_eq!(rows(&dir.path().join("out.parquet.partial")).len(), 2);

    let o = score_cli(&input, &out, &["--on-error", "skip"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = rows(&out);
    let ids: Vec<i64> = got.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [0, 1, 3, 4, 5, 6, 7, 9, 10, 11]);
    let rejects = json_lines(&dir.path().join("out.parquet.rejects.jsonl"));
    let lines: Vec<u64> = rejects.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [3, 9]);
    let raw: Value = serde_json::from_str(rejects[0]["raw"].as_str().unwrap()).unwrap();
    assert_eq!(raw["id"], 2);

    // A non-string document column: every row is a bad record.
    let numbers = RecordBatch::try_from_iter([
        ("query", Arc::new(StringArray::from(vec!["q1", "q2"])) as ArrayRef),
        ("document", Arc::new(Int64Array::from(vec![1, 2]))),
    ])
    .unwrap();
    let input2 = dir.path().join("numbers.parquet");
    write_parquet(&input2, &numbers, 5);
    let o = score_cli(&input2, &dir.path().join("n.jsonl"), &[]);
    assert_eq!(o.status.code(), Some(exit_code::INPUT), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("numbers.parquet:1: field `document` must be a string, found a number"),
        "{}",
        stderr(&o)
    );

    // No query column at all: one clear error before any scoring.
    let nope = RecordBatch::try_from_iter([("text", Arc::new(StringArray::from(vec!["a"])) as ArrayRef)]).unwrap();
    let input3 = dir.path().join("nope.parquet");
    write_parquet(&input3, &nope, 5);
    let o = score_cli(&input3, &dir.path().join("x.jsonl"), &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no column `query` (columns: text)"),
        "{}",
        stderr(&o)
    );
}

const N_LONG: usize = 2500;
const SLOW: [&str; 10] = [
    "--threads",
    "1",
    "--batch-tokens",
    "192",
    "--window",
    "48",
    "--workers",
    "1",
    "--part-rows",
    "100",
];

fn spawn_score(input: &Path, output: &Path, extra: &[&str]) -> Child {
    crossrank()
        .args(["score", "--device", "cpu", "--quiet", "--model"])
        .arg(fixture_dir())
        .arg("-i")
        .arg(input)
        .arg("-o")
        .arg(output)
        .args(SLOW)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for_parts(dir: &Path, n: usize, child: &mut Child) {
    let start = Instant::now();
    loop {
        if dir.is_dir() && parts(dir).len() >= n {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("finished ({status}) before {n} parts were written");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn resume(input: &Path, output: &Path, extra: &[&str]) {
    let out = spawn_score(input, output, &[&["--resume"], extra].concat())
        .wait_with_output()
        .unwrap();
    assert!(out.status.success(), "resume: {}", stderr(&out));
}

#[test]
fn sigkill_or_sigint_part_way_then_resume_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.parquet");
    // Rows 14, 111, ... (1-based) have a null query: rejected under --on-error skip.
    let bad: Vec<usize> = (0..N_LONG).filter(|i| i % 97 == 13).collect();
    write_parquet(&input, &pairs_batch(N_LONG, &bad), 300);
    let skip = ["--on-error", "skip"];

    let reference = dir.path().join("ref.parquet");
    let out = spawn_score(&input, &reference, &skip).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let want = rows(&reference);
    assert_eq!(want.len(), N_LONG - bad.len());
    let want_rejects = std::fs::read(dir.path().join("ref.parquet.rejects.jsonl")).unwrap();

    let output = dir.path().join("out.parquet");
    let partial = dir.path().join("out.parquet.partial");
    let rejects = dir.path().join("out.parquet.rejects.jsonl");
    // SIGKILL: the closed parts survive; the part being written is lost and redone.
    let mut child = spawn_score(&input, &output, &skip);
    wait_for_parts(&partial, 3, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!output.exists());
    let kept = rows(&partial);
    assert!((300..want.len()).contains(&kept.len()), "{} rows kept", kept.len());
    assert_eq!(kept[..], want[..kept.len()], "closed parts hold a prefix of the output");
    resume(&input, &output, &skip);
    assert!(!partial.exists());
    let got = rows(&output);
    assert_eq!(got.len(), want.len(), "rows lost or duplicated");
    assert!(got == want, "resumed rows differ from an uninterrupted run");
    assert!(std::fs::read(&rejects).unwrap() == want_rejects);
    std::fs::remove_dir_all(&output).unwrap();
    std::fs::remove_file(&rejects).unwrap();

    // SIGINT: the part in progress is closed too; exit 130, then resume.
    let mut child = spawn_score(&input, &output, &skip);
    wait_for_parts(&partial, 2, &mut child);
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(exit_code::INTERRUPTED), "{}", stderr(&out));
    assert!(stderr(&out).contains("--resume"), "{}", stderr(&out));
    let kept = rows(&partial);
    assert!(!kept.is_empty() && kept.len() < want.len());
    assert_eq!(kept[..], want[..kept.len()]);
    resume(&input, &output, &skip);
    assert!(rows(&output) == want);
    assert!(std::fs::read(&rejects).unwrap() == want_rejects);
}

#[test]
fn resume_refuses_parts_of_another_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.parquet");
    write_parquet(&input, &pairs_batch(30, &[]), 30);
    let output = dir.path().join("out.parquet");
    let o = score_cli(&input, &output, &["--part-rows", "10"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Make its parts look like an interrupted run of a different input.
    std::fs::rename(&output, dir.path().join("out.parquet.partial")).unwrap();
    let other = dir.path().join("other.parquet");
    write_parquet(&other, &pairs_batch(30, &[]).slice(1, 29), 30);
    let o = score_cli(&other, &output, &["--resume"]);
    assert_eq!(o.status.code(), Some(exit_code::INPUT), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("partial output does not match input"),
        "{}",
        stderr(&o)
    );
}
