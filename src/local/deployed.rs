//! The deployed defaults the local runs share with Terraform
//! (`infra/terraform/modules/stele`). `stele dev` and the fault tests take
//! their event source mapping and archiver settings from here, and the test
//! below reads the module and fails when the two disagree, so a local run
//! exercises what `terraform apply` deploys.

/// `esm_maximum_retry_attempts = -1`: a failing batch is retried until it
/// succeeds; the mapping never discards accepted events.
pub const ESM_MAX_RETRIES: Option<u32> = None;
/// `esm_maximum_record_age_secs = -1`: no age limit. The emulator has no age
/// limit to apply, so this only records that the deployment has none either.
pub const ESM_MAX_RECORD_AGE_SECS: Option<u64> = None;
/// `bisect_batch_on_function_error = true`.
pub const ESM_BISECT_ON_ERROR: bool = true;
/// `archive_prefix` (`STELE_ARCHIVE_PREFIX`).
pub const ARCHIVE_PREFIX: &str = "audit";
/// `retention_days` (`STELE_RETENTION_DAYS`).
pub const RETENTION_DAYS: i64 = 30;
/// `max_lateness_secs` (`STELE_MAX_LATENESS_SECS`), in hours.
pub const MAX_LATENESS_HOURS: i64 = 72;
/// `local.dedup_window_hours` (`STELE_DEDUP_WINDOW_HOURS`): the larger of the
/// stream's retention plus the lateness (168 + 72 h) and the dead-letter
/// queue's retention (336 h).
pub const DEDUP_WINDOW_HOURS: i64 = 336;

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/infra/terraform/modules/stele");

    /// The literal `default = …` of a Terraform variable (no HCL parser in
    /// the workspace; variables.tf writes one attribute per line).
    fn tf_default(name: &str) -> String {
        let text = std::fs::read_to_string(format!("{MODULE}/variables.tf")).expect("variables.tf");
        let start = text
            .find(&format!("variable \"{name}\" {{"))
            .unwrap_or_else(|| panic!("variable {name} missing"));
        let body = &text[start..];
        let body = &body[..body[1..].find("\nvariable \"").map_or(body.len(), |i| i + 1)];
        body.lines()
            .filter_map(|l| l.trim().strip_prefix("default"))
            .filter_map(|l| l.trim().strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
            .next()
            .unwrap_or_else(|| panic!("variable {name} has no default"))
    }

    /// -1 in Terraform is "no limit", `None` here.
    fn limit(name: &str) -> Option<u64> {
        match tf_default(name).parse::<i64>().expect("a number") {
            -1 => None,
            n => Some(u64::try_from(n).expect("-1 or a count")),
        }
    }

    #[test]
    fn local_runs_use_the_terraform_defaults() {
        assert_eq!(limit("esm_maximum_retry_attempts"), ESM_MAX_RETRIES.map(u64::from));
        assert_eq!(limit("esm_maximum_record_age_secs"), ESM_MAX_RECORD_AGE_SECS);
        let kinesis = std::fs::read_to_string(format!("{MODULE}/kinesis.tf")).expect("kinesis.tf");
        let bisect = kinesis
            .lines()
            .find_map(|l| l.trim().strip_prefix("bisect_batch_on_function_error"))
            .expect("bisect setting");
        assert_eq!(bisect.trim_start_matches([' ', '=']), ESM_BISECT_ON_ERROR.to_string());
        assert_eq!(tf_default("archive_prefix"), ARCHIVE_PREFIX);
        assert_eq!(tf_default("retention_days"), RETENTION_DAYS.to_string());
        assert_eq!(tf_default("max_lateness_secs"), (MAX_LATENESS_HOURS * 3600).to_string());
        let hours = |name: &str| tf_default(name).parse::<u64>().expect("a number");
        let window = (hours("kinesis_retention_hours") + hours("max_lateness_secs").div_ceil(3600))
            .max(hours("dlq_retention_secs").div_ceil(3600));
        assert_eq!(window as i64, DEDUP_WINDOW_HOURS);
    }
}
