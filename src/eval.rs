//! Reranking evaluation: MAP, MRR@k and NDCG@k of a model on labeled samples, computed as
//! sentence-transformers' `CrossEncoderRerankingEvaluator` computes them from `predict` scores
//! (the float32 activation output), with scikit-learn's `average_precision_score` and
//! `ndcg_score` as its metrics.
//!
//! The story, in order: [`read_samples`] parses an input file (the evaluator's samples, or
//! labeled pairs grouped by query) → [`plan_sample`] builds each sample's document list and
//! relevance labels as the evaluator does → the engine scores every planned pair in one
//! batched run ([`evaluate`]) → [`sample_metrics`] turns each sample's scores into its metrics
//! → [`EvalReport`] holds the means, the input-order ("base") metrics and the tie counts.
//!
//! Ties. NDCG (tie-averaged DCG) and MAP (one precision/recall point per distinct score) do not
//! depend on the order of tied documents; MRR does. The evaluator ranks with numpy's default
//! `argsort(scores)[::-1]`, whose order among equal scores depends on the CPU: numpy's scalar
//! introsort ([`numpy_argsort`], reproduced here exactly), or on x86 with AVX2/AVX-512 a SIMD
//! sorting network (measured with numpy 2.4.6: another order for lists of 5 or more with
//! ties). crossrank follows the scalar sort and reports how many queries have an MRR that
//! depends on the tie order, with the MRR range over all orders.

use std::collections::HashMap;
use std::io::BufRead;

use serde_json::{json, Map, Value};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::records::{json_kind, Format, LineReader};

/// One evaluation sample: a query, its relevant documents and its candidates.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// 1-based input line the sample starts on (for labeled pairs: its query's first row).
    pub line: u64,
    pub query: String,
    pub positive: Vec<String>,
    pub candidates: Candidates,
}

/// The evaluator's two sample layouts (exactly one per sample).
#[derive(Clone, Debug, PartialEq)]
pub enum Candidates {
    /// `negative`: irrelevant documents; the list scored is `positive + negative`.
    Negative(Vec<String>),
    /// `documents`: a first-stage ranking, best first, that may contain the positives. Its
    /// order gives the "base" metrics.
    Documents(Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalOptions {
    /// Cut-off of MRR@k and NDCG@k (the evaluator's `at_k`, default 10).
    pub at_k: usize,
    /// The evaluator's `always_rerank_positives` (default true): with `documents`, positives
    /// missing from the list are scored too. Without it only the listed documents are scored.
    /// Samples with `negative` always score `positive + negative`.
    pub always_rerank_positives: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            at_k: 10,
            always_rerank_positives: true,
        }
    }
}

/// MAP, MRR@k, NDCG@k of one sample, or their means.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Metrics {
    /// Average precision (`map` once averaged).
    pub ap: f64,
    pub mrr: f64,
    pub ndcg: f64,
}

/// What the model scores for one sample and how each scored document is labeled.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Documents to pair with the query, in the evaluator's order (empty when not scored).
    pub documents: Vec<String>,
    /// One label per document of `documents`.
    pub relevant: Vec<bool>,
    /// The evaluator's positive count (`len(positive)`, duplicates and unlisted ones included).
    pub positives: usize,
    /// The evaluator's negative count: documents of the list that are not relevant.
    pub negatives: usize,
    /// Metrics of the input order, for samples with `documents`.
    pub base: Option<Metrics>,
}

impl Plan {
    /// A sample with no relevant document counts 0 on every metric and is not scored.
    pub fn is_scored(&self) -> bool {
        self.relevant.iter().any(|&r| r)
    }
}

/// Builds a sample's document list and labels exactly as the evaluator does. Documents are
/// matched to positives by exact string equality.
pub fn plan_sample(sample: &Sample, options: &EvalOptions) -> Plan {
    let positive = &sample.positive;
    let is_positive = |d: &String| positive.contains(d);
    let (documents, relevant, base) = match &sample.candidates {
        Candidates::Negative(negative) => {
            let documents: Vec<String> = positive.iter().chain(negative).cloned().collect();
            let relevant: Vec<bool> = (0..documents.len()).map(|i| i < positive.len()).collect();
            (documents, relevant, None)
        }
        Candidates::Documents(listed) => {
            let mut base_relevant: Vec<bool> = listed.iter().map(is_positive).collect();
            let listed_positives = base_relevant.iter().filter(|&&r| r).count();
            let base = if listed_positives == 0 {
                Metrics::default()
            } else {
                // Positives missing from the list are ranked after it.
                base_relevant.extend(std::iter::repeat_n(
                    true,
                    positive.len().saturating_sub(listed_positives),
                ));
                let n = base_relevant.len();
                let input_order: Vec<f64> = (0..n).map(|i| (n - i) as f64).collect();
                sample_metrics(&base_relevant, &input_order, options.at_k).metrics
            };
            if options.always_rerank_positives {
                let documents: Vec<String> = positive
                    .iter()
                    .cloned()
                    .chain(listed.iter().filter(|d| !is_positive(d)).cloned())
                    .collect();
                let relevant: Vec<bool> = (0..documents.len()).map(|i| i < positive.len()).collect();
                (documents, relevant, Some(base))
            } else {
                let relevant = listed.iter().map(is_positive).collect();
                (listed.clone(), relevant, Some(base))
            }
        }
    };
    let negatives = relevant.iter().filter(|&&r| !r).count();
    let mut plan = Plan {
        documents,
        relevant,
        positives: positive.len(),
        negatives,
        base,
    };
    if !plan.is_scored() {
        plan.documents.clear();
        plan.relevant.clear();
    }
    plan
}

/// Indices best first, as the evaluator's `numpy.argsort(scores)[::-1]` with numpy's scalar
/// (non-SIMD) sort: [`numpy_argsort`] reversed.
pub fn descending_ranking(scores: &[f64]) -> Vec<usize> {
    let mut order = numpy_argsort(scores);
    order.reverse();
    order
}

