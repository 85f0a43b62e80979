//! The tokenizer workers: raw chunks parsed into records and tokenized (query ids from a
//! shared cache), or rejected.

use super::*;

/// One input line after parsing and tokenization.
pub(super) enum Item {
    Pair {
        line: u64,
        ids: Vec<u32>,
        /// Segment ids (empty: all 0), as [`crate::tokenize::EncodedPair::type_ids`].
        type_ids: Vec<u32>,
        truncated: bool,
        precut: bool,
        /// Raw line and ids: what the record costs the window.
        bytes: usize,
        rendered: Rendered,
    },
    Reject {
        line: u64,
        reason: String,
        raw: Vec<u8>,
    },
}

pub(super) struct ParsedChunk {
    pub(super) seq: u64,
    pub(super) items: Vec<Item>,
}

/// Returns the time spent working.
pub(super) fn tokenize_chunks(
    tokenizer: &PairTokenizer,
    (format, max_line_bytes): (Format, usize),
    rx: &Mutex<Receiver<RawChunk>>,
    tx: SyncSender<ParsedChunk>,
    cache: &QueryCache,
    ctl: &Control,
) -> Duration {
    let mut busy = Duration::ZERO;
    loop {
        let msg = rx.lock().unwrap().recv_timeout(Duration::from_millis(50));
        let chunk = match msg {
            Ok(c) => c,
            Err(RecvTimeoutError::Timeout) if !ctl.should_stop() => continue,
            Err(_) => return busy,
        };
        let t = Instant::now();
        let mut items = Vec::with_capacity(chunk.ends.len());
        let mut begin = 0;
        let mut oversized = chunk.oversized.iter().peekable();
        for (i, &end) in chunk.ends.iter().enumerate() {
            let line = chunk.first_line + i as u64;
            let raw = &chunk.data[begin..end];
            begin = end;
            if let Some(&(_, len)) = oversized.next_if(|(at, _)| *at == i) {
                items.push(Item::Reject {
                    line,
                    reason: format!("line is {len} bytes, longer than --max-line-bytes {max_line_bytes}"),
                    raw: raw.to_vec(),
                });
                continue;
            }
            match parse_record(format, line, raw) {
                Ok(record) => {
                    let encoded = cache.ids(tokenizer, &record.query).and_then(|q| {
                        let d = tokenizer.encode_side(&record.document)?;
                        Ok((tokenizer.assemble(&q.ids, &d.ids), q.precut || d.precut))
                    });
                    match encoded {
                        Ok((e, precut)) => items.push(Item::Pair {
                            line,
                            bytes: raw.len() + 4 * (e.ids.len() + e.type_ids.len()),
                            ids: e.ids,
                            type_ids: e.type_ids,
                            truncated: e.truncated,
                            precut,
                            rendered: Rendered::new(record.echo),
                        }),
                        Err(e) => {
                            ctl.fail(e);
                            return busy;
                        }
                    }
                }
                Err(reason) => items.push(Item::Reject {
                    line,
                    reason,
                    raw: raw.to_vec(),
                }),
            }
        }
        busy += t.elapsed();
        if tx.send(ParsedChunk { seq: chunk.seq, items }).is_err() {
            return busy;
        }
    }
}

/// Token ids of recent query strings. Two generations per shard: a full current generation
/// becomes the previous one (the one before is dropped), and a hit in the previous generation
/// moves the entry back to the current one, so memory stays bounded and repeated queries
/// stay cached.
pub(super) struct QueryCache {
    pub(super) shards: Vec<Mutex<CacheShard>>,
    pub(super) per_shard: usize,
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
}

#[derive(Default)]
pub(super) struct CacheShard {
    pub(super) current: HashMap<String, Arc<Side>>,
    pub(super) previous: HashMap<String, Arc<Side>>,
}

impl QueryCache {
    const SHARDS: usize = 16;

    pub(super) fn new(capacity: usize) -> Self {
        let shards = if capacity == 0 { 0 } else { Self::SHARDS };
        QueryCache {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(2 * Self::SHARDS).max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Queries longer than this are not cached: the cache's memory stays bounded by its
    /// capacity, whatever the records hold.
    const MAX_QUERY_BYTES: usize = 4096;

    pub(super) fn ids(&self, tokenizer: &PairTokenizer, query: &str) -> Result<Arc<Side>> {
        if self.shards.is_empty() || query.len() > Self::MAX_QUERY_BYTES {
            return Ok(tokenizer.encode_side(query)?.into());
        }
        let shard = &self.shards[shard_of(query)];
        {
            let mut s = shard.lock().unwrap();
            if let Some(ids) = s.current.get(query) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(ids.clone());
            }
            if let Some((key, ids)) = s.previous.remove_entry(query) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                s.current.insert(key, ids.clone());
                return Ok(ids);
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let ids: Arc<Side> = tokenizer.encode_side(query)?.into();
        let mut s = shard.lock().unwrap();
        if s.current.len() >= self.per_shard {
            s.previous = std::mem::take(&mut s.current);
        }
        s.current.insert(query.to_string(), ids.clone());
        Ok(ids)
    }
}

/// FNV-1a over the bytes: a cheap, stable shard index.
pub(super) fn shard_of(s: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s.as_bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    (h % QueryCache::SHARDS as u64) as usize
}
