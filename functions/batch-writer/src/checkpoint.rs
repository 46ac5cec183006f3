//! Kinesis checkpoint semantics, independent of what a record means.
//!
//! A batch comes from one shard in sequence order. With
//! `ReportBatchItemFailures`, the event source mapping checkpoints just before
//! the lowest reported sequence number and redelivers everything from there.
//! So the only thing a handler decides is the first record it cannot
//! acknowledge; every record from it on is reported, which is correct whether
//! a consumer (Lambda, or `stele dev`'s emulation) retries from the lowest
//! reported item or retries exactly the reported items.

use aws_lambda_events::event::streams::KinesisEventResponse;

/// The response for a batch whose records before `first_unacked` are done
/// (committed or dead-lettered); `None` acknowledges the whole batch.
pub fn report_from<R>(
    records: &[R],
    first_unacked: Option<usize>,
    item_id: impl Fn(&R) -> &str,
) -> KinesisEventResponse {
    let mut response = KinesisEventResponse::default();
    if let Some(first) = first_unacked {
        response.set_failures(records.iter().skip(first).map(|r| item_id(r).to_string()));
    }
    response
}

/// The earliest of several "not acknowledged from here" positions.
pub fn earliest(positions: impl IntoIterator<Item = Option<usize>>) -> Option<usize> {
    positions.into_iter().flatten().min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(r: &KinesisEventResponse) -> Vec<&str> {
        r.batch_item_failures
            .iter()
            .filter_map(|f| f.item_identifier.as_deref())
            .collect()
    }

    #[test]
    fn a_fully_processed_batch_reports_nothing() {
        let records = ["1", "2", "3"];
        assert!(report_from(&records, None, |r| r).batch_item_failures.is_empty());
    }

    #[test]
    fn everything_from_the_first_unacknowledged_record_is_reported() {
        let records = ["1", "2", "3", "4"];
        assert_eq!(ids(&report_from(&records, Some(1), |r| r)), ["2", "3", "4"]);
        assert_eq!(ids(&report_from(&records, Some(0), |r| r)), ["1", "2", "3", "4"]);
    }

    #[test]
    fn the_earliest_position_wins() {
        assert_eq!(earliest([None, Some(4), Some(2)]), Some(2));
        assert_eq!(earliest([None, None]), None);
    }
}
