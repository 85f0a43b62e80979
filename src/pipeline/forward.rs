//! The forward thread: batches through the engine (split on device OOM), logits to the writer.

use super::*;

#[derive(Default)]
pub(super) struct ForwardStats {
    pub(super) batches: u64,
    pub(super) max_batch_tokens: usize,
    pub(super) busy: Duration,
    pub(super) idle: Duration,
    pub(super) startup_wait: Duration,
}

pub(super) fn forward_batches(
    engine: &Engine,
    input_name: &str,
    rx: Receiver<Batch>,
    tx: mpsc::Sender<WriterMsg>,
    ctl: &Control,
) -> ForwardStats {
    let mut s = ForwardStats::default();
    let mut started = false;
    loop {
        let t = Instant::now();
        let Ok(batch) = rx.recv() else { break };
        if started {
            s.idle += t.elapsed();
        } else {
            s.startup_wait = t.elapsed();
            started = true;
        }
        if ctl.should_stop() {
            break;
        }
        let t = Instant::now();
        let result = engine.forward_split_on_oom(&batch.packed, &|i| format!("{input_name}:{}", batch.lines[i]));
        s.busy += t.elapsed();
        s.batches += 1;
        s.max_batch_tokens = s.max_batch_tokens.max(batch.packed.num_tokens());
        match result {
            Ok(logits) => {
                let msg = WriterMsg::Logits {
                    window: batch.window,
                    slots: batch.slots,
                    logits,
                };
                if tx.send(msg).is_err() {
                    break;
                }
            }
            Err(e) => {
                ctl.fail(e);
                break;
            }
        }
    }
    s
}
