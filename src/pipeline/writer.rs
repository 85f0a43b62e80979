//! The writer (the calling thread): results back in input order, output and rejects written.

use super::*;

pub(super) struct PendingWindow {
    pub(super) id: u64,
    pub(super) credited: bool,
    pub(super) items: Vec<WriterItem>,
    pub(super) logits: Vec<f32>,
    pub(super) ready: Vec<bool>,
    pub(super) next: usize,
}

pub(super) struct Writer<'a, 's> {
    pub(super) engine: &'a Engine,
    pub(super) credits: Receiver<()>,
    pub(super) sinks: Sinks<'s>,
    pub(super) options: &'a PipelineOptions,
    pub(super) ctl: &'a Control,
    pub(super) windows: VecDeque<PendingWindow>,
    pub(super) stats: RunStats,
    /// Rows and longest length of the current group of 32 (padded reference scheme).
    pub(super) group: (usize, u64),
    pub(super) written: &'a AtomicU64,
    pub(super) busy: Duration,
}

impl Writer<'_, '_> {
    /// False when writing failed (the run stops).
    pub(super) fn handle(&mut self, msg: WriterMsg) -> bool {
        match msg {
            WriterMsg::Window { id, items, credited } => {
                let ready = items.iter().map(|i| matches!(i, WriterItem::Reject { .. })).collect();
                self.windows.push_back(PendingWindow {
                    id,
                    logits: vec![0.0; items.len()],
                    items,
                    ready,
                    next: 0,
                    credited,
                });
            }
            WriterMsg::Logits { window, slots, logits } => {
                let front = self.windows.front().map_or(0, |w| w.id);
                let index = window.checked_sub(front).map(|i| i as usize);
                let Some(w) = index.and_then(|i| self.windows.get_mut(i)) else {
                    self.ctl
                        .fail(Error::Internal(format!("logits for unknown window {window}")));
                    return false;
                };
                for (slot, logit) in slots.into_iter().zip(logits) {
                    w.logits[slot as usize] = logit;
                    w.ready[slot as usize] = true;
                }
            }
        }
        let t = Instant::now();
        let ok = self.write_ready();
        self.busy += t.elapsed();
        ok
    }

    /// Writes every record whose predecessors are all written.
    pub(super) fn write_ready(&mut self) -> bool {
        while let Some(w) = self.windows.front_mut() {
            while w.next < w.items.len() && w.ready[w.next] {
                let i = w.next;
                w.next += 1;
                let result = match &w.items[i] {
                    WriterItem::Pair {
                        rendered,
                        len,
                        truncated,
                        precut,
                        line,
                    } => {
                        let (len, truncated) = (*len as u64, *truncated);
                        let s = &mut self.stats;
                        if *precut {
                            s.precut += 1;
                            if self.options.note_precut && s.precut <= PRECUT_NOTES {
                                eprintln!(
                                    "crossrank: note: {} line {line}: a side has no word boundary within {} bytes; \
                                     pre-cut there (ids may differ from Python tokenizers){}",
                                    self.options.input_name,
                                    crate::pretruncate::PreTruncation::bound_bytes(
                                        self.engine.tokenizer().max_length()
                                    ),
                                    if s.precut == PRECUT_NOTES {
                                        "; further pre-cut pairs are only counted"
                                    } else {
                                        ""
                                    }
                                );
                            }
                        }
                        s.pairs += 1;
                        s.tokens += len;
                        s.tokens_sq += len * len;
                        s.truncated += truncated as u64;
                        self.group.0 += 1;
                        self.group.1 = self.group.1.max(len);
                        if self.group.0 == PADDED_GROUP {
                            s.padded32_tokens += PADDED_GROUP as u64 * self.group.1;
                            self.group = (0, 0);
                        }
                        let score = self.engine.to_score(w.logits[i]);
                        rendered
                            .write(self.sinks.output, score)
                            .map_err(|e| Error::io(&self.options.output_name, e))
                    }
                    WriterItem::Reject { line, reason, raw } => {
                        self.stats.rejected += 1;
                        match self.sinks.rejects.as_mut() {
                            Some(out) => write_reject(*out, *line, reason, raw)
                                .map_err(|e| Error::io(&self.options.rejects_name, e)),
                            None => Ok(()),
                        }
                    }
                };
                if let Err(e) = result {
                    self.ctl.fail(e);
                    return false;
                }
                // Drop what is written (echo strings can be large).
                w.items[i] = WriterItem::Reject {
                    line: 0,
                    reason: String::new(),
                    raw: Vec::new(),
                };
            }
            self.written.store(self.stats.pairs, Ordering::Relaxed);
            if w.next < w.items.len() {
                break;
            }
            if w.credited {
                // Lets the scheduler queue another window: pairs between the scheduler
                // and the writer never exceed WINDOWS_AHEAD windows plus the one filling.
                let _ = self.credits.recv();
            }
            self.windows.pop_front();
        }
        true
    }

    /// False when flushing failed (the run stops).
    pub(super) fn flush(&mut self) -> bool {
        let t = Instant::now();
        let mut ok = true;
        if let Err(e) = self.sinks.output.flush() {
            self.ctl.fail(Error::io(&self.options.output_name, e));
            ok = false;
        }
        if let Some(r) = self.sinks.rejects.as_mut() {
            if let Err(e) = r.flush() {
                self.ctl.fail(Error::io(&self.options.rejects_name, e));
                ok = false;
            }
        }
        self.busy += t.elapsed();
        ok
    }

    pub(super) fn finish_group(&mut self) {
        if self.group.0 > 0 {
            self.stats.padded32_tokens += self.group.0 as u64 * self.group.1;
            self.group = (0, 0);
        }
    }
}