/// Ascending argsort in the order numpy's default (`kind="quicksort"`) argsort gives when it
/// does not dispatch to SIMD code: an introsort (median-of-three partitions, insertion sort
/// for spans of at most 16, heapsort past a depth of 2·⌊log2 n⌋). The order of equal scores
/// is what the evaluator's MRR depends on, so this follows numpy's algorithm step for step
/// (checked against numpy 2.4.6 with `NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4"`).
pub fn numpy_argsort(v: &[f64]) -> Vec<usize> {
    const SMALL: usize = 15;
    let n = v.len();
    let mut a: Vec<usize> = (0..n).collect();
    if n < 2 {
        return a;
    }
    let less = |x: usize, y: usize| v[x] < v[y];
    let mut stack: Vec<(usize, usize, i64)> = Vec::new();
    let (mut lo, mut hi) = (0usize, n - 1);
    let mut depth = 2 * (usize::BITS - 1 - n.leading_zeros()) as i64;
    loop {
        if depth < 0 {
            numpy_heap_argsort(&mut a[lo..=hi], &less);
        } else {
            while hi - lo > SMALL {
                let mid = lo + ((hi - lo) >> 1);
                if less(a[mid], a[lo]) {
                    a.swap(mid, lo);
                }
                if less(a[hi], a[mid]) {
                    a.swap(hi, mid);
                }
                if less(a[mid], a[lo]) {
                    a.swap(mid, lo);
                }
                let pivot = a[mid];
                let (mut i, mut j) = (lo, hi - 1);
                a.swap(mid, j);
                loop {
                    i += 1;
                    while less(a[i], pivot) {
                        i += 1;
                    }
                    j -= 1;
                    while less(pivot, a[j]) {
                        j -= 1;
                    }
                    if i >= j {
                        break;
                    }
                    a.swap(i, j);
                }
                a.swap(i, hi - 1);
                depth -= 1;
                // The larger side waits on the stack; the smaller one is sorted next.
                if i - lo < hi - i {
                    stack.push((i + 1, hi, depth));
                    hi = i - 1;
                } else {
                    stack.push((lo, i - 1, depth));
                    lo = i + 1;
                }
            }
            for i in lo + 1..=hi {
                let item = a[i];
                let mut j = i;
                while j > lo && less(item, a[j - 1]) {
                    a[j] = a[j - 1];
                    j -= 1;
                }
                a[j] = item;
            }
        }
        match stack.pop() {
            Some((l, h, d)) => (lo, hi, depth) = (l, h, d),
            None => break,
        }
    }
    a
}

/// numpy's indirect heapsort (its introsort's fallback), on one span of indices.
fn numpy_heap_argsort(a: &mut [usize], less: &dyn Fn(usize, usize) -> bool) {
    // 1-based heap positions, as numpy's.
    let sift = |a: &mut [usize], start: usize, len: usize| {
        let item = a[start - 1];
        let (mut i, mut j) = (start, start << 1);
        while j <= len {
            if j < len && less(a[j - 1], a[j]) {
                j += 1;
            }
            if less(item, a[j - 1]) {
                a[i - 1] = a[j - 1];
                i = j;
                j += j;
            } else {
                break;
            }
        }
        a[i - 1] = item;
    };
    let mut len = a.len();
    for start in (1..=len >> 1).rev() {
        sift(a, start, len);
    }
    while len > 1 {
        a.swap(0, len - 1);
        len -= 1;
        sift(a, 1, len);
    }
}

/// Reciprocal rank of the first relevant document within the top `k` of
/// [`descending_ranking`]; 0 when none is there.
pub fn mrr_at_k(relevant: &[bool], scores: &[f64], k: usize) -> f64 {
    descending_ranking(scores)
        .iter()
        .take(k)
        .position(|&i| relevant[i])
        .map_or(0.0, |rank| 1.0 / (rank + 1) as f64)
}

/// The best and worst MRR@k over every order of tied documents.
pub fn mrr_range_at_k(relevant: &[bool], scores: &[f64], k: usize) -> (f64, f64) {
    let Some(best_relevant) = relevant
        .iter()
        .zip(scores)
        .filter(|(&r, _)| r)
        .map(|(_, &s)| s)
        .max_by(|a, b| a.partial_cmp(b).unwrap())
    else {
        return (0.0, 0.0);
    };
    let above = scores.iter().filter(|&&s| s > best_relevant).count();
    let tied_irrelevant = relevant
        .iter()
        .zip(scores)
        .filter(|(&r, &s)| !r && s == best_relevant)
        .count();
    let reciprocal = |rank: usize| if rank <= k { 1.0 / rank as f64 } else { 0.0 };
    (reciprocal(above + tied_irrelevant + 1), reciprocal(above + 1))
}

/// `1 / log2(rank + 1)` for ranks `1..=n`, zero past `k` (scikit-learn's DCG discount).
fn discounts(n: usize, k: usize) -> Vec<f64> {
    (0..n)
        .map(|i| if i < k { 1.0 / ((i + 2) as f64).log2() } else { 0.0 })
        .collect()
}

/// Distinct scores, best first, each with the indices that have it.
fn tie_groups(scores: &[f64]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap().then(a.cmp(&b)));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match groups.last_mut() {
            Some(group) if scores[group[0]] == scores[i] => group.push(i),
            _ => groups.push(vec![i]),
        }
    }
    groups
}

/// NDCG@k of binary labels as scikit-learn's `ndcg_score([relevant], [scores], k=k)`: the DCG
/// of tied documents is their mean gain times the sum of the discounts of the ranks they
/// share; the ideal DCG ranks every relevant document first; 0 when nothing is relevant.
pub fn ndcg_at_k(relevant: &[bool], scores: &[f64], k: usize) -> f64 {
    let discount = discounts(relevant.len(), k);
    let mut dcg = 0.0;
    let mut rank = 0;
    for group in tie_groups(scores) {
        let gain = group.iter().filter(|&&i| relevant[i]).count() as f64 / group.len() as f64;
        let shared: f64 = discount[rank..rank + group.len()].iter().sum();
        dcg += gain * shared;
        rank += group.len();
    }
    let num_relevant = relevant.iter().filter(|&&r| r).count();
    let ideal: f64 = discount[..num_relevant].iter().sum();
    if ideal == 0.0 {
        0.0
    } else {
        dcg / ideal
    }
}

/// Average precision as scikit-learn's `average_precision_score(relevant, scores)`: one
/// precision/recall point per distinct score (tied documents enter together), AP = Σ over
/// those points of (recall gained) × precision. 0 when nothing is relevant.
pub fn average_precision(relevant: &[bool], scores: &[f64]) -> f64 {
    let total = relevant.iter().filter(|&&r| r).count();
    if total == 0 {
        return 0.0;
    }
    let (mut seen, mut hits, mut ap) = (0usize, 0usize, 0.0);
    for group in tie_groups(scores) {
        let new_hits = group.iter().filter(|&&i| relevant[i]).count();
        seen += group.len();
        hits += new_hits;
        if new_hits > 0 {
            ap += (new_hits as f64 / total as f64) * (hits as f64 / seen as f64);
        }
    }
    ap
}

