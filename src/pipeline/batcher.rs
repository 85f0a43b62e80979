//! The scheduler: parsed chunks back in input order, into windows of lines sorted by length
//! and packed into token-budget batches; what the writer and the forward thread receive.

use super::*;

/// What the writer holds of an input line until it can be written.
pub(super) enum WriterItem {
    Pair {
        rendered: Rendered,
        len: u32,
        truncated: bool,
        precut: bool,
        line: u64,
    },
    Reject {
        line: u64,
        reason: String,
        raw: Vec<u8>,
    },
}

pub(super) struct Batch {
    pub(super) window: u64,
    /// Item index (within the window) of each sequence.
    pub(super) slots: Vec<u32>,
    /// Input line of each sequence (for error messages).
    pub(super) lines: Vec<u64>,
    pub(super) packed: PackedBatch,
}

pub(super) enum WriterMsg {
    /// `credited`: the window holds a credit (it has batches), returned once it is written.
    Window {
        id: u64,
        items: Vec<WriterItem>,
        credited: bool,
    },
    Logits {
        window: u64,
        slots: Vec<u32>,
        logits: Vec<f32>,
    },
}

#[derive(Default)]
pub(super) struct WindowBuild {
    /// Raw bytes and ids of the records it holds.
    pub(super) bytes: usize,
    pub(super) items: Vec<WriterItem>,
    pub(super) ids: Vec<Vec<u32>>,
    pub(super) type_ids: Vec<Vec<u32>>,
    pub(super) slots: Vec<u32>,
    pub(super) lines: Vec<u64>,
}

#[derive(Default)]
pub(super) struct SchedulerStats {
    pub(super) windows: u64,
    pub(super) max_window_pairs: usize,
    pub(super) pack_busy: Duration,
    pub(super) peak_pending_pairs: u64,
}

pub(super) struct Scheduler<'a> {
    pub(super) engine: &'a Engine,
    pub(super) options: &'a PipelineOptions,
    pub(super) ctl: &'a Control,
    pub(super) batch_tx: mpsc::Sender<Batch>,
    pub(super) credit_tx: SyncSender<()>,
    pub(super) writer_tx: mpsc::Sender<WriterMsg>,
    pub(super) window: WindowBuild,
    pub(super) window_id: u64,
    /// End (exclusive, 0-based line index) of the window being filled.
    pub(super) window_end: u64,
    pub(super) stats: SchedulerStats,
    /// Pairs taken into windows so far.
    pub(super) admitted: u64,
    pub(super) written: &'a AtomicU64,
}

impl Scheduler<'_> {
    /// Returns whether the whole input went through (no stop, no error).
    pub(super) fn run(&mut self, rx: Receiver<ParsedChunk>) -> bool {
        let mut pending: BTreeMap<u64, Vec<Item>> = BTreeMap::new();
        let mut next_seq = 0u64;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(chunk) => {
                    pending.insert(chunk.seq, chunk.items);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.ctl.should_stop() {
                        return false;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if self.ctl.should_stop() || !pending.is_empty() {
                        return false;
                    }
                    return self.flush_window();
                }
            }
            while let Some(items) = pending.remove(&next_seq) {
                next_seq += 1;
                for item in items {
                    let (Item::Pair { line, .. } | Item::Reject { line, .. }) = &item;
                    let index = line - 1;
                    if index >= self.window_end {
                        if !self.flush_window() {
                            return false;
                        }
                        self.window_end = window_containing(index, self.options.window_lines).end;
                    }
                    match item {
                        Item::Pair {
                            line,
                            ids,
                            type_ids,
                            truncated,
                            precut,
                            bytes,
                            rendered,
                        } => {
                            let w = &mut self.window;
                            w.slots.push(w.items.len() as u32);
                            w.lines.push(line);
                            w.items.push(WriterItem::Pair {
                                rendered,
                                len: ids.len() as u32,
                                truncated,
                                precut,
                                line,
                            });
                            w.ids.push(ids);
                            w.type_ids.push(type_ids);
                            w.bytes += bytes;
                            self.admitted += 1;
                        }
                        Item::Reject { line, reason, raw } => {
                            self.window.bytes += raw.len();
                            if self.options.on_error == OnError::Stop {
                                self.ctl.defer(Error::input(&self.options.input_name, line, reason));
                                // Everything before the bad line is scored and written.
                                self.flush_window();
                                return false;
                            }
                            self.window.items.push(WriterItem::Reject { line, reason, raw });
                        }
                    }
                    // The window's last line: send it now rather than when the next arrives.
                    // A window over `window_bytes` also ends here; the next one runs to the
                    // same line-range end, so windows stay a function of the input from any
                    // line-range start (what `--resume` relies on).
                    let last = index + 1 == self.window_end || self.window.bytes >= self.options.window_bytes;
                    if last && !self.flush_window() {
                        return false;
                    }
                }
                // Sampled once per chunk; `written` lags a little, so this errs on the high side.
                let pending_pairs = self.admitted - self.written.load(Ordering::Relaxed);
                self.stats.peak_pending_pairs = self.stats.peak_pending_pairs.max(pending_pairs);
            }
            if self.ctl.should_stop() {
                return false;
            }
        }
    }

    /// Waits until fewer than WINDOWS_AHEAD windows are in flight; false if the run stops
    /// meanwhile (the writer, which returns credits, may then never return one).
    pub(super) fn take_credit(&self) -> bool {
        let mut pause = Duration::from_micros(100);
        loop {
            match self.credit_tx.try_send(()) {
                Ok(()) => return true,
                Err(mpsc::TrySendError::Disconnected(())) => return false,
                Err(mpsc::TrySendError::Full(())) => {
                    if self.ctl.should_stop() {
                        return false;
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(2));
                }
            }
        }
    }

    /// Sends the window to the writer and its batches to the forward thread; false if the
    /// run is stopping.
    pub(super) fn flush_window(&mut self) -> bool {
        if self.ctl.should_stop() {
            return false;
        }
        let w = std::mem::take(&mut self.window);
        if w.items.is_empty() {
            return true;
        }
        let id = self.window_id;
        self.window_id += 1;
        self.stats.windows += 1;
        self.stats.max_window_pairs = self.stats.max_window_pairs.max(w.ids.len());
        let t = Instant::now();
        let lengths: Vec<usize> = w.ids.iter().map(Vec::len).collect();
        let plan = plan_batches(&lengths, self.engine.batch_tokens(), usize::MAX);
        let batches: Vec<Batch> = plan
            .iter()
            .map(|group| Batch {
                window: id,
                slots: group.iter().map(|&i| w.slots[i]).collect(),
                lines: group.iter().map(|&i| w.lines[i]).collect(),
                packed: {
                    let mut packed = PackedBatch::new();
                    for &i in group {
                        packed.push_typed(&w.ids[i], &w.type_ids[i]);
                    }
                    packed
                },
            })
            .collect();
        drop(w.ids);
        drop(w.type_ids);
        self.stats.pack_busy += t.elapsed();
        if !batches.is_empty() && !self.take_credit() {
            return false;
        }
        let msg = WriterMsg::Window {
            id,
            items: w.items,
            credited: !batches.is_empty(),
        };
        if self.writer_tx.send(msg).is_err() {
            return false;
        }
        for b in batches {
            if self.batch_tx.send(b).is_err() {
                return false;
            }
        }
        true
    }
}
