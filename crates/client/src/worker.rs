//! The sender task: takes events off the queue, checks them, batches them by
//! count, bytes and age, sends each batch, and spills what the API cannot take
//! (replaying it later).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

use crate::event::{json_with_source, validate_json, Event};
use crate::send::{body_of, events_of, Origin, Shared, BODY_WRAPPER_BYTES};
use crate::spill::{AppendError, Spill, SpillConfig, Spilled};
use crate::stats::{Counters, DropReason};

pub(crate) enum Msg {
    Event(Box<Event>),
    /// Send what is batched (and replay the spill file if the API is up), then answer.
    Flush(oneshot::Sender<()>),
    /// Take no more events, send what is queued within the shutdown deadline, then answer.
    Shutdown(oneshot::Sender<()>),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_events: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
    pub replay_interval: Duration,
    pub shutdown_timeout: Duration,
}

/// Spilled batches replayed per turn, so that live events keep moving.
const REPLAY_BATCHES_PER_TURN: usize = 20;
const MAX_REPLAY_INTERVAL: Duration = Duration::from_secs(60);

pub(crate) struct Worker {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Msg>,
    limits: Limits,
    spill_config: Option<SpillConfig>,
    spill: Option<Spill>,
    batch: Vec<Vec<u8>>,
    batch_bytes: usize,
    batch_since: Option<Instant>,
    /// The last batch was given up on: new batches go straight to the spill file
    /// until a replay gets through.
    down: bool,
    replay_at: Option<Instant>,
    replay_interval: Duration,
    /// Set at shutdown: no retry waits past it.
    deadline: Option<Instant>,
    /// Dropped when the task ends; `Drop for Client` waits on it.
    _done: std::sync::mpsc::SyncSender<()>,
}

impl Worker {
    pub fn new(
        shared: Arc<Shared>,
        rx: mpsc::Receiver<Msg>,
        limits: Limits,
        spill_config: Option<SpillConfig>,
        done: std::sync::mpsc::SyncSender<()>,
    ) -> Self {
        Self {
            shared,
            rx,
            limits,
            spill_config,
            spill: None,
            batch: Vec::new(),
            batch_bytes: 0,
            batch_since: None,
            down: false,
            replay_at: None,
            replay_interval: limits.replay_interval,
            deadline: None,
            _done: done,
        }
    }