/// Documents whose score equals another document's score in the same list.
pub fn tied_scores(scores: &[f64]) -> usize {
    tie_groups(scores).iter().filter(|g| g.len() > 1).map(Vec::len).sum()
}

/// One sample's metrics and tie facts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleMetrics {
    pub metrics: Metrics,
    /// The best and worst MRR@k over all orders of tied documents (equal to `metrics.mrr` at
    /// both ends unless the MRR depends on the tie order).
    pub mrr_range: (f64, f64),
    pub tied_scores: usize,
}

/// The evaluator's `compute_metrics(is_relevant, pred_scores)` for one sample.
pub fn sample_metrics(relevant: &[bool], scores: &[f64], k: usize) -> SampleMetrics {
    assert_eq!(relevant.len(), scores.len(), "one score per document");
    SampleMetrics {
        metrics: Metrics {
            ap: average_precision(relevant, scores),
            mrr: mrr_at_k(relevant, scores, k),
            ndcg: ndcg_at_k(relevant, scores, k),
        },
        mrr_range: mrr_range_at_k(relevant, scores, k),
        tied_scores: tied_scores(scores),
    }
}

/// One query of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    pub line: u64,
    pub query: String,
    pub positives: usize,
    pub negatives: usize,
    /// Documents scored (0 for a sample with no relevant document).
    pub scored: usize,
    pub metrics: Metrics,
    pub base: Option<Metrics>,
    pub mrr_range: (f64, f64),
    pub tied_scores: usize,
}

/// Min, mean and max of a count over the samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CountStats {
    pub min: usize,
    pub mean: f64,
    pub max: usize,
}

impl CountStats {
    fn of(values: impl Iterator<Item = usize> + Clone) -> CountStats {
        let n = values.clone().count().max(1);
        CountStats {
            min: values.clone().min().unwrap_or(0),
            mean: values.clone().sum::<usize>() as f64 / n as f64,
            max: values.max().unwrap_or(0),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct EvalReport {
    pub options: EvalOptions,
    pub queries: usize,
    pub positives: CountStats,
    pub negatives: CountStats,
    /// Means over all samples (`map`, `mrr@k`, `ndcg@k`).
    pub metrics: Metrics,
    /// Means of the input-order metrics over the samples with `documents`; `None` when no
    /// sample has `documents`.
    pub base: Option<Metrics>,
    /// Mean MRR@k if every tie were broken against / in favour of the relevant documents.
    pub mrr_range: (f64, f64),
    pub per_query: Vec<QueryResult>,
    /// Pairs scored by the model.
    pub scored_pairs: usize,
    /// Scored pairs cut to the max length (set by [`evaluate`]).
    pub truncated_pairs: usize,
    /// Scored documents whose score equals another document's of the same query.
    pub tied_scores: usize,
    pub queries_with_ties: usize,
    /// Queries whose MRR@k depends on the order of tied documents.
    pub mrr_tie_dependent: usize,
    /// Scored samples of a single document: scikit-learn's `ndcg_score` refuses them (so the
    /// evaluator stops with an error); here they get the value of the formula, 1.
    pub single_document: usize,
}

impl EvalReport {
    /// The `(name, value)` pairs of the evaluator's result dict: `map`, `mrr@k`, `ndcg@k`,
    /// then `base_*` when there are base metrics.
    pub fn metric_values(&self) -> Vec<(String, f64)> {
        let k = self.options.at_k;
        let mut out = vec![
            ("map".to_string(), self.metrics.ap),
            (format!("mrr@{k}"), self.metrics.mrr),
            (format!("ndcg@{k}"), self.metrics.ndcg),
        ];
        if let Some(b) = self.base {
            out.push(("base_map".to_string(), b.ap));
            out.push((format!("base_mrr@{k}"), b.mrr));
            out.push((format!("base_ndcg@{k}"), b.ndcg));
        }
        out
    }

    /// The model card's form, `0.9666 (-0.0334)`: the metric and its change from the base;
    /// `None` without base metrics.
    pub fn model_card(&self) -> Option<Vec<(String, String)>> {
        let base = self.base?;
        let k = self.options.at_k;
        let form = |m: f64, b: f64| format!("{m:.4} ({:+.4})", m - b);
        Some(vec![
            ("map".to_string(), form(self.metrics.ap, base.ap)),
            (format!("mrr@{k}"), form(self.metrics.mrr, base.mrr)),
            (format!("ndcg@{k}"), form(self.metrics.ndcg, base.ndcg)),
        ])
    }

    /// The JSON report: the metric keys at the top level (as the evaluator returns them), then
    /// the counts and the tie facts.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        for (name, value) in self.metric_values() {
            obj.insert(name, json!(value));
        }
        if let Some(card) = self.model_card() {
            let card: Map<String, Value> = card.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            obj.insert("model_card".into(), Value::Object(card));
        }
        let stats = |s: &CountStats| json!({"min": s.min, "mean": s.mean, "max": s.max});
        obj.insert("at_k".into(), json!(self.options.at_k));
        obj.insert(
            "always_rerank_positives".into(),
            json!(self.options.always_rerank_positives),
        );
        obj.insert("queries".into(), json!(self.queries));
        obj.insert("positives".into(), stats(&self.positives));
        obj.insert("negatives".into(), stats(&self.negatives));
        obj.insert("scored_pairs".into(), json!(self.scored_pairs));
        obj.insert("truncated_pairs".into(), json!(self.truncated_pairs));
        obj.insert("tied_scores".into(), json!(self.tied_scores));
        obj.insert("queries_with_ties".into(), json!(self.queries_with_ties));
        obj.insert("mrr_tie_dependent_queries".into(), json!(self.mrr_tie_dependent));
        obj.insert(
            format!("mrr@{}_range", self.options.at_k),
            json!([self.mrr_range.0, self.mrr_range.1]),
        );
        obj.insert("single_document_samples".into(), json!(self.single_document));
        Value::Object(obj)
    }

    /// One JSON object per query, in input order.
    pub fn per_query_json(&self) -> impl Iterator<Item = Value> + '_ {
        let k = self.options.at_k;
        self.per_query.iter().map(move |q| {
            let mut obj = Map::new();
            obj.insert("line".into(), json!(q.line));
            obj.insert("query".into(), json!(q.query));
            obj.insert("positives".into(), json!(q.positives));
            obj.insert("negatives".into(), json!(q.negatives));
            obj.insert("scored".into(), json!(q.scored));
            obj.insert("ap".into(), json!(q.metrics.ap));
            obj.insert(format!("mrr@{k}"), json!(q.metrics.mrr));
            obj.insert(format!("ndcg@{k}"), json!(q.metrics.ndcg));
            if let Some(b) = q.base {
                obj.insert("base_ap".into(), json!(b.ap));
                obj.insert(format!("base_mrr@{k}"), json!(b.mrr));
                obj.insert(format!("base_ndcg@{k}"), json!(b.ndcg));
            }
            obj.insert("tied_scores".into(), json!(q.tied_scores));
            if q.mrr_range.0 != q.mrr_range.1 {
                obj.insert(format!("mrr@{k}_range"), json!([q.mrr_range.0, q.mrr_range.1]));
            }
            Value::Object(obj)
        })
    }

