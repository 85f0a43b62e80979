//! Partial outputs and resuming them, in one place.
//!
//! `crossrank score --output FILE` writes `FILE.partial` ([`PartialFile`]) and renames it into
//! place only when the run completes; an interrupted or failed run leaves the partial file,
//! and `--resume` checks it against the input record by record ([`check_resume_windows`]) to
//! find where to continue ([`ResumePoint`]) before reopening it for appending.

use std::fs::File;
use std::io::{self, BufRead, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::records::{parse_record, Echo, Format, LineReader, Record};

/// An output that is either stdout, or a file written as a [`PartialFile`] and renamed into
/// place only when the run completes, so a failed run never leaves a plausible-looking
/// partial output behind.
pub enum AtomicOutput {
    Stdout(BufWriter<io::StdoutLock<'static>>),
    File(PartialFile),
}

impl AtomicOutput {
    pub fn create(name: &str) -> Result<Self> {
        Ok(if name == "-" {
            AtomicOutput::Stdout(BufWriter::with_capacity(1 << 20, io::stdout().lock()))
        } else {
            AtomicOutput::File(PartialFile::create(Path::new(name))?)
        })
    }

    pub fn writer(&mut self) -> &mut dyn Write {
        match self {
            AtomicOutput::Stdout(w) => w,
            AtomicOutput::File(f) => f.writer(),
        }
    }

    pub fn commit(self) -> Result<()> {
        match self {
            AtomicOutput::Stdout(mut w) => w.flush().map_err(|e| Error::io("<stdout>", e)),
            AtomicOutput::File(f) => f.commit(),
        }
    }
}

/// `out.jsonl` → `out.jsonl.partial`, next to the target so the rename stays on one filesystem.
pub fn temp_path_for(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    target.with_file_name(name)
}

/// A file written as `<target>.partial` and renamed to `<target>` when complete; an
/// interrupted or failed run leaves the `.partial` for `--resume`.
pub struct PartialFile {
    target: PathBuf,
    partial: PathBuf,
    writer: BufWriter<File>,
}

impl PartialFile {
    /// Starts an empty `<target>.partial`. A target that exists and is not a regular file
    /// (`/dev/stdout`, `/dev/null`, a FIFO, or a link to one) is written in place instead:
    /// renaming a file over it would replace the device node, and it has no partial state.
    pub fn create(target: &Path) -> Result<Self> {
        if std::fs::metadata(target).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            let file = File::options()
                .write(true)
                .open(target)
                .map_err(|e| Error::io(target, e))?;
            return Ok(Self::wrap(target, target.to_path_buf(), file));
        }
        let partial = temp_path_for(target);
        let file = File::create(&partial).map_err(|e| Error::io(&partial, e))?;
        Ok(Self::wrap(target, partial, file))
    }

    /// Reopens `<target>.partial` for appending after its first `keep` bytes.
    pub fn reopen(target: &Path, keep: u64) -> Result<Self> {
        let partial = temp_path_for(target);
        let mut file = File::options()
            .write(true)
            .open(&partial)
            .map_err(|e| Error::io(&partial, e))?;
        file.set_len(keep).map_err(|e| Error::io(&partial, e))?;
        file.seek(io::SeekFrom::End(0)).map_err(|e| Error::io(&partial, e))?;
        Ok(Self::wrap(target, partial, file))
    }

    fn wrap(target: &Path, partial: PathBuf, file: File) -> Self {
        PartialFile {
            target: target.to_path_buf(),
            partial,
            writer: BufWriter::with_capacity(1 << 20, file),
        }
    }

    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    pub fn writer(&mut self) -> &mut dyn Write {
        &mut self.writer
    }

    /// Written in place (a special file, see [`PartialFile::create`]), not renamed.
    fn in_place(&self) -> bool {
        self.partial == self.target
    }

    /// Flushes; removes the partial file when it holds nothing.
    pub fn close(mut self) -> Result<bool> {
        self.writer.flush().map_err(|e| Error::io(&self.partial, e))?;
        if self.in_place() {
            return Ok(true);
        }
        let len = self.writer.get_ref().metadata().map_or(1, |m| m.len());
        if len == 0 {
            let _ = std::fs::remove_file(&self.partial);
        }
        Ok(len > 0)
    }

    /// Flushes, syncs and renames into place.
    pub fn commit(mut self) -> Result<()> {
        self.writer.flush().map_err(|e| Error::io(&self.partial, e))?;
        if self.in_place() {
            return Ok(());
        }
        self.writer
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io(&self.partial, e))?;
        std::fs::rename(&self.partial, &self.target).map_err(|e| Error::io(&self.target, e))
    }
}

/// Where to continue an interrupted run, as found by [`check_resume`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResumePoint {
    /// Input lines kept as done (scored or rejected), from the first.
    pub lines: u64,
    /// Input lines the partial files were found to account for (`>= lines`).
    pub checked: u64,
    /// Output lines kept and the byte length they take.
    pub output_lines: u64,
    pub output_bytes: u64,
    /// Rejects lines kept and the byte length they take.
    pub rejects_lines: u64,
    pub rejects_bytes: u64,
    /// Bytes of a torn (unterminated) last line dropped from the output and rejects.
    pub torn_bytes: u64,
}

