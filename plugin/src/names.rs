//! Pure naming rules: ZenML project IDs, the Kubernetes names derived from them, binding names, durations.

use std::time::Duration;

use zenml_api::{Subject, SubjectKind};

use crate::error::InvalidArgument;

/// The longest Kubernetes name a Project (a namespace) may have.
pub const MAX_LABEL: usize = 63;
/// The longest name of most other objects (a DNS-1123 subdomain).
pub const MAX_SUBDOMAIN: usize = 253;

/// Checks a ZenML project ID: 1 to 63 letters, digits, `-` and `_` (what `spec.projectId` accepts).
pub fn validate_project_id(id: &str) -> Result<(), InvalidArgument> {
    let invalid = |problem| InvalidArgument::new("project ID", id, problem);
    if id.is_empty() || id.len() > MAX_LABEL {
        return Err(invalid(format!("must have 1 to {MAX_LABEL} characters")));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(invalid(format!("may hold only letters, digits, '-' and '_' (not {c:?})")));
    }
    Ok(())
}

/// Whether `name` is a DNS-1123 label (what a Project, Workspace or namespace name must be).
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LABEL
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Namespaces no Project may take: `default` and `kube-*`.
pub fn is_reserved(name: &str) -> bool {
    name == "default" || name.starts_with("kube-")
}

/// The Kubernetes form of a project ID: lowercased, `_` turned into `-`, trimmed to a DNS-1123 label. Empty when
/// the ID holds nothing but `-` and `_`.
pub fn derive_name(id: &str) -> String {
    let lowered: String =
        id.chars().map(|c| if c == '_' { '-' } else { c.to_ascii_lowercase() }).filter(|c| c.is_ascii()).collect();
    trim_label(lowered.trim_matches('-'), MAX_LABEL)
}

/// `name` cut to at most `max` characters, without a trailing `-`.
fn trim_label(name: &str, max: usize) -> String {
    let cut = &name[..name.len().min(max)];
    cut.trim_end_matches('-').to_owned()
}