    /// The table printed by `crossrank eval`.
    pub fn table(&self) -> String {
        let k = self.options.at_k;
        let mut out = format!(
            "Queries: {}\tPositives: Min {:.1}, Mean {:.1}, Max {:.1}\tNegatives: Min {:.1}, Mean {:.1}, Max {:.1}\n",
            self.queries,
            self.positives.min as f64,
            self.positives.mean,
            self.positives.max as f64,
            self.negatives.min as f64,
            self.negatives.mean,
            self.negatives.max as f64,
        );
        let names = ["MAP".to_string(), format!("MRR@{k}"), format!("NDCG@{k}")];
        let values = [self.metrics.ap, self.metrics.mrr, self.metrics.ndcg];
        match (self.base, self.model_card()) {
            (Some(b), Some(card)) => {
                out += &format!("{:<10} {:>8} {:>10}   model card\n", "", "base", "reranked");
                let bases = [b.ap, b.mrr, b.ndcg];
                for ((name, v), (base, (_, card))) in names.iter().zip(values).zip(bases.iter().zip(card)) {
                    out += &format!("{:<10} {:>8.4} {:>10.4}   {card}\n", format!("{name}:"), base, v);
                }
            }
            _ => {
                for (name, v) in names.iter().zip(values) {
                    out += &format!("{:<10} {:>8.4}\n", format!("{name}:"), v);
                }
            }
        }
        out += &format!(
            "Tied scores: {} documents in {} queries share their score with another document of the query",
            self.tied_scores, self.queries_with_ties
        );
        if self.mrr_tie_dependent > 0 {
            out += &format!(
                "; the MRR@{k} of {} queries depends on the tie order (mean MRR@{k} between {:.4} and {:.4})",
                self.mrr_tie_dependent, self.mrr_range.0, self.mrr_range.1
            );
        }
        out.push('\n');
        if self.single_document > 0 {
            out += &format!(
                "Note: {} samples have a single document: scikit-learn's ndcg_score (and so sentence-transformers' evaluator) refuses them; counted here with NDCG 1\n",
                self.single_document
            );
        }
        out
    }
}

/// The report of samples whose planned documents were scored: `scores` holds one score per
/// document of every scored plan, in plan order.
pub fn report(samples: &[Sample], plans: &[Plan], scores: &[f32], options: &EvalOptions) -> Result<EvalReport> {
    if samples.is_empty() {
        return Err(Error::InvalidArgument("no samples to evaluate".into()));
    }
    let needed: usize = plans.iter().map(|p| p.documents.len()).sum();
    if needed != scores.len() {
        return Err(Error::Internal(format!(
            "{} scores for {needed} planned documents",
            scores.len()
        )));
    }
    let mut per_query = Vec::with_capacity(samples.len());
    let mut offset = 0;
    for (sample, plan) in samples.iter().zip(plans) {
        let n = plan.documents.len();
        let own: Vec<f64> = scores[offset..offset + n].iter().map(|&s| s as f64).collect();
        offset += n;
        if let Some(i) = own.iter().position(|s| s.is_nan()) {
            return Err(Error::Internal(format!(
                "the model scored NaN for the sample of line {}, document {:?}",
                sample.line, plan.documents[i]
            )));
        }
        let (metrics, mrr_range, tied) = if plan.is_scored() {
            let m = sample_metrics(&plan.relevant, &own, options.at_k);
            (m.metrics, m.mrr_range, m.tied_scores)
        } else {
            (Metrics::default(), (0.0, 0.0), 0)
        };
        per_query.push(QueryResult {
            line: sample.line,
            query: sample.query.clone(),
            positives: plan.positives,
            negatives: plan.negatives,
            scored: n,
            metrics,
            base: plan.base,
            mrr_range,
            tied_scores: tied,
        });
    }
    let count = per_query.len() as f64;
    let mean = |f: &dyn Fn(&QueryResult) -> f64| per_query.iter().map(f).sum::<f64>() / count;
    let metrics = Metrics {
        ap: mean(&|q| q.metrics.ap),
        mrr: mean(&|q| q.metrics.mrr),
        ndcg: mean(&|q| q.metrics.ndcg),
    };
    let with_base: Vec<Metrics> = per_query.iter().filter_map(|q| q.base).collect();
    let base = (!with_base.is_empty()).then(|| {
        let n = with_base.len() as f64;
        Metrics {
            ap: with_base.iter().map(|b| b.ap).sum::<f64>() / n,
            mrr: with_base.iter().map(|b| b.mrr).sum::<f64>() / n,
            ndcg: with_base.iter().map(|b| b.ndcg).sum::<f64>() / n,
        }
    });
    Ok(EvalReport {
        options: *options,
        queries: per_query.len(),
        positives: CountStats::of(per_query.iter().map(|q| q.positives)),
        negatives: CountStats::of(per_query.iter().map(|q| q.negatives)),
        metrics,
        base,
        mrr_range: (mean(&|q| q.mrr_range.0), mean(&|q| q.mrr_range.1)),
        scored_pairs: needed,
        truncated_pairs: 0,
        tied_scores: per_query.iter().map(|q| q.tied_scores).sum(),
        queries_with_ties: per_query.iter().filter(|q| q.tied_scores > 0).count(),
        mrr_tie_dependent: per_query.iter().filter(|q| q.mrr_range.0 != q.mrr_range.1).count(),
        single_document: per_query.iter().filter(|q| q.scored == 1).count(),
        per_query,
    })
}