/// Complete lines of a partial file.
struct Complete<R> {
    inner: R,
    buf: Vec<u8>,
    torn: u64,
}

impl<R: BufRead> Complete<R> {
    fn new(inner: R) -> Self {
        Complete {
            inner,
            buf: Vec::new(),
            torn: 0,
        }
    }

    /// The next complete line (without its `\n`); a final line without `\n` is torn and
    /// counts as absent.
    fn next(&mut self) -> io::Result<Option<&[u8]>> {
        self.buf.clear();
        let n = self.inner.read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.last() != Some(&b'\n') {
            self.torn = n as u64;
            return Ok(None);
        }
        Ok(Some(&self.buf[..n - 1]))
    }
}

/// Checks that a partial output (and rejects file) of an interrupted run is what this input
/// produces, record by record, and finds where to continue: the start of the window (a
/// range of input lines the pipeline sorts and batches together, see
/// [`crate::pipeline::window_containing`]) holding the first input line that neither file
/// accounts for, so that the rest of the run forms the very batches an uninterrupted run
/// would. `is_window_start(n)` says whether a window starts after `n` lines. `reader` is left
/// so that its next line is the first one to score.
///
/// An output line matches an input record when, for JSONL, it is the input object plus
/// `logit` and `score` (compared without those two keys), and for TSV, the input line plus
/// two columns. A rejects line matches an input line it names by number and raw text. What
/// follows the returned point in each file (lines of the restarted window, lines one file
/// was flushed further than the other, a torn last line) is to be truncated.
#[allow(clippy::too_many_arguments)]
pub fn check_resume_windows<R: BufRead>(
    format: Format,
    reader: &mut LineReader<R>,
    input_name: &str,
    output: impl BufRead,
    output_name: &str,
    rejects: Option<impl BufRead>,
    rejects_name: &str,
    is_window_start: &dyn Fn(u64) -> bool,
) -> Result<ResumePoint> {
    let mut out = Complete::new(output);
    let mut rej = rejects.map(Complete::new);
    let mut point = ResumePoint::default();
    let mut checkpoint = ResumePoint::default();
    // Input lines read since `checkpoint`, given back to the reader at the end.
    let mut since: Vec<(Vec<u8>, Option<u64>)> = Vec::new();
    let mut out_next: Option<Vec<u8>> = None;
    let mut rej_next: Option<Vec<u8>> = None;
    let mut out_done = false;
    let mut rej_done = rej.is_none();
    loop {
        if is_window_start(point.lines) {
            checkpoint = point.clone();
            since.clear();
        }
        if out_next.is_none() && !out_done {
            match out.next().map_err(|e| Error::io(output_name, e))? {
                Some(l) => out_next = Some(l.to_vec()),
                None => out_done = true,
            }
        }
        if rej_next.is_none() && !rej_done {
            match rej
                .as_mut()
                .map(|r| r.next())
                .transpose()
                .map_err(|e| Error::io(rejects_name, e))?
            {
                Some(Some(l)) => rej_next = Some(l.to_vec()),
                _ => rej_done = true,
            }
        }
        if out_next.is_none() && rej_next.is_none() {
            break;
        }
        let Some((line, raw)) = reader.next_line().map_err(|e| Error::io(input_name, e))? else {
            // The input ends before the partial files do: they belong to another input.
            let (name, n) = if out_next.is_some() {
                (output_name, point.output_lines + 1)
            } else {
                (rejects_name, point.rejects_lines + 1)
            };
            return Err(Error::input(
                name,
                n,
                format!("partial output goes on past the end of the input {input_name}: not a run of this input (delete it to start over)"),
            ));
        };
        let raw = raw.to_vec();
        let oversized = reader.oversized();
        // A line over --max-line-bytes was rejected by the run (its prefix may still parse).
        let parsed = match oversized {
            Some(_) => Err(String::new()),
            None => parse_record(format, line, &raw),
        };
        since.push((raw, oversized));
        let raw = &since.last().expect("just pushed").0;
        match parsed {
            Ok(record) => {
                let Some(o) = out_next.take() else {
                    break;
                };
                if let Err(why) = output_matches(&record, &o) {
                    return Err(Error::input(
                        output_name,
                        point.output_lines + 1,
                        format!("partial output does not match input {input_name}:{line} ({why}); delete it or run without --resume"),
                    ));
                }
                point.output_lines += 1;
                point.output_bytes += o.len() as u64 + 1;
            }
            Err(_) => {
                let Some(r) = rej_next.take() else {
                    break;
                };
                if let Err(why) = reject_matches(line, raw, &r) {
                    return Err(Error::input(
                        rejects_name,
                        point.rejects_lines + 1,
                        format!("partial rejects file does not match input {input_name}:{line} ({why}); delete it or run without --resume"),
                    ));
                }
                point.rejects_lines += 1;
                point.rejects_bytes += r.len() as u64 + 1;
            }
        }
        point.lines = line;
    }
    reader.unread_lines(since);
    checkpoint.checked = point.lines;
    checkpoint.torn_bytes = out.torn + rej.map_or(0, |r| r.torn);
    Ok(checkpoint)
}