/// The Kubernetes names a project with ZenML ID `id` in `workspace` may get, best first: the derived name, unless
/// it is reserved; then the name prefixed with the workspace (`default` in `ml` is `ml-default`); then that with
/// `-2` to `-9`, for when those are taken too.
pub fn candidate_names(id: &str, workspace: &str) -> Vec<String> {
    let base = derive_name(id);
    let mut names = Vec::new();
    if !base.is_empty() && !is_reserved(&base) {
        names.push(base.clone());
    }
    let prefixed = if base.is_empty() { format!("{workspace}-project") } else { format!("{workspace}-{base}") };
    let prefixed = trim_label(&prefixed, MAX_LABEL);
    for n in 1..=9 {
        let name = if n == 1 {
            prefixed.clone()
        } else {
            let suffix = format!("-{n}");
            format!("{}{suffix}", trim_label(&prefixed, MAX_LABEL - suffix.len()))
        };
        if !is_reserved(&name) && is_dns_label(&name) && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The first of `candidates` that `taken` does not claim.
pub fn choose_name(candidates: &[String], mut taken: impl FnMut(&str) -> bool) -> Option<String> {
    candidates.iter().find(|n| !taken(n)).cloned()
}

/// FNV-1a, 64 bits: stable across Rust releases and platforms (unlike `DefaultHasher`).
pub fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Lowercase letters, digits and single `-`, trimmed of `-`: a readable piece of a name.
fn sanitize(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// `user`, `group` or `sa`.
pub fn kind_short(kind: SubjectKind) -> &'static str {
    match kind {
        SubjectKind::User => "user",
        SubjectKind::Group => "group",
        SubjectKind::ServiceAccount => "sa",
    }
}

/// The name of the ProjectRoleBinding this plugin makes for one subject's role in one project:
/// `<project>-<role>-<user|group|sa>-<readable subject>-<hash of the exact subject>`, at most 253 characters.
///
/// One binding per (project, role, subject): each grant has its own `expiresAt`, and removing someone deletes only
/// their binding. The hash tells apart subjects that read the same once sanitized (`Alice` and `alice`, `a.b` and
/// `a-b`); the readable part makes `kubectl get prb` say who it is for.
pub fn binding_name(project: &str, role: &str, subject: &Subject) -> String {
    let exact = format!(
        "{:?}\0{}\0{}\0{}",
        subject.kind,
        subject.name,
        subject.project.as_deref().unwrap_or(""),
        subject.namespace.as_deref().unwrap_or("")
    );
    let hash = format!("{:010x}", fnv64(exact.as_bytes()) >> 24);
    let mut readable = sanitize(&subject.name);
    if let Some(owner) = subject.project.as_deref().or(subject.namespace.as_deref()) {
        readable = format!("{}-{readable}", sanitize(owner));
    }
    let prefix = format!("{project}-{role}-{}", kind_short(subject.kind));
    let room = MAX_SUBDOMAIN.saturating_sub(prefix.len() + hash.len() + 2);
    let readable = trim_label(&readable, room);
    if readable.is_empty() { format!("{prefix}-{hash}") } else { format!("{prefix}-{readable}-{hash}") }
}

/// A subject as the user names it on the command line.
pub fn subject(
    user: Option<&str>,
    group: Option<&str>,
    service_account: Option<&str>,
) -> Result<Subject, InvalidArgument> {
    let plain = |kind, name: &str| Subject { kind, name: name.to_owned(), project: None, namespace: None };
    match (user, group, service_account) {
        (Some(u), None, None) if !u.is_empty() => Ok(plain(SubjectKind::User, u)),
        (None, Some(g), None) if !g.is_empty() => Ok(plain(SubjectKind::Group, g)),
        (Some(_), None, None) => Err(InvalidArgument::new("--user", "", "is empty: name a user")),
        (None, Some(_), None) => Err(InvalidArgument::new("--group", "", "is empty: name a group")),
        (None, None, Some(sa)) => {
            let (project, name) =
                sa.split_once('/').filter(|(p, n)| !p.is_empty() && !n.is_empty()).ok_or_else(|| {
                    InvalidArgument::new(
                        "--service-account",
                        sa,
                        "is not PROJECT/NAME (the project holding the ServiceAccount, and its name)",
                    )
                })?;
            Ok(Subject {
                kind: SubjectKind::ServiceAccount,
                name: name.to_owned(),
                project: Some(project.to_owned()),
                namespace: None,
            })
        }
        _ => Err(InvalidArgument::without_value(
            "--user, --group or --service-account",
            "name the subject: give exactly one of them",
        )),
    }
}

/// `alice (User)`, `ml-platform (Group)`, `recommender/zenml-runner (ServiceAccount)`.
pub fn describe_subject(s: &Subject) -> String {
    match (&s.project, &s.namespace) {
        (Some(p), _) | (None, Some(p)) => format!("{p}/{} ({:?})", s.name, s.kind),
        _ => format!("{} ({:?})", s.name, s.kind),
    }
}

/// A duration that [`parse_duration`] does not read; clap says which flag it was given to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: use e.g. 30s, 15m, 2h, 7d or 1d12h")]
pub struct InvalidDuration(pub String);

/// Parses `90s`, `15m`, `2h`, `7d`, `1w`, or sums of them (`1d12h`); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, InvalidDuration> {
    let bad = || InvalidDuration(text.to_owned());
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// `7d`, `36h`, `90s`: a short human form of a duration.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s >= 86_400 && s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s >= 3600 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s >= 60 && s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// An age as kubectl shows it: the largest unit that fits, rounded down (`45s`, `12m`, `5h`, `3d`); seconds up to
/// 2 minutes, minutes up to 3 hours, hours up to 2 days.
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if s < 3 * 3600 => format!("{}m", s / 60),
        _ if s < 2 * 86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids() {
        for ok in ["default", "Fraud_Detection", "a", "x-1_2", &"a".repeat(63)] {
            validate_project_id(ok).unwrap();
        }
        for bad in ["", "has space", "dots.no", "ü", &"a".repeat(64)] {
            assert!(validate_project_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn derived_names_are_dns_labels() {
        assert_eq!(derive_name("Fraud_Detection"), "fraud-detection");
        assert_eq!(derive_name("_x_"), "x");
        assert_eq!(derive_name("a__b"), "a--b");
        assert_eq!(derive_name("__"), "");
        let long = format!("{}_{}", "a".repeat(62), "b");
        assert_eq!(derive_name(&long), "a".repeat(62));
        for id in ["Fraud_Detection", "_x_", "A-B", &"Z".repeat(63), &format!("{}_y", "q".repeat(61))] {
            let n = derive_name(id);
            assert!(is_dns_label(&n), "{id} -> {n}");
        }
    }

    #[test]
    fn reserved_names_get_the_workspace_prefix() {
        assert_eq!(candidate_names("default", "ml")[0], "ml-default");
        assert_eq!(candidate_names("Default", "ml")[0], "ml-default");
        assert_eq!(candidate_names("kube-stuff", "ml")[0], "ml-kube-stuff");
        assert_eq!(candidate_names("kube_stuff", "ml")[0], "ml-kube-stuff");
        assert_eq!(candidate_names("fraud", "ml")[..3], ["fraud", "ml-fraud", "ml-fraud-2"]);
        assert_eq!(candidate_names("__", "ml")[0], "ml-project");
        // A workspace whose own name is reserved-looking never yields a reserved candidate.
        assert!(candidate_names("default", "kube-x").iter().all(|n| !is_reserved(n)));
    }

    #[test]
    fn taken_names_fall_through_to_the_next_candidate() {
        let c = candidate_names("Fraud", "ml");
        assert_eq!(choose_name(&c, |_| false).as_deref(), Some("fraud"));
        assert_eq!(choose_name(&c, |n| n == "fraud").as_deref(), Some("ml-fraud"));
        assert_eq!(choose_name(&c, |n| n == "fraud" || n == "ml-fraud").as_deref(), Some("ml-fraud-2"));
        assert_eq!(choose_name(&c, |_| true), None);
    }

    #[test]
    fn long_candidates_stay_labels() {
        let ws = "w".repeat(63);
        let id = "p".repeat(63);
        let c = candidate_names(&id, &ws);
        assert_eq!(c[0], id);
        assert!(c.iter().all(|n| is_dns_label(n) && n.len() <= 63), "{c:?}");
        let mut distinct = c.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), c.len());
    }

    fn user(name: &str) -> Subject {
        Subject { kind: SubjectKind::User, name: name.into(), project: None, namespace: None }
    }

    #[test]
    fn binding_names_are_deterministic_readable_and_distinct() {
        let a = binding_name("fraud", "developer", &user("alice@example.com"));
        assert!(a.starts_with("fraud-developer-user-alice-example-com-"), "{a}");
        assert_eq!(a, binding_name("fraud", "developer", &user("alice@example.com")));
        assert_ne!(a, binding_name("fraud", "developer", &user("Alice@example.com")));
        assert_ne!(a, binding_name("fraud", "developer", &user("alice-example.com")));
        assert_ne!(a, binding_name("fraud", "viewer", &user("alice@example.com")));
        let group = Subject { kind: SubjectKind::Group, ..user("alice@example.com") };
        assert_ne!(a, binding_name("fraud", "developer", &group));
        let sa = subject(None, None, Some("recommender/zenml-runner")).unwrap();
        let n = binding_name("fraud", "viewer", &sa);
        assert!(n.starts_with("fraud-viewer-sa-recommender-zenml-runner-"), "{n}");
        let odd = binding_name("fraud", "viewer", &user("@@@"));
        assert!(odd.starts_with("fraud-viewer-user-") && !odd.contains("--"), "{odd}");
    }

    #[test]
    fn binding_names_fit_in_253_and_are_subdomains() {
        let project = "p".repeat(63);
        let role = "r".repeat(63);
        for name in ["x".repeat(512), "-".repeat(300), "ü".repeat(100), "a.b-c_d".into()] {
            let n = binding_name(&project, &role, &user(&name));
            assert!(n.len() <= 253, "{}", n.len());
            assert!(n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{n}");
            assert!(!n.ends_with('-') && !n.contains("--"), "{n}");
        }
    }

    #[test]
    fn subjects_from_flags() {
        assert_eq!(subject(Some("alice"), None, None).unwrap(), user("alice"));
        assert_eq!(subject(None, Some("team"), None).unwrap().kind, SubjectKind::Group);
        let sa = subject(None, None, Some("proj/runner")).unwrap();
        assert_eq!((sa.project.as_deref(), sa.name.as_str()), (Some("proj"), "runner"));
        assert!(subject(None, None, Some("runner")).is_err());
        assert!(subject(None, None, Some("/runner")).is_err());
        assert!(subject(Some("a"), Some("b"), None).is_err());
        assert!(subject(None, None, None).is_err());
        assert_eq!(describe_subject(&sa), "proj/runner (ServiceAccount)");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_duration("1d12h").unwrap(), Duration::from_secs(36 * 3600));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2m30s").unwrap(), Duration::from_secs(150));
        for bad in ["", "d", "7x", "7d3", "-1d", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(format_duration(Duration::from_secs(36 * 3600)), "36h");
        assert_eq!(format_duration(Duration::from_secs(61)), "61s");
    }

    #[test]
    fn ages_as_kubectl_shows_them() {
        let age_of = |s: u64| age(Duration::from_secs(s));
        assert_eq!([age_of(0), age_of(119), age_of(120), age_of(3 * 3600 - 1)], ["0s", "119s", "2m", "179m"]);
        assert_eq!(
            [age_of(3 * 3600), age_of(2 * 86_400 - 1), age_of(2 * 86_400), age_of(400 * 86_400)],
            ["3h", "47h", "2d", "400d"]
        );
    }
}