/// Plans every sample, scores all planned pairs with `engine` in one batched run
/// (`progress(pairs, tokens)` after each batch) and returns the report.
pub fn evaluate(
    engine: &Engine,
    samples: &[Sample],
    options: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport> {
    if options.at_k == 0 {
        return Err(Error::InvalidArgument("at_k must be at least 1".into()));
    }
    let plans: Vec<Plan> = samples.iter().map(|s| plan_sample(s, options)).collect();
    let pairs: Vec<(&str, &str)> = samples
        .iter()
        .zip(&plans)
        .flat_map(|(s, p)| p.documents.iter().map(move |d| (s.query.as_str(), d.as_str())))
        .collect();
    let encoded = engine.tokenizer().encode_pairs(&pairs)?;
    let logits = engine.score_encoded_with(&encoded, progress)?;
    let scores: Vec<f32> = logits.into_iter().map(|l| engine.to_score(l).score).collect();
    let mut report = report(samples, &plans, &scores, options)?;
    report.truncated_pairs = encoded.iter().filter(|e| e.truncated).count();
    Ok(report)
}

/// Reads evaluation samples. JSONL lines are either the evaluator's samples
/// (`{"query", "positive": [..] | "...", "negative": [..]}` or `{"query", "positive",
/// "documents": [..]}`) or labeled pairs (`{"query", "document", "label"}`), one kind per file;
/// TSV lines are labeled pairs `query<TAB>document<TAB>label` (an optional first line
/// `query<TAB>document<TAB>label` is a header). Labeled pairs are grouped by query string, in
/// the order queries first appear: label 1 rows are its positives, label 0 rows its negatives,
/// each in input order. A malformed line is an error naming `name` and the line.
pub fn read_samples(input: impl BufRead, name: &str, format: Format) -> Result<Vec<Sample>> {
    let mut reader = LineReader::new(input);
    let mut samples: Vec<Sample> = Vec::new();
    let mut group_of: HashMap<String, usize> = HashMap::new();
    let mut kind: Option<(bool, u64)> = None; // (labeled pairs?, first line)
    while let Some((line, raw)) = reader.next_line().map_err(|e| Error::io(name, e))? {
        let bad = |msg: String| Error::input(name, line, msg);
        let text = std::str::from_utf8(raw).map_err(|e| bad(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
        let parsed = match format {
            Format::Tsv => {
                if line == 1 && text == "query\tdocument\tlabel" {
                    continue;
                }
                parse_tsv_pair(text).map(|(q, d, l)| Parsed::Pair(q, d, l))
            }
            Format::Jsonl => parse_json_line(text),
        }
        .map_err(bad)?;
        let is_pair = matches!(parsed, Parsed::Pair(..));
        match kind {
            None => kind = Some((is_pair, line)),
            Some((first_is_pair, first)) if first_is_pair != is_pair => {
                let what = |p: bool| if p { "a labeled pair" } else { "a sample" };
                return Err(Error::input(
                    name,
                    line,
                    format!(
                        "{} in a file whose line {first} is {}: use one format per file",
                        what(is_pair),
                        what(first_is_pair)
                    ),
                ));
            }
            Some(_) => {}
        }
        match parsed {
            Parsed::Sample(query, positive, candidates) => samples.push(Sample {
                line,
                query,
                positive,
                candidates,
            }),
            Parsed::Pair(query, document, label) => {
                let index = *group_of.entry(query.clone()).or_insert_with(|| {
                    samples.push(Sample {
                        line,
                        query,
                        positive: Vec::new(),
                        candidates: Candidates::Negative(Vec::new()),
                    });
                    samples.len() - 1
                });
                let sample = &mut samples[index];
                if label {
                    sample.positive.push(document);
                } else if let Candidates::Negative(negative) = &mut sample.candidates {
                    negative.push(document);
                }
            }
        }
    }
    if samples.is_empty() {
        return Err(Error::input(name, reader.lines_read(), "no samples in the file"));
    }
    Ok(samples)
}

enum Parsed {
    Sample(String, Vec<String>, Candidates),
    Pair(String, String, bool),
}

fn parse_json_line(text: &str) -> std::result::Result<Parsed, String> {
    if text.trim().is_empty() {
        return Err("blank line".into());
    }
    let value: Value = serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("expected a JSON object".into());
    };
    let query = match obj.get("query") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(format!("field `query` must be a string, found {}", json_kind(other))),
        None => return Err("missing field `query`".into()),
    };
    if obj.contains_key("positive") {
        let positive = match &obj["positive"] {
            Value::String(s) => vec![s.clone()],
            other => string_list(other, "positive")?,
        };
        let candidates = match (obj.get("negative"), obj.get("documents")) {
            (Some(n), None) => Candidates::Negative(string_list(n, "negative")?),
            (None, Some(d)) => {
                let documents = string_list(d, "documents")?;
                if documents.is_empty() {
                    return Err(
                        "`documents` is empty (the evaluator fails on such a sample); use `\"negative\": []`".into(),
                    );
                }
                Candidates::Documents(documents)
            }
            _ => return Err("a sample needs exactly one of `negative` and `documents`".into()),
        };
        return Ok(Parsed::Sample(query, positive, candidates));
    }
    if obj.contains_key("document") || obj.contains_key("label") {
        let document = match obj.get("document") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => return Err(format!("field `document` must be a string, found {}", json_kind(other))),
            None => return Err("missing field `document`".into()),
        };
        let label = match obj.get("label") {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => binary_label(n.as_f64(), &n.to_string())?,
            Some(other) => return Err(format!("field `label` must be 0 or 1, found {}", json_kind(other))),
            None => return Err("missing field `label`".into()),
        };
        return Ok(Parsed::Pair(query, document, label));
    }
    Err("expected a sample (`query`, `positive`, and `negative` or `documents`) or a labeled pair (`query`, `document`, `label`)".into())
}

fn parse_tsv_pair(text: &str) -> std::result::Result<(String, String, bool), String> {
    let columns: Vec<&str> = text.split('\t').collect();
    if columns.len() != 3 {
        return Err(format!(
            "expected 3 tab-separated columns (query, document, label), found {}",
            columns.len()
        ));
    }
    let label_text = columns[2].trim();
    let label = match label_text {
        "true" | "True" => true,
        "false" | "False" => false,
        _ => binary_label(label_text.parse::<f64>().ok(), label_text)?,
    };
    Ok((columns[0].to_string(), columns[1].to_string(), label))
}

fn binary_label(value: Option<f64>, text: &str) -> std::result::Result<bool, String> {
    match value {
        Some(1.0) => Ok(true),
        Some(0.0) => Ok(false),
        _ => Err(format!(
            "label must be 0 or 1 (the evaluator's metrics are binary), found `{text}`"
        )),
    }
}

