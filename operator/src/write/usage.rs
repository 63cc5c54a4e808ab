//! How often a project's status follows its ResourceQuota's count.
//!
//! `status.quota.used` mirrors what the quota controller counts in the project's namespace. Under pod churn that
//! count changes with every pod created or deleted, and following each change would be one more API write per pod
//! event: the operator would double the quota controller's own status writes on a busy cluster. So a status that
//! differs from the stored one only in `used` is written at most once per [`INTERVAL`] per project. The change waits
//! (the reconcile is requeued for when the interval ends), it is never dropped: the status always ends at the latest
//! count. The first count (no `used` yet) and every other change are written at once.

use std::time::{Duration, Instant};

use zenml_api::ProjectStatus;

use super::expiring::Expiring;

/// At most one usage-only status write per project this often.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// When each project's status was last written, by uid; older than [`INTERVAL`] holds nothing back.
pub struct UsageWrites {
    last: Expiring<String, ()>,
}

impl Default for UsageWrites {
    fn default() -> Self {
        Self { last: Expiring::new(INTERVAL) }
    }
}

impl UsageWrites {
    /// How long a usage-only write of `uid` must still wait at `now`, if at all.
    pub fn wait(&self, uid: &str, now: Instant) -> Option<Duration> {
        let (_, last) = self.last.get(uid, now)?;
        INTERVAL.checked_sub(now.saturating_duration_since(last)).filter(|d| !d.is_zero())
    }

    /// Records a status write of `uid` at `now`.
    pub fn wrote(&self, uid: &str, now: Instant) {
        self.last.insert(uid.to_owned(), (), now);
    }
}

/// Whether `new` differs from `old` only in the quota's `used`, and `old` already had a count.
pub fn usage_only(old: &ProjectStatus, new: &ProjectStatus) -> bool {
    let (Some(old_quota), Some(new_quota)) = (&old.quota, &new.quota) else { return false };
    if old_quota.used.is_empty() || old_quota.used == new_quota.used {
        return false;
    }
    let mut same = new.clone();
    if let Some(q) = &mut same.quota {
        q.used = old_quota.used.clone();
    }
    same == *old
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use zenml_api::ProjectQuotaStatus;

    fn status(pods_used: Option<&str>, namespace: &str) -> ProjectStatus {
        ProjectStatus {
            observed_generation: Some(1),
            namespace: Some(namespace.into()),
            quota: Some(ProjectQuotaStatus {
                hard: [("pods".to_owned(), Quantity("10".into()))].into(),
                used: pods_used.map(|u| [("pods".to_owned(), Quantity(u.into()))].into()).unwrap_or_default(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_changed_count_is_usage_only() {
        assert!(usage_only(&status(Some("1"), "p"), &status(Some("2"), "p")));
        // The first count goes at once.
        assert!(!usage_only(&status(None, "p"), &status(Some("0"), "p")));
        // Anything else changing with it goes at once.
        assert!(!usage_only(&status(Some("1"), "p"), &status(Some("2"), "q")));
        assert!(!usage_only(&status(Some("1"), "p"), &status(Some("1"), "p")));
        let mut no_quota = status(Some("1"), "p");
        no_quota.quota = None;
        assert!(!usage_only(&status(Some("1"), "p"), &no_quota));
    }

    #[test]
    fn a_usage_write_waits_out_the_interval_since_the_last_write() {
        let w = UsageWrites::default();
        let t0 = Instant::now();
        assert_eq!(w.wait("a", t0), None, "never written: at once");
        w.wrote("a", t0);
        assert_eq!(w.wait("a", t0 + Duration::from_secs(3)), Some(INTERVAL - Duration::from_secs(3)));
        assert_eq!(w.wait("b", t0 + Duration::from_secs(3)), None, "per project");
        assert_eq!(w.wait("a", t0 + INTERVAL), None);
    }
}