    pub async fn run(mut self) {
        if let Some(config) = self.spill_config.take() {
            let (spill, torn) = Spill::open(config).await;
            if torn > 0 {
                tracing::warn!(path = %spill.path().display(), "the spill file's last line was cut short (a crash while writing it); line dropped");
                Counters::add(&self.shared.counters.spill_lines_dropped, torn);
            }
            if !spill.is_empty() {
                // Left by an earlier run: send it once the API answers.
                self.replay_at = Some(Instant::now());
            }
            self.spill = Some(spill);
        }
        let mut waiting = Vec::new();
        loop {
            let far = Instant::now() + Duration::from_secs(86_400);
            let age_due = self.batch_since.map(|t| t + self.limits.max_age);
            let replay_due = self.replay_at;
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(Msg::Event(event)) => self.add(*event).await,
                    Some(Msg::Flush(done)) => {
                        self.send_batch().await;
                        if !self.down && self.replay_at.is_some() {
                            self.replay().await;
                        }
                        let _ = done.send(());
                    }
                    Some(Msg::Shutdown(done)) => {
                        self.rx.close();
                        self.deadline.get_or_insert(Instant::now() + self.limits.shutdown_timeout);
                        waiting.push(done);
                    }
                    None => break,
                },
                () = sleep_until(age_due.unwrap_or(far)), if age_due.is_some() => self.send_batch().await,
                () = sleep_until(replay_due.unwrap_or(far)), if replay_due.is_some() => self.replay().await,
            }
        }
        // Every handle is gone or shutdown was asked for: send the rest in time.
        self.deadline
            .get_or_insert(Instant::now() + self.limits.shutdown_timeout);
        self.send_batch().await;
        for done in waiting {
            let _ = done.send(());
        }
    }

    async fn add(&mut self, event: Event) {
        let value = json_with_source(&event, &self.shared.source);
        if let Err(problems) = validate_json(&value) {
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            tracing::warn!(event_id = %event.id(), action = event.action(), problems = %problems.join("; "), "invalid event dropped");
            self.shared.counters.drop_events(DropReason::Invalid, 1);
            return;
        }
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        let over_count = self.batch.len() + 1 > self.limits.max_events;
        // The limit is on the body the API receives, wrapper included.
        let over_bytes = BODY_WRAPPER_BYTES + self.batch_bytes + bytes.len() + 1 > self.limits.max_bytes;
        if !self.batch.is_empty() && (over_count || over_bytes) {
            self.send_batch().await;
        }
        self.batch_bytes += bytes.len() + 1;
        self.batch.push(bytes);
        self.batch_since.get_or_insert_with(Instant::now);
        if self.batch.len() >= self.limits.max_events {
            self.send_batch().await;
        }
    }

    async fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        self.batch_since = None;
        if self.down && self.spill.is_some() {
            self.spill_events(events).await;
            return;
        }
        let attempts = self.shared.retry.max_attempts;
        let left = self.shared.send(events, Origin::Live, attempts, self.deadline).await;
        if left.is_empty() {
            return;
        }
        self.went_down();
        if self.spill.is_some() {
            self.spill_events(left).await;
        } else if self.deadline.is_some() {
            self.shared.counters.drop_events(DropReason::Closed, left.len());
        } else {
            self.shared
                .counters
                .drop_events(DropReason::RetriesExhausted, left.len());
        }
    }

    fn went_down(&mut self) {
        if !self.down {
            self.replay_interval = self.limits.replay_interval;
        }
        self.down = true;
        self.replay_at = Some(Instant::now() + self.replay_interval);
    }

    async fn spill_events(&mut self, events: Vec<Vec<u8>>) {
        let Some(spill) = self.spill.as_mut() else {
            return;
        };
        let n = events.len();
        match spill.append(n, &body_of(&events)).await {
            Ok(()) => {
                Counters::add(&self.shared.counters.spilled, n);
                self.replay_at
                    .get_or_insert_with(|| Instant::now() + self.limits.replay_interval);
            }
            Err(AppendError::Full) => {
                tracing::warn!(events = n, "spill file full; events dropped");
                self.shared.counters.drop_events(DropReason::SpillFull, n);
            }
            Err(AppendError::Io(e)) => {
                tracing::warn!(events = n, error = %e, path = %spill.path().display(), "cannot write the spill file; events dropped");
                self.shared.counters.drop_events(DropReason::SpillError, n);
            }
        }
    }

    /// Send spilled batches, oldest first. While the API is down, the first one
    /// gets a single attempt (a probe); the rest go only once it got through.
    async fn replay(&mut self) {
        self.replay_at = None;
        let Some(spill) = self.spill.as_mut() else {
            return;
        };
        let (batches, corrupt) = match spill.load().await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, path = %spill.path().display(), "cannot read the spill file");
                self.replay_at = Some(Instant::now() + self.replay_interval);
                return;
            }
        };
        let mut remaining = std::collections::VecDeque::from(batches);
        let mut turns = 0;
        while let Some(batch) = remaining.pop_front() {
            if turns == REPLAY_BATCHES_PER_TURN {
                remaining.push_front(batch);
                self.replay_at = Some(Instant::now());
                break;
            }
            turns += 1;
            let Some(events) = events_of(&batch.body) else {
                self.shared.counters.drop_events(DropReason::SpillError, batch.events);
                continue;
            };
            let attempts = if self.down { 1 } else { self.shared.retry.max_attempts };
            let left = self.shared.send(events, Origin::Replay, attempts, self.deadline).await;
            if left.is_empty() {
                self.down = false;
                continue;
            }
            remaining.push_front(Spilled {
                events: left.len(),
                body: body_of(&left).to_vec(),
            });
            // Still unavailable: try again later, backing off.
            if self.down {
                self.replay_interval = (self.replay_interval * 2).min(MAX_REPLAY_INTERVAL);
            }
            self.down = true;
            self.replay_at = Some(Instant::now() + self.replay_interval);
            break;
        }
        let remaining: Vec<Spilled> = remaining.into();
        match spill.rewrite(&remaining).await {
            Ok(()) if corrupt > 0 => {
                // Counted once they are gone from the file, so never twice.
                tracing::warn!(lines = corrupt, path = %spill.path().display(), "unreadable lines in the spill file dropped");
                Counters::add(&self.shared.counters.spill_lines_dropped, corrupt);
            }
            Ok(()) => {}
            // The batches stay in the file; a later replay sends them again and
            // the store deduplicates by event id.
            Err(e) => {
                tracing::warn!(error = %e, path = %spill.path().display(), "cannot rewrite the spill file");
            }
        }
        if remaining.is_empty() {
            self.replay_interval = self.limits.replay_interval;
        }
    }
}
