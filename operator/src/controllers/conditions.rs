//! Standard `metav1.Condition`s whose `lastTransitionTime` moves only when the status really changes, so a
//! reconcile that finds nothing new computes an identical status and writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// A condition before it is stamped with times and generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

impl Cond {
    pub fn ok(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self { type_, ok: true, reason: reason.to_owned(), message: message.into() }
    }
    pub fn fail(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self { type_, ok: false, reason: reason.to_owned(), message: message.into() }
    }
}

/// Stamps `new` with `generation`, keeping each condition's previous transition time unless its status changed.
pub fn stamp(previous: &[Condition], new: Vec<Cond>, generation: Option<i64>) -> Vec<Condition> {
    let now = Time(Timestamp::now());
    new.into_iter()
        .map(|c| {
            let status = if c.ok { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: c.type_.to_owned(),
                status: status.to_owned(),
                reason: c.reason,
                message: c.message,
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// `Ready`, summarising the others: true when all are, else the first one that is not.
pub fn ready(parts: &[Cond], ready_message: &str) -> Cond {
    match parts.iter().find(|c| !c.ok) {
        Some(c) => Cond::fail("Ready", &c.reason, c.message.clone()),
        None => Cond::ok("Ready", "Ready", ready_message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_change() {
        let first = stamp(&[], vec![Cond::ok("Ready", "Ready", "ok")], Some(1));
        let again = stamp(&first, vec![Cond::ok("Ready", "Ready", "ok")], Some(1));
        assert_eq!(first, again);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let flipped = stamp(&first, vec![Cond::fail("Ready", "Broken", "no")], Some(2));
        assert_ne!(flipped[0].last_transition_time, first[0].last_transition_time);
    }

    #[test]
    fn ready_names_the_first_failure() {
        let r = ready(&[Cond::ok("A", "Fine", ""), Cond::fail("B", "BudgetExceeded", "too much")], "all good");
        assert_eq!((r.ok, r.reason.as_str()), (false, "BudgetExceeded"));
        assert!(ready(&[Cond::ok("A", "Fine", "")], "all good").ok);
    }
}
