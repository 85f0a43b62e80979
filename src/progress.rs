//! Progress of long runs on stderr: a bar on a terminal, a plain line every few seconds
//! otherwise (CI logs, nohup, Slurm), and one summary at the end.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Counters of a scoring run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    pub pairs: u64,
    /// Real tokens (special tokens included, no padding).
    pub tokens: u64,
    pub truncated: u64,
    /// Pairs with a side pre-cut at the tokenizer's work bound (ids may differ from Python).
    pub precut: u64,
    /// Malformed input lines written to the rejects file (`--on-error skip`).
    pub rejected: u64,
}

pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    start: Instant,
    last_line: Instant,
    interval: Duration,
    pub totals: Totals,
}

impl Progress {
    /// `total`: the number of pairs when known up front.
    pub fn new(quiet: bool, total: Option<u64>) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = match total {
                Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = if total.is_some() {
                "{bar:30} {pos}/{len} pairs {per_sec} eta {eta} {msg}"
            } else {
                "{spinner} {pos} pairs {per_sec} {msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            quiet,
            start: now,
            last_line: now,
            interval: Duration::from_secs(10),
            totals: Totals::default(),
        }
    }

    pub fn add(&mut self, pairs: u64, tokens: u64, truncated: u64) {
        let mut t = self.totals;
        t.pairs += pairs;
        t.tokens += tokens;
        t.truncated += truncated;
        self.set(t);
    }

    /// Replaces the counts done so far.
    pub fn set(&mut self, totals: Totals) {
        self.totals = totals;
        if let Some(bar) = &self.bar {
            bar.set_position(self.totals.pairs);
            return;
        }
        if !self.quiet && self.last_line.elapsed() >= self.interval {
            self.last_line = Instant::now();
            let s = self.start.elapsed().as_secs_f64();
            eprintln!(
                "crossrank: {} pairs, {:.0} pairs/s, {:.0} tokens/s, {} truncated, {} rejected",
                self.totals.pairs,
                self.totals.pairs as f64 / s,
                self.totals.tokens as f64 / s,
                self.totals.truncated,
                self.totals.rejected
            );
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Clears the bar and prints the summary line (unless quiet).
    pub fn finish(&self, what: &str) {
        self.finish_with(what, "");
    }

    /// [`finish`](Self::finish) with more on the summary line (e.g. `, 3 rejected`).
    pub fn finish_with(&self, what: &str, extra: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        let s = self.start.elapsed().as_secs_f64().max(1e-9);
        let t = self.totals;
        let precut = if t.precut > 0 {
            format!(", {} pre-cut (ids may differ from Python tokenizers)", t.precut)
        } else {
            String::new()
        };
        eprintln!(
            "crossrank: {what} {} pairs in {s:.2} s: {:.1} pairs/s, {:.0} tokens/s, {} truncated pairs{precut}{extra}",
            t.pairs,
            t.pairs as f64 / s,
            t.tokens as f64 / s,
            t.truncated
        );
    }
}
