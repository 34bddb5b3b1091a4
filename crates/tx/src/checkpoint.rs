//! The checkpoint state machine on TX: capture a read view, queue the marker behind every
//! write it contains, hand the view to a snapshot thread once the WAL confirms, note the end.
//! One checkpoint runs at a time. (The view and the snapshot writer are `spindle_box`'s.)

use tracing::{info, warn};

use spindle_box::checkpoint::{CheckpointOutcome, ReadView};
use spindle_xlog::journal::JournalRequest;

use crate::state::{CheckpointState, Tx};

impl Tx {
    /// Captures a read view and queues the checkpoint marker behind every write in it.
    /// Returns false if no checkpoint runs now (shutting down).
    pub fn begin_checkpoint(&mut self) -> bool {
        if self.shutting_down {
            return false;
        }
        if !matches!(self.checkpoint, CheckpointState::Idle) {
            info!("checkpoint already in progress");
            return true;
        }
        let started = std::time::Instant::now();
        let view = ReadView::capture(&self.db);
        info!(
            "checkpoint started at vclock {} ({} rows; read view taken in {:.1} ms)",
            view.vclock,
            view.rows(),
            started.elapsed().as_secs_f64() * 1000.0
        );
        self.flush_journal();
        let marker = JournalRequest::Checkpoint {
            epoch: self.commits.epoch(),
        };
        match &self.hooks.journal {
            Some(journal) if journal.send(marker).is_ok() => {
                self.checkpoint = CheckpointState::WaitingWal(Box::new(view));
            }
            Some(_) => {
                warn!("checkpoint failed: the WAL thread is gone");
                self.checkpoint_finished(Err("the WAL thread is gone".into()));
            }
            None => {
                (self.hooks.start_snapshot)(view);
                self.checkpoint = CheckpointState::Writing;
            }
        }
        true
    }

    /// Counts a finished checkpoint and wakes the fibers waiting for one (`box.snapshot`).
    fn checkpoint_finished(&mut self, result: Result<(), String>) {
        self.checkpoints.done += 1;
        self.checkpoints.last_error = result.err();
        for fiber in self.checkpoints.waiters.drain(..) {
            fiber.unpark();
        }
    }

    pub fn on_checkpoint_ready(&mut self, ok: bool) {
        let state = std::mem::replace(&mut self.checkpoint, CheckpointState::Idle);
        if let CheckpointState::WaitingWal(view) = state {
            if ok {
                (self.hooks.start_snapshot)(*view);
                self.checkpoint = CheckpointState::Writing;
            } else {
                warn!("checkpoint failed: a WAL write in its read view failed and was rolled back");
                self.checkpoint_finished(Err("a WAL write failed".into()));
            }
        }
    }

    pub fn on_checkpoint_done(&mut self, outcome: CheckpointOutcome) {
        self.checkpoint = CheckpointState::Idle;
        match outcome.result {
            Ok(path) => {
                info!(
                    "checkpoint complete: {} ({} rows in {:.2} s)",
                    path.display(),
                    outcome.rows,
                    outcome.seconds
                );
                self.checkpoint_finished(Ok(()));
            }
            Err(e) => {
                warn!("checkpoint failed: {e}");
                self.checkpoint_finished(Err(e.to_string()));
            }
        }
    }
}
