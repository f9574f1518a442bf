//! What `poll` answers for a state every vendor's task protocol shares, written once.

use easel_sdk::{Error, PollOutcome};

/// The outcome of a task its vendor reports as succeeded while the answer carries no output
/// (no file id, no URL, an empty result list): the task failed, and `poll` says so at once.
///
/// The vendor will not add outputs to a task it calls finished, so this is no outage to
/// poll through (an `Err(Error::UpstreamUnavailable)` from `poll` would keep the task
/// pending until `[engine] pending_timeout_secs`, a day by default). It is answered like a
/// task the vendor reports failed: [`PollOutcome::Failed`], with the vendor's fault
/// ([`Error::UpstreamUnavailable`], which a client is shown, where [`Error::Internal`]
/// would read as the plugin's own fault) and a message naming the vendor's task id and
/// `missing`, the part of the answer that should have held the output (such as
/// `content.video_url`).
///
/// Only for an answer whose status was read as success: an answer that cannot be read, or
/// a further call that fails (fetching the file the task made), stays an `Err`, retried.
pub fn succeeded_without_output(vendor: &str, task_id: &str, missing: &str) -> PollOutcome {
    PollOutcome::Failed(Error::upstream(format!(
        "{vendor} reported that task {task_id} succeeded but returned no output (no {missing} \
         in its answer)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_without_output_fails_the_task_naming_vendor_task_and_field() {
        let outcome = succeeded_without_output("Acme", "t-42", "content.video_url");
        let PollOutcome::Failed(Error::UpstreamUnavailable(message)) = outcome else {
            panic!("expected a failed task, got {outcome:?}")
        };
        assert_eq!(
            message,
            "Acme reported that task t-42 succeeded but returned no output (no content.video_url in \
             its answer)"
        );
    }
}
