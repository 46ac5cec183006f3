//! Counters a service can read ([`crate::Client::stats`]) or export.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why events were given up on. Each has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// `emit` found the in-memory queue full.
    QueueFull,
    /// The event broke the API's rules (checked in the client before sending).
    Invalid,
    /// The API refused it (`400`, `403`, `413`…): sending it again cannot help.
    Rejected,
    /// `401` even after refreshing the token.
    Unauthorized,
    /// Every retry failed and there is no spill file.
    RetriesExhausted,
    /// The spill file is at its size limit.
    SpillFull,
    /// The spill file could not be written or read back.
    SpillError,
    /// `emit` after `shutdown`, or the shutdown deadline passed with no spill file.
    Closed,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        Self::QueueFull,
        Self::Invalid,
        Self::Rejected,
        Self::Unauthorized,
        Self::RetriesExhausted,
        Self::SpillFull,
        Self::SpillError,
        Self::Closed,
    ];

    /// A stable label for metrics, e.g. `queue_full`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Invalid => "invalid",
            Self::Rejected => "rejected",
            Self::Unauthorized => "unauthorized",
            Self::RetriesExhausted => "retries_exhausted",
            Self::SpillFull => "spill_full",
            Self::SpillError => "spill_error",
            Self::Closed => "closed",
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub queued: AtomicU64,
    pub sent: AtomicU64,
    pub retried: AtomicU64,
    pub spilled: AtomicU64,
    pub replayed: AtomicU64,
    pub spill_lines_dropped: AtomicU64,
    dropped: [AtomicU64; 8],
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Relaxed);
    }

    pub fn drop_events(&self, reason: DropReason, n: usize) {
        self.dropped[reason as usize].fetch_add(n as u64, Relaxed);
    }

    pub fn snapshot(&self, queue_len: usize) -> Stats {
        let d = |r: DropReason| self.dropped[r as usize].load(Relaxed);
        Stats {
            queued: self.queued.load(Relaxed),
            sent: self.sent.load(Relaxed),
            retried: self.retried.load(Relaxed),
            spilled: self.spilled.load(Relaxed),
            replayed: self.replayed.load(Relaxed),
            spill_lines_dropped: self.spill_lines_dropped.load(Relaxed),
            queue_len: queue_len as u64,
            dropped: Dropped {
                queue_full: d(DropReason::QueueFull),
                invalid: d(DropReason::Invalid),
                rejected: d(DropReason::Rejected),
                unauthorized: d(DropReason::Unauthorized),
                retries_exhausted: d(DropReason::RetriesExhausted),
                spill_full: d(DropReason::SpillFull),
                spill_error: d(DropReason::SpillError),
                closed: d(DropReason::Closed),
            },
        }
    }
}

/// A snapshot of the client's counters (totals since it was built, except `queue_len`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events `emit` put on the queue.
    pub queued: u64,
    /// Events the API accepted (`202`), including replayed ones.
    pub sent: u64,
    /// Events sent again after a failed attempt (one per event per retry).
    pub retried: u64,
    /// Events written to the spill file.
    pub spilled: u64,
    /// Spilled events later accepted by the API (also counted in `sent`).
    pub replayed: u64,
    /// Lines of the spill file that could not be read back and were removed:
    /// a last line cut short by a crash while it was written, or a garbled
    /// one. Their events are lost; how many is unknown (the count is in the
    /// line), so they are counted here in lines, not in [`Dropped`].
    pub spill_lines_dropped: u64,
    /// Events waiting in the queue right now (a gauge).
    pub queue_len: u64,
    pub dropped: Dropped,
}

/// Dropped events by reason; see [`DropReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub queue_full: u64,
    pub invalid: u64,
    pub rejected: u64,
    pub unauthorized: u64,
    pub retries_exhausted: u64,
    pub spill_full: u64,
    pub spill_error: u64,
    pub closed: u64,
}

impl Dropped {
    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::QueueFull => self.queue_full,
            DropReason::Invalid => self.invalid,
            DropReason::Rejected => self.rejected,
            DropReason::Unauthorized => self.unauthorized,
            DropReason::RetriesExhausted => self.retries_exhausted,
            DropReason::SpillFull => self.spill_full,
            DropReason::SpillError => self.spill_error,
            DropReason::Closed => self.closed,
        }
    }

    pub fn total(&self) -> u64 {
        DropReason::ALL.iter().map(|r| self.get(*r)).sum()
    }
}

impl Stats {
    /// Every counter as `(metric name, reason label, value)`, ready for a metrics
    /// exporter: `stele_client_dropped_total` once per reason, the rest unlabelled.
    pub fn metrics(&self) -> Vec<(&'static str, Option<&'static str>, u64)> {
        let mut out = vec![
            ("stele_client_queued_total", None, self.queued),
            ("stele_client_sent_total", None, self.sent),
            ("stele_client_retried_total", None, self.retried),
            ("stele_client_spilled_total", None, self.spilled),
            ("stele_client_replayed_total", None, self.replayed),
            ("stele_client_spill_lines_dropped_total", None, self.spill_lines_dropped),
            ("stele_client_queue_len", None, self.queue_len),
        ];
        for reason in DropReason::ALL {
            out.push((
                "stele_client_dropped_total",
                Some(reason.as_str()),
                self.dropped.get(reason),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_drop_reason_has_its_own_counter() {
        let c = Counters::default();
        for (i, reason) in DropReason::ALL.into_iter().enumerate() {
            c.drop_events(reason, i + 1);
        }
        let s = c.snapshot(3);
        for (i, reason) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(s.dropped.get(reason), i as u64 + 1, "{reason:?}");
        }
        assert_eq!(s.dropped.total(), 36);
        assert_eq!(s.queue_len, 3);
        let labels: Vec<_> = s.metrics().iter().filter_map(|m| m.1).collect();
        assert_eq!(labels.len(), DropReason::ALL.len());
    }
}