/// [`check_resume_windows`] continuing at the exact first line not accounted for (every
/// line a window start).
pub fn check_resume<R: BufRead>(
    format: Format,
    reader: &mut LineReader<R>,
    input_name: &str,
    output: impl BufRead,
    output_name: &str,
    rejects: Option<impl BufRead>,
    rejects_name: &str,
) -> Result<ResumePoint> {
    check_resume_windows(
        format,
        reader,
        input_name,
        output,
        output_name,
        rejects,
        rejects_name,
        &|_| true,
    )
}

fn output_matches(record: &Record, out: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(out).map_err(|_| "output line is not UTF-8".to_string())?;
    match &record.echo {
        Echo::Json(input) => {
            let Ok(Value::Object(mut got)) = serde_json::from_str::<Value>(text) else {
                return Err("output line is not a JSON object".into());
            };
            for key in ["logit", "score"] {
                match got.shift_remove(key) {
                    Some(Value::Number(_) | Value::Null) => {}
                    _ => return Err(format!("output line has no numeric `{key}`")),
                }
            }
            let mut want = input.clone();
            want.shift_remove("logit");
            want.shift_remove("score");
            if got != want {
                return Err("echoed fields differ".into());
            }
            Ok(())
        }
        Echo::Tsv(line) => {
            let rest = text
                .strip_prefix(line.as_str())
                .and_then(|r| r.strip_prefix('\t'))
                .ok_or("echoed columns differ")?;
            let cols: Vec<&str> = rest.split('\t').collect();
            if cols.len() != 2 || cols.iter().any(|c| c.parse::<f32>().is_err()) {
                return Err("output line does not end in logit and score columns".into());
            }
            Ok(())
        }
    }
}

fn reject_matches(line: u64, raw: &[u8], rejected: &[u8]) -> Result<(), String> {
    let v: Value = serde_json::from_slice(rejected).map_err(|_| "rejects line is not JSON".to_string())?;
    if v.get("line").and_then(Value::as_u64) != Some(line) {
        return Err(format!("it names line {}", v.get("line").unwrap_or(&Value::Null)));
    }
    if v.get("raw").and_then(Value::as_str) != Some(String::from_utf8_lossy(raw).as_ref()) {
        return Err("raw text differs".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::PairScore;
    use crate::records::write_scored;

    #[test]
    fn resume_restarts_at_the_window_holding_the_first_missing_line() {
        let input: String = (0..10)
            .map(|i| format!("{{\"id\": {i}, \"query\": \"q{i}\", \"document\": \"d\"}}\n"))
            .collect();
        let score = PairScore { logit: 0.5, score: 0.6 };
        let mut output = Vec::new();
        for line in input.lines().take(7) {
            let r = parse_record(Format::Jsonl, 1, line.as_bytes()).unwrap();
            write_scored(&mut output, &r, score).unwrap();
        }
        let seven = output.len() as u64;
        output.extend_from_slice(b"{\"id\": 7, \"que"); // torn
        let mut reader = LineReader::new(input.as_bytes());
        let windows_of_4 = |n: u64| n % 4 == 0;
        let point = check_resume_windows(
            Format::Jsonl,
            &mut reader,
            "in",
            &output[..],
            "out",
            None::<&[u8]>,
            "rej",
            &windows_of_4,
        )
        .unwrap();
        assert_eq!((point.checked, point.lines, point.output_lines), (7, 4, 4));
        let four = output.iter().enumerate().filter(|(_, &c)| c == b'\n').nth(3).unwrap().0 + 1;
        assert_eq!(point.output_bytes, four as u64);
        assert_eq!(point.torn_bytes, 14);
        let (line, raw) = reader.next_line().unwrap().unwrap();
        assert_eq!(line, 5);
        assert!(raw.starts_with(b"{\"id\": 4,"));
        let mut rest = 1;
        while reader.next_line().unwrap().is_some() {
            rest += 1;
        }
        assert_eq!(rest, 6);

        // Every line a window start: continue right after the last complete line.
        let mut reader = LineReader::new(input.as_bytes());
        let point = check_resume(
            Format::Jsonl,
            &mut reader,
            "in",
            &output[..],
            "out",
            None::<&[u8]>,
            "rej",
        )
        .unwrap();
        assert_eq!((point.lines, point.output_bytes), (7, seven));
        assert_eq!(reader.next_line().unwrap().unwrap().0, 8);

        // A different input is refused.
        let other = input.replace("q3", "q3x");
        let mut reader = LineReader::new(other.as_bytes());
        let err = check_resume(
            Format::Jsonl,
            &mut reader,
            "in",
            &output[..],
            "out",
            None::<&[u8]>,
            "rej",
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not match input in:4"), "{err}");
    }
}