fn string_list(value: &Value, field: &str) -> std::result::Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "field `{field}` must be an array of strings, found {}",
            json_kind(value)
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!(
                "field `{field}`: element {i} must be a string, found {}",
                json_kind(other)
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-12;

    fn close(got: f64, want: f64, what: &str) {
        assert!((got - want).abs() <= EPS, "{what}: got {got}, want {want}");
    }

    fn d(i: usize) -> f64 {
        1.0 / ((i + 1) as f64).log2()
    }

    #[test]
    fn distinct_scores_hand_computed() {
        // Ranking by score: docs 1 (irrelevant), 0 (relevant), 3 (irrelevant), 2 (relevant).
        let relevant = [true, false, true, false];
        let scores = [0.8, 0.9, 0.1, 0.5];
        let m = sample_metrics(&relevant, &scores, 10);
        close(m.metrics.mrr, 0.5, "mrr");
        // Relevant at ranks 2 and 4: AP = (1/2)(1/2) + (1/2)(2/4).
        close(m.metrics.ap, 0.5, "ap");
        let dcg = d(2) + d(4);
        let ideal = d(1) + d(2);
        close(m.metrics.ndcg, dcg / ideal, "ndcg");
        assert_eq!(m.tied_scores, 0);
        assert_eq!(m.mrr_range, (0.5, 0.5));
    }

    #[test]
    fn tie_inside_the_cut_off() {
        // Docs 0 (relevant) and 1 (irrelevant) tie at the top; doc 2 (relevant) last.
        let relevant = [true, false, true];
        let scores = [0.7, 0.7, 0.2];
        let m = sample_metrics(&relevant, &scores, 10);
        // Stable-reversed ranking puts the later index (1, irrelevant) first.
        assert_eq!(descending_ranking(&scores), vec![1, 0, 2]);
        close(m.metrics.mrr, 0.5, "mrr");
        assert_eq!(m.mrr_range, (0.5, 1.0));
        // The tie group {0, 1}: mean gain 1/2 over ranks 1 and 2.
        let dcg = 0.5 * (d(1) + d(2)) + d(3);
        close(m.metrics.ndcg, dcg / (d(1) + d(2)), "ndcg");
        // Thresholds: 0.7 → 1 hit of 2 seen; 0.2 → 2 of 3. AP = (1/2)(1/2) + (1/2)(2/3).
        close(m.metrics.ap, 0.25 + 1.0 / 3.0, "ap");
        assert_eq!(m.tied_scores, 2);
    }

    #[test]
    fn tie_across_the_cut_off() {
        // k = 2; ranks 2 and 3 share a score: one relevant (doc 2) and one not (doc 1).
        let relevant = [false, false, true, false];
        let scores = [0.9, 0.5, 0.5, 0.1];
        let m = sample_metrics(&relevant, &scores, 2);
        // Ranking 0, 2, 1, 3: the relevant doc 2 is the later index of the tie, so it is 2nd.
        close(m.metrics.mrr, 0.5, "mrr");
        // With the other order it would be 3rd, past k.
        assert_eq!(m.mrr_range, (0.0, 0.5));
        // Tie-averaged DCG: gain 1/2 over ranks 2 and 3, rank 3 discounted to 0 by k = 2.
        close(m.metrics.ndcg, 0.5 * d(2) / d(1), "ndcg");
        close(m.metrics.ap, 1.0 / 3.0, "ap");
        // The same tie with k = 3 counts both discounts.
        let m3 = sample_metrics(&relevant, &scores, 3);
        close(m3.metrics.ndcg, 0.5 * (d(2) + d(3)) / d(1), "ndcg@3");
        assert_eq!(m3.mrr_range, (1.0 / 3.0, 0.5));
    }

    #[test]
    fn k_larger_than_the_list() {
        let relevant = [false, false, true];
        let scores = [0.3, 0.2, 0.1];
        let m = sample_metrics(&relevant, &scores, 100);
        close(m.metrics.mrr, 1.0 / 3.0, "mrr");
        close(m.metrics.ndcg, d(3) / d(1), "ndcg");
        close(m.metrics.ap, 1.0 / 3.0, "ap");
        // And k = 1 cuts it to zero.
        let m1 = sample_metrics(&relevant, &scores, 1);
        close(m1.metrics.mrr, 0.0, "mrr@1");
        close(m1.metrics.ndcg, 0.0, "ndcg@1");
        close(m1.metrics.ap, 1.0 / 3.0, "ap is not cut");
    }

    #[test]
    fn ranking_follows_numpys_scalar_argsort() {
        // numpy 2.4.6, NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4":
        // x = np.array([i % 3 for i in range(40)], dtype=np.float32); x[::7] = 0.5
        // np.argsort(x)[::-1]
        let mut x: Vec<f64> = (0..40).map(|i| (i % 3) as f64).collect();
        for i in (0..40).step_by(7) {
            x[i] = 0.5;
        }
        let want = [
            8, 17, 2, 38, 20, 32, 11, 5, 29, 23, 26, 10, 13, 22, 19, 25, 31, 4, 34, 1, 37, 16, 14, 7, 0, 21, 28, 35,
            15, 18, 12, 24, 9, 27, 6, 30, 33, 3, 36, 39,
        ];
        assert_eq!(descending_ranking(&x), want);
        // Up to 16 elements numpy's insertion sort is stable: ties come out later-first.
        assert_eq!(descending_ranking(&[0.5; 16]), (0..16).rev().collect::<Vec<_>>());
        // Past 16 it is not.
        assert_ne!(descending_ranking(&[0.5; 17]), (0..17).rev().collect::<Vec<_>>());
        // Any order it gives is a sort, including through the heapsort fallback.
        for n in [0, 1, 2, 17, 100, 1000] {
            let v: Vec<f64> = (0..n).map(|i| ((i * 7919) % 13) as f64).collect();
            let order = numpy_argsort(&v);
            assert!(order.windows(2).all(|w| v[w[0]] <= v[w[1]]), "n = {n}");
            let mut seen = order.clone();
            seen.sort();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
        let mut heap: Vec<usize> = (0..50).collect();
        let v: Vec<f64> = (0..50).map(|i| ((i * 31) % 11) as f64).collect();
        numpy_heap_argsort(&mut heap, &|a, b| v[a] < v[b]);
        assert!(heap.windows(2).all(|w| v[w[0]] <= v[w[1]]));
    }

    #[test]
    fn all_positive_and_all_tied() {
        let relevant = [true, true, true];
        let m = sample_metrics(&relevant, &[0.1, 0.9, 0.4], 10);
        assert_eq!(
            m.metrics,
            Metrics {
                ap: 1.0,
                mrr: 1.0,
                ndcg: 1.0
            }
        );
        // Every document tied: NDCG is the mean gain everywhere, MAP one point.
        let relevant = [true, false, false, false];
        let m = sample_metrics(&relevant, &[1.0; 4], 10);
        let all: f64 = (1..=4).map(d).sum();
        close(m.metrics.ndcg, 0.25 * all / d(1), "ndcg");
        close(m.metrics.ap, 0.25, "ap");
        close(
            m.metrics.mrr,
            0.25,
            "mrr (the relevant doc has the lowest index, so it is last)",
        );
        assert_eq!(m.mrr_range, (0.25, 1.0));
        assert_eq!(m.tied_scores, 4);
    }

    fn sample(positive: &[&str], candidates: Candidates) -> Sample {
        Sample {
            line: 1,
            query: "q".into(),
            positive: positive.iter().map(|s| s.to_string()).collect(),
            candidates,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_positive_counts_zero_and_is_not_scored() {
        let s = sample(&[], Candidates::Negative(strings(&["a", "b"])));
        let plan = plan_sample(&s, &EvalOptions::default());
        assert!(!plan.is_scored());
        assert!(plan.documents.is_empty());
        assert_eq!((plan.positives, plan.negatives), (0, 2));
        let s2 = sample(&["p"], Candidates::Negative(strings(&["n"])));
        let samples = vec![s, s2.clone()];
        let plans: Vec<Plan> = samples
            .iter()
            .map(|s| plan_sample(s, &EvalOptions::default()))
            .collect();
        let r = report(&samples, &plans, &[0.9, 0.1], &EvalOptions::default()).unwrap();
        assert_eq!(
            r.metrics,
            Metrics {
                ap: 0.5,
                mrr: 0.5,
                ndcg: 0.5
            }
        );
        assert_eq!(r.scored_pairs, 2);
        assert!(r.base.is_none());
        // documents that hold no positive: base 0 too; reranked with the positive added.
        let s3 = sample(&["p"], Candidates::Documents(strings(&["x", "y"])));
        let plan = plan_sample(&s3, &EvalOptions::default());
        assert_eq!(plan.base, Some(Metrics::default()));
        assert_eq!(plan.documents, strings(&["p", "x", "y"]));
        // Without always_rerank_positives nothing relevant is listed: 0, not scored.
        let plan = plan_sample(
            &s3,
            &EvalOptions {
                always_rerank_positives: false,
                ..Default::default()
            },
        );
        assert!(!plan.is_scored());
        assert_eq!((plan.positives, plan.negatives), (1, 2));
    }

    #[test]
    fn single_document_sample_is_counted_with_ndcg_one() {
        let samples = vec![
            sample(&["p"], Candidates::Negative(vec![])),
            sample(&["p"], Candidates::Negative(strings(&["n"]))),
        ];
        let options = EvalOptions::default();
        let plans: Vec<Plan> = samples.iter().map(|s| plan_sample(s, &options)).collect();
        let r = report(&samples, &plans, &[0.3, 0.1, 0.2], &options).unwrap();
        assert_eq!(r.single_document, 1);
        assert_eq!(
            r.per_query[0].metrics,
            Metrics {
                ap: 1.0,
                mrr: 1.0,
                ndcg: 1.0
            }
        );
        close(r.metrics.mrr, 0.75, "mrr");
        assert!(r.table().contains("1 samples have a single document"), "{}", r.table());
    }

    #[test]
    fn documents_format_lists_and_base_metrics() {
        // "b" is a positive listed 2nd; "c" is a positive missing from the list.
        let s = sample(&["b", "c"], Candidates::Documents(strings(&["a", "b", "d"])));
        let plan = plan_sample(&s, &EvalOptions::default());
        assert_eq!(plan.documents, strings(&["b", "c", "a", "d"]));
        assert_eq!(plan.relevant, vec![true, true, false, false]);
        assert_eq!((plan.positives, plan.negatives), (2, 2));
        // Base: input order a, b, d, then the missing positive c: relevant at ranks 2 and 4.
        let base = plan.base.unwrap();
        close(base.mrr, 0.5, "base mrr");
        close(base.ap, 0.5 * 0.5 + 0.5 * 0.5, "base ap");
        close(base.ndcg, (d(2) + d(4)) / (d(1) + d(2)), "base ndcg");
        let plan = plan_sample(
            &s,
            &EvalOptions {
                always_rerank_positives: false,
                ..Default::default()
            },
        );
        assert_eq!(plan.documents, strings(&["a", "b", "d"]));
        assert_eq!(plan.relevant, vec![false, true, false]);
        assert_eq!(plan.base, Some(base));
        // Matching is by exact string: "B" is not "b".
        let s = sample(&["b"], Candidates::Documents(strings(&["B", " b", "b"])));
        assert_eq!(
            plan_sample(&s, &EvalOptions::default()).documents,
            strings(&["b", "B", " b"])
        );
    }

    #[test]
    fn duplicate_documents() {
        // A listed positive twice: base relevance [1, 1, 0], nothing appended (the count of
        // listed positives exceeds len(positive)); reranked list drops both copies.
        let s = sample(&["p"], Candidates::Documents(strings(&["p", "p", "n", "n"])));
        let plan = plan_sample(&s, &EvalOptions::default());
        assert_eq!(plan.documents, strings(&["p", "n", "n"]));
        assert_eq!(plan.relevant, vec![true, false, false]);
        let base = plan.base.unwrap();
        assert_eq!(
            base,
            Metrics {
                ap: 1.0,
                mrr: 1.0,
                ndcg: 1.0
            }
        );
        // A duplicated positive is scored twice and counted twice.
        let s = sample(&["p", "p"], Candidates::Negative(strings(&["n"])));
        let plan = plan_sample(&s, &EvalOptions::default());
        assert_eq!(plan.documents, strings(&["p", "p", "n"]));
        assert_eq!(plan.positives, 2);
        // The same text as positive and negative gets the same score: a tie between a relevant
        // and an irrelevant document; the negative (later) is ranked first.
        let s = sample(&["x"], Candidates::Negative(strings(&["x", "y"])));
        let plan = plan_sample(&s, &EvalOptions::default());
        let m = sample_metrics(&plan.relevant, &[0.6, 0.6, 0.3], 10);
        close(m.metrics.mrr, 0.5, "mrr");
        close(m.metrics.ndcg, 0.5 * (d(1) + d(2)) / d(1), "ndcg");
        close(m.metrics.ap, 0.5, "ap");
    }

    #[test]
    fn report_means_ties_and_card_form() {
        let samples = vec![
            sample(&["a"], Candidates::Documents(strings(&["x", "a"]))),
            sample(&["b"], Candidates::Documents(strings(&["b", "y"]))),
        ];
        let options = EvalOptions::default();
        let plans: Vec<Plan> = samples.iter().map(|s| plan_sample(s, &options)).collect();
        // Sample 1 scored [a, x] = [0.2, 0.2] (tie), sample 2 [b, y] = [0.9, 0.1].
        let r = report(&samples, &plans, &[0.2, 0.2, 0.9, 0.1], &options).unwrap();
        close(r.metrics.mrr, (0.5 + 1.0) / 2.0, "mrr");
        assert_eq!(r.tied_scores, 2);
        assert_eq!(r.queries_with_ties, 1);
        assert_eq!(r.mrr_tie_dependent, 1);
        assert_eq!(r.mrr_range, (0.75, 1.0));
        let base = r.base.unwrap();
        close(base.mrr, 0.75, "base mrr");
        let card = r.model_card().unwrap();
        assert_eq!(card[0].0, "map");
        assert_eq!(card[1], ("mrr@10".to_string(), "0.7500 (+0.0000)".to_string()));
        let keys: Vec<String> = r.metric_values().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["map", "mrr@10", "ndcg@10", "base_map", "base_mrr@10", "base_ndcg@10"]
        );
        let json = r.to_json();
        assert_eq!(json["mrr@10"], 0.75);
        assert_eq!(json["model_card"]["mrr@10"], "0.7500 (+0.0000)");
        assert!(r.table().contains("0.7500 (+0.0000)"), "{}", r.table());
        // A negative delta keeps its sign, as in the card's "0.9666 (-0.0334)".
        let mut lower = r.clone();
        lower.metrics.ap = 0.9666;
        lower.base = Some(Metrics { ap: 1.0, ..base });
        assert_eq!(lower.model_card().unwrap()[0].1, "0.9666 (-0.0334)");
        // Wrong score count is an internal error, not a silent misalignment.
        assert!(report(&samples, &plans, &[0.2], &options).is_err());
    }

    fn read(text: &str, format: Format) -> Result<Vec<Sample>> {
        read_samples(text.as_bytes(), "in.jsonl", format)
    }

    #[test]
    fn reads_samples_and_labeled_pairs() {
        let samples = read(
            "{\"query\": \"q1\", \"positive\": \"a\", \"negative\": [\"b\"]}\n{\"query\": \"q2\", \"positive\": [\"c\", \"d\"], \"documents\": [\"d\", \"e\"], \"id\": 7}\n",
            Format::Jsonl,
        )
        .unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].positive, strings(&["a"]));
        assert_eq!(samples[0].candidates, Candidates::Negative(strings(&["b"])));
        assert_eq!(samples[1].line, 2);
        assert_eq!(samples[1].candidates, Candidates::Documents(strings(&["d", "e"])));

        let pairs = read(
            "{\"query\": \"q1\", \"document\": \"a\", \"label\": 0}\n{\"query\": \"q2\", \"document\": \"b\", \"label\": 1.0}\n{\"query\": \"q1\", \"document\": \"c\", \"label\": true}\n",
            Format::Jsonl,
        )
        .unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!((pairs[0].line, pairs[0].query.as_str()), (1, "q1"));
        assert_eq!(pairs[0].positive, strings(&["c"]));
        assert_eq!(pairs[0].candidates, Candidates::Negative(strings(&["a"])));
        assert_eq!(pairs[1].positive, strings(&["b"]));

        let tsv = read("query\tdocument\tlabel\nq1\ta\t1\nq1\tb\t0\n", Format::Tsv).unwrap();
        assert_eq!(tsv.len(), 1);
        assert_eq!(tsv[0].line, 2);
        assert_eq!(tsv[0].positive, strings(&["a"]));
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let cases: &[(&str, Format, &str)] = &[
            ("{\"query\": \"q\", \"positive\": [\"a\"]}\n", Format::Jsonl, "in.jsonl:1: a sample needs exactly one of `negative` and `documents`"),
            (
                "{\"query\": \"q\", \"positive\": [\"a\"], \"negative\": [], \"documents\": [\"a\"]}\n",
                Format::Jsonl,
                "exactly one of",
            ),
            ("{\"query\": \"q\", \"positive\": [\"a\"], \"negative\": []}\n{\"query\": 3}\n", Format::Jsonl, "in.jsonl:2: field `query` must be a string, found a number"),
            ("{\"query\": \"q\", \"positive\": [1], \"negative\": []}\n", Format::Jsonl, "element 0 must be a string"),
            ("{\"query\": \"q\", \"positive\": \"a\", \"documents\": []}\n", Format::Jsonl, "`documents` is empty"),
            ("{\"query\": \"q\", \"document\": \"a\", \"label\": 2}\n", Format::Jsonl, "in.jsonl:1: label must be 0 or 1"),
            ("{\"query\": \"q\", \"document\": \"a\"}\n", Format::Jsonl, "missing field `label`"),
            (
                "{\"query\": \"q\", \"document\": \"a\", \"label\": 1}\n{\"query\": \"q\", \"positive\": \"a\", \"negative\": []}\n",
                Format::Jsonl,
                "in.jsonl:2: a sample in a file whose line 1 is a labeled pair",
            ),
            ("{\"query\": \"q\"}\n", Format::Jsonl, "expected a sample"),
            ("not json\n", Format::Jsonl, "in.jsonl:1: malformed JSON"),
            ("{\"query\": \"q\", \"positive\": \"a\", \"negative\": []}\n\n", Format::Jsonl, "in.jsonl:2: blank line"),
            ("q\ta\t1\nq\tb\n", Format::Tsv, "in.jsonl:2: expected 3 tab-separated columns"),
            ("q\ta\tyes\n", Format::Tsv, "in.jsonl:1: label must be 0 or 1"),
            ("", Format::Jsonl, "no samples"),
        ];
        for (text, format, want) in cases {
            let err = read(text, *format).unwrap_err().to_string();
            assert!(err.contains(want), "input {text:?}: error `{err}` lacks `{want}`");
        }
        let err = read_samples(&b"\xff\n"[..], "x.tsv", Format::Tsv).unwrap_err();
        assert!(matches!(err, Error::Input { line: 1, .. }), "{err}");
    }
}
