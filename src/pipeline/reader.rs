//! The reader thread: input lines into raw chunks of `chunk_lines` lines, oversized lines cut.

use super::*;

/// Input lines as bytes: `data[ends[i-1]..ends[i]]` is line `first_line + i`.
pub(super) struct RawChunk {
    pub(super) seq: u64,
    pub(super) first_line: u64,
    pub(super) data: Vec<u8>,
    pub(super) ends: Vec<usize>,
    /// (index in the chunk, full length) of lines over `--max-line-bytes`: `data` holds only
    /// their first bytes.
    pub(super) oversized: Vec<(usize, u64)>,
}

pub(super) fn read_chunks<R: BufRead>(
    mut input: LineReader<R>,
    tx: SyncSender<RawChunk>,
    (chunk_lines, chunk_bytes): (usize, usize),
    ctl: &Control,
    name: &str,
) {
    let mut seq = 0;
    loop {
        let mut chunk = RawChunk {
            seq,
            first_line: 0,
            data: Vec::new(),
            ends: Vec::with_capacity(chunk_lines),
            oversized: Vec::new(),
        };
        let mut full = false;
        while chunk.ends.len() < chunk_lines && chunk.data.len() < chunk_bytes {
            match input.next_line() {
                Ok(Some((line, raw))) => {
                    if chunk.ends.is_empty() {
                        chunk.first_line = line;
                    }
                    if chunk.data.try_reserve(raw.len()).is_err() {
                        ctl.fail(Error::io(
                            name,
                            std::io::Error::new(
                                std::io::ErrorKind::OutOfMemory,
                                format!("line {line}: cannot allocate {} bytes for it", raw.len()),
                            ),
                        ));
                        return;
                    }
                    chunk.data.extend_from_slice(raw);
                    if let Some(len) = input.oversized() {
                        chunk.oversized.push((chunk.ends.len(), len));
                    }
                    chunk.ends.push(chunk.data.len());
                    full = chunk.ends.len() == chunk_lines || chunk.data.len() >= chunk_bytes;
                }
                Ok(None) => break,
                Err(e) => {
                    ctl.fail(Error::io(name, e));
                    return;
                }
            }
        }
        let last = !full;
        if !chunk.ends.is_empty() && tx.send(chunk).is_err() {
            return;
        }
        if last || ctl.should_stop() || ctl.stop_reading.load(Ordering::Relaxed) {
            return;
        }
        seq += 1;
    }
}
