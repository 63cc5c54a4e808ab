//! Standard `metav1.Condition`s whose `lastTransitionTime` moves only when the status really changes, so a
//! reconcile that finds nothing new computes an identical status and writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Declares a closed vocabulary whose words are written to the API as their own names.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $word:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $word),* }

        impl $name {
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$word => stringify!($word)),* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }
    };
}

vocabulary! {
    /// The condition types of the three kinds' statuses.
    ConditionType {
        /// Every kind: all the others hold.
        Ready,
        /// Project: its namespace exists and is its own.
        NamespaceReady,
        /// Project: its ResourceQuota holds what it asked for, within the workspace's budget.
        QuotaReady,
        /// Project: the runner and member roles are bound.
        AccessReady,
        /// Project: its NetworkPolicy is as its isolation asks.
        NetworkReady,
        /// Project: its NetworkPolicy lets pods reach what its egress allows, the API server among it.
        EgressReady,
        /// Workspace: its projects are counted.
        ProjectsReady,
        /// Workspace: its admins may manage its projects.
        DelegationReady,
        /// Project: True while it is frozen (no new or changed pods and workloads); not part of Ready.
        Frozen,
        /// Workspace: its `spec.policies` hold in its projects (the binding of the workspace policy exists).
        /// Project, when it sets `spec.policies`: they narrow the workspace's.
        PoliciesReady,
        /// Project: every template of its workspace that it does not exclude is applied in its namespace.
        TemplatesReady,
        /// Workspace: the default project it declares (`spec.defaultProject`) exists and is its own.
        DefaultProjectReady,
    }
}

vocabulary! {
    /// Why a condition is as it is, and why an Event was published.
    Reason {
        Ready,
        // Project, provisioned
        Provisioned,
        QuotaApplied,
        NoQuota,
        RolesBound,
        NotIsolated,
        WorkspaceIsolated,
        ProjectIsolated,
        PoliciesNarrowed,
        NotAllowedByWorkspace,
        EgressOpen,
        EgressWorkspace,
        EgressAllowList,
        ApiServerUnknown,
        // Project, refused or failing
        BudgetExceeded,
        InvalidQuantity,
        DuplicateProjectId,
        MaxProjectsExceeded,
        RoleNotAllowed,
        WorkspaceNotFound,
        InvalidName,
        NamespaceConflict,
        NamespaceTerminating,
        Forbidden,
        ApplyFailed,
        BindForbidden,
        Deleting,
        // Any of our kinds whose stored object does not decode
        InvalidSpec,
        // ProjectRoleBinding
        Bound,
        ProjectNotFound,
        ProjectReplaced,
        ProjectNotReady,
        RoleNotFound,
        SubjectProjectNotFound,
        SubjectProjectReplaced,
        CrossWorkspaceGrant,
        Expired,
        // Workspace
        Accepted,
        ProjectsRemain,
        // Frozen (also Expired: past the project's spec.expiresAt)
        ProjectFrozen,
        WorkspaceFrozen,
        NotFrozen,
        Applied,
        NameConflict,
        // TemplatesReady
        TemplatesApplied,
        NoTemplates,
        TemplateConflict,
        TemplateKindNotAllowed,
        TemplateForbidden,
        TemplateRefused,
        // Events only
        NamespaceRecreated,
        NamespaceRetained,
        NamespaceDeleting,
    }
}

/// A condition before it is stamped with times and generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: ConditionType,
    pub ok: bool,
    pub reason: Reason,
    pub message: String,
}

impl Cond {
    pub fn ok(type_: ConditionType, reason: Reason, message: impl Into<String>) -> Self {
        Self { type_, ok: true, reason, message: message.into() }
    }
    pub fn fail(type_: ConditionType, reason: Reason, message: impl Into<String>) -> Self {
        Self { type_, ok: false, reason, message: message.into() }
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
                .find(|p| p.type_ == *c.type_.as_str() && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: c.type_.as_str().to_owned(),
                status: status.to_owned(),
                reason: c.reason.as_str().to_owned(),
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
        Some(c) => Cond::fail(ConditionType::Ready, c.reason, c.message.clone()),
        None => Cond::ok(ConditionType::Ready, Reason::Ready, ready_message),
    }
}

#[cfg(test)]
mod tests {
    use super::ConditionType::*;
    use super::*;

    #[test]
    fn transition_time_moves_only_on_change() {
        let first = stamp(&[], vec![Cond::ok(Ready, Reason::Ready, "ok")], Some(1));
        let again = stamp(&first, vec![Cond::ok(Ready, Reason::Ready, "ok")], Some(1));
        assert_eq!(first, again);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let flipped = stamp(&first, vec![Cond::fail(Ready, Reason::Forbidden, "no")], Some(2));
        assert_ne!(flipped[0].last_transition_time, first[0].last_transition_time);
        assert_eq!((flipped[0].type_.as_str(), flipped[0].reason.as_str()), ("Ready", "Forbidden"));
    }

    #[test]
    fn ready_names_the_first_failure() {
        let parts = [
            Cond::ok(NamespaceReady, Reason::Provisioned, ""),
            Cond::fail(QuotaReady, Reason::BudgetExceeded, "too much"),
        ];
        let r = ready(&parts, "all good");
        assert_eq!((r.ok, r.reason), (false, Reason::BudgetExceeded));
        assert!(ready(&parts[..1], "all good").ok);
    }

    #[test]
    fn words_are_written_as_their_names() {
        assert_eq!(Reason::SubjectProjectReplaced.to_string(), "SubjectProjectReplaced");
        assert!("QuotaReady" == &QuotaReady);
    }
}
