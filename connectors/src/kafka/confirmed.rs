//! The at-least-once position: the contiguous prefix of seqs whose every
//! record Kafka has confirmed.
//!
//! Records are handed to the producer in seq order, but confirmations come
//! back in any order (partitions are independent). The position may only
//! pass a seq once that seq and every seq before it are confirmed, so a
//! restart from the position re-sends whatever might be missing and skips
//! nothing.
//!
//! NOTE: with seqs 5, 6, 7 in flight, a confirmation of 7 and then of 5
//! moves the position to 5, not 7: 6 is still unconfirmed. When 6 is
//! confirmed the position jumps to 7.

use std::collections::VecDeque;

use tidefeed_engine::Seq;

/// Pure bookkeeping; the caller holds it under a lock.
#[derive(Debug)]
pub(crate) struct ConfirmedPrefix {
    /// Every seq at or below this is confirmed.
    confirmed: Seq,
    /// `pending[i]`: records of seq `confirmed + 1 + i` not yet confirmed.
    /// Zero only for seqs that follow an unconfirmed one.
    pending: VecDeque<u32>,
}

impl ConfirmedPrefix {
    pub(crate) fn new(position: Seq) -> ConfirmedPrefix {
        ConfirmedPrefix {
            confirmed: position,
            pending: VecDeque::new(),
        }
    }

    pub(crate) fn confirmed(&self) -> Seq {
        self.confirmed
    }

    /// The highest seq handed over (or the position, if none is pending).
    pub(crate) fn last_pushed(&self) -> Seq {
        self.confirmed + self.pending.len() as Seq
    }

    /// Whether no record is awaiting confirmation.
    pub(crate) fn is_settled(&self) -> bool {
        self.pending.is_empty()
    }

    /// Registers `records` records of `seq`, which must come after every
    /// seq pushed so far. Seqs skipped over have no records and count as
    /// confirmed once everything before them is.
    pub(crate) fn push(&mut self, seq: Seq, records: u32) {
        let next = self.last_pushed() + 1;
        assert!(seq >= next, "seq {seq} pushed after {}", next - 1);
        for _ in next..seq {
            self.pending.push_back(0);
        }
        self.pending.push_back(records);
        self.advance();
    }

    /// One record of `seq` is confirmed. Returns whether the position
    /// moved. Confirmations of seqs not pending (already confirmed, or
    /// from a producer that was replaced) change nothing.
    pub(crate) fn confirm(&mut self, seq: Seq) -> bool {
        match self.slot(seq) {
            Some(slot) if *slot > 0 => {
                *slot -= 1;
                self.advance()
            }
            _ => false,
        }
    }

    fn slot(&mut self, seq: Seq) -> Option<&mut u32> {
        let index = seq.checked_sub(self.confirmed + 1)?;
        self.pending.get_mut(usize::try_from(index).ok()?)
    }

    fn advance(&mut self) -> bool {
        let before = self.confirmed;
        while self.pending.front() == Some(&0) {
            self.pending.pop_front();
            self.confirmed += 1;
        }
        self.confirmed != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_moves_only_over_a_contiguous_confirmed_prefix() {
        // (operation, expected position after it)
        enum Op {
            Push(Seq, u32),
            Confirm(Seq),
        }
        use Op::*;
        // (start position, steps, name)
        type Steps<'a> = &'a [(Op, Seq)];
        let cases: &[(Seq, Steps, &str)] = &[
            (0, &[(Push(1, 1), 0), (Confirm(1), 1)], "one record"),
            (
                4,
                &[
                    (Push(5, 1), 4),
                    (Push(6, 1), 4),
                    (Push(7, 1), 4),
                    (Confirm(7), 4),
                    (Confirm(5), 5),
                    (Confirm(6), 7),
                ],
                "out of order",
            ),
            (
                2,
                &[
                    (Push(3, 2), 2),
                    (Confirm(3), 2),
                    (Confirm(3), 3),
                    (Confirm(3), 3),
                ],
                "an event and its tombstone; a stray duplicate confirmation",
            ),
            (
                1,
                &[
                    (Push(2, 1), 1),
                    (Push(5, 1), 1),
                    (Confirm(5), 1),
                    (Confirm(2), 5),
                ],
                "gaps count as confirmed once everything before is",
            ),
            (
                0,
                &[(Push(1, 1), 0), (Confirm(9), 0), (Confirm(0), 0)],
                "confirmations of seqs never pushed change nothing",
            ),
        ];
        for (start, ops, name) in cases {
            let mut prefix = ConfirmedPrefix::new(*start);
            for (i, (op, expected)) in ops.iter().enumerate() {
                match op {
                    Push(seq, n) => prefix.push(*seq, *n),
                    Confirm(seq) => {
                        prefix.confirm(*seq);
                    }
                }
                assert_eq!(prefix.confirmed(), *expected, "{name}: step {i}");
            }
        }
    }

    #[test]
    fn a_settled_prefix_has_nothing_pending() {
        let mut prefix = ConfirmedPrefix::new(10);
        prefix.push(11, 2);
        assert!(!prefix.confirm(11));
        assert!(!prefix.is_settled());
        assert!(prefix.confirm(11));
        assert_eq!(prefix.confirmed(), 11);
        assert!(prefix.is_settled());
        assert_eq!(prefix.last_pushed(), 11);
    }

    #[test]
    #[should_panic(expected = "pushed after")]
    fn pushing_out_of_order_is_a_bug() {
        let mut prefix = ConfirmedPrefix::new(0);
        prefix.push(2, 1);
        prefix.push(2, 1);
    }
}
