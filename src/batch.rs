//! Packed, unpadded batches: every sequence's tokens back to back, with prefix-sum offsets
//! (`cu_seqlens`) and per-token positions. Every backend consumes this one layout.

/// A batch of token sequences laid out without padding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackedBatch {
    /// All tokens, sequence after sequence.
    pub token_ids: Vec<u32>,
    /// Position of each token inside its own sequence (0-based, restarts per sequence).
    pub positions: Vec<u32>,
    /// Segment (token type) id of each token, one per token: 0 for the first text of a pair
    /// and 1 for the second in families that embed segments (BERT); all 0 otherwise.
    pub token_type_ids: Vec<u32>,
    /// `cu_seqlens[s]..cu_seqlens[s + 1]` are the tokens of sequence `s`; starts with 0.
    pub cu_seqlens: Vec<u32>,
    pub max_seqlen: usize,
}

impl PackedBatch {
    pub fn new() -> Self {
        PackedBatch {
            cu_seqlens: vec![0],
            ..Default::default()
        }
    }

    /// Packs `sequences` in the given order.
    pub fn from_sequences<'a>(sequences: impl IntoIterator<Item = &'a [u32]>) -> Self {
        let mut batch = PackedBatch::new();
        for s in sequences {
            batch.push(s);
        }
        batch
    }

    /// Appends a sequence whose tokens are all segment 0.
    pub fn push(&mut self, ids: &[u32]) {
        self.push_typed(ids, &[]);
    }

    /// Appends a sequence with its segment ids (`type_ids` empty: all 0, else one per token).
    pub fn push_typed(&mut self, ids: &[u32], type_ids: &[u32]) {
        debug_assert!(type_ids.is_empty() || type_ids.len() == ids.len());
        if type_ids.is_empty() {
            self.token_type_ids.resize(self.token_type_ids.len() + ids.len(), 0);
        } else {
            self.token_type_ids.extend_from_slice(type_ids);
        }
        self.token_ids.extend_from_slice(ids);
        self.positions.extend(0..ids.len() as u32);
        self.cu_seqlens.push(self.token_ids.len() as u32);
        self.max_seqlen = self.max_seqlen.max(ids.len());
    }

    pub fn clear(&mut self) {
        self.token_ids.clear();
        self.positions.clear();
        self.token_type_ids.clear();
        self.cu_seqlens.clear();
        self.cu_seqlens.push(0);
        self.max_seqlen = 0;
    }

    pub fn num_seqs(&self) -> usize {
        self.cu_seqlens.len().saturating_sub(1)
    }

    pub fn num_tokens(&self) -> usize {
        self.token_ids.len()
    }

    /// A batch of sequences `seqs` of this one, segment ids included (what a split of a
    /// batch that did not fit on the device runs).
    pub fn select(&self, seqs: std::ops::Range<usize>) -> PackedBatch {
        let mut sub = PackedBatch::new();
        for s in seqs {
            let r = self.seq_range(s);
            sub.push_typed(&self.token_ids[r.clone()], &self.token_type_ids[r]);
        }
        sub
    }

    /// Token range of sequence `s`.
    pub fn seq_range(&self, s: usize) -> std::ops::Range<usize> {
        self.cu_seqlens[s] as usize..self.cu_seqlens[s + 1] as usize
    }
}

/// Groups sequence indices into batches of at most `batch_tokens` tokens (a longer sequence
/// gets a batch of its own) and at most `max_seqs` sequences, shortest first. Sorting by
/// length keeps similar lengths together, which is what makes attention tiles and GPU
/// launches efficient; callers restore input order with the returned indices.
pub fn plan_batches(lengths: &[usize], batch_tokens: usize, max_seqs: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (lengths[i], i));
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut tokens = 0;
    for i in order {
        let len = lengths[i];
        if !current.is_empty() && (tokens + len > batch_tokens || current.len() >= max_seqs.max(1)) {
            batches.push(std::mem::take(&mut current));
            tokens = 0;
        }
        current.push(i);
        tokens += len;
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_offsets_and_positions() {
        let b = PackedBatch::from_sequences([&[5u32, 6, 7][..], &[8][..], &[9, 10][..]]);
        assert_eq!(b.cu_seqlens, vec![0, 3, 4, 6]);
        assert_eq!(b.positions, vec![0, 1, 2, 0, 0, 1]);
        assert_eq!(b.token_type_ids, vec![0; 6]);
        assert_eq!(b.max_seqlen, 3);
        assert_eq!(b.num_seqs(), 3);
        assert_eq!(b.seq_range(2), 4..6);
    }

    #[test]
    fn select_keeps_ids_positions_and_segment_ids() {
        let mut b = PackedBatch::new();
        b.push_typed(&[1, 2, 3], &[0, 0, 1]);
        b.push(&[4]);
        b.push_typed(&[5, 6], &[0, 1]);
        let sub = b.select(1..3);
        assert_eq!(sub.token_ids, vec![4, 5, 6]);
        assert_eq!(sub.token_type_ids, vec![0, 0, 1]);
        assert_eq!(sub.positions, vec![0, 0, 1]);
        assert_eq!(sub.cu_seqlens, vec![0, 1, 3]);
        assert_eq!(sub.max_seqlen, 2);
    }

    #[test]
    fn plan_respects_budget_and_covers_every_index_once() {
        let lengths = [5, 50, 3, 7, 100, 2, 9];
        let plan = plan_batches(&lengths, 20, 3);
        let mut seen: Vec<usize> = plan.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for batch in &plan {
            let tokens: usize = batch.iter().map(|&i| lengths[i]).sum();
            assert!(batch.len() <= 3);
            assert!(tokens <= 20 || batch.len() == 1, "{batch:?}");
        }
    }
}
