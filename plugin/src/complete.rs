//! `kubectl zenml <TAB>`. kubectl (1.26 and later) completes a plugin's words by running the executable
//! `kubectl_complete-zenml` from PATH with them (the word being completed last, empty for a new word). That is the
//! script `plugin/kubectl_complete-zenml`, which runs `kubectl-zenml __complete WORD...`, answered here in cobra's
//! format: one candidate per line (`value<TAB>description`), then `:<directive>`.
//!
//! Subcommands, flags and fixed values come from the clap definition in [`crate::cli`]; workspace, project and
//! context names from the kubeconfig and the cluster (with `--kubeconfig`, `--context` and `--workspace` as typed on
//! the line), within a few seconds or not at all: a completion never prints an error.

use std::time::Duration;

use clap::{Arg, CommandFactory};
use kube::ResourceExt;
use kube::api::ListParams;
use zenml_api::BuiltinRole;

use crate::cli::Cli;
use crate::output::Format;
use crate::session::Session;

/// The first argument that asks `kubectl-zenml` for completions instead of running a command.
pub const REQUEST: &str = "__complete";

/// cobra's `ShellCompDirectiveNoFileComp`: offer no file names when there are no candidates.
const NO_FILES: u8 = 4;
/// cobra's `ShellCompDirectiveDefault`: the shell may complete file names.
const FILES: u8 = 0;

/// How long a completion may wait for the API server.
const API_TIMEOUT: Duration = Duration::from_secs(3);

/// Names that only the kubeconfig or the cluster know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Names {
    Workspaces,
    Projects,
    Contexts,
}

/// What the word being completed may be.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Put before each candidate: `--workspace=` when completing `--workspace=ml`.
    pub prefix: String,
    /// What the user typed of the value so far; candidates must start with it.
    pub typed: String,
    /// Candidates known without asking anyone, with descriptions.
    pub fixed: Vec<(String, String)>,
    pub names: Option<Names>,
    /// File names are what is wanted (`--kubeconfig`).
    pub files: bool,
    /// `--kubeconfig`, `--context` and `--workspace` as given on the line.
    pub kubeconfig: Option<String>,
    pub context: Option<String>,
    pub workspace: Option<String>,
}

/// Works out what `words` (everything after `kubectl zenml`; the last is the word being completed) can go on with.
pub fn plan(words: &[String]) -> Plan {
    let mut root = Cli::command();
    root.build();
    let (current, done) = match words.split_last() {
        Some((last, rest)) => (last.as_str(), rest),
        None => ("", &[][..]),
    };
    let mut plan = Plan::default();
    let walked = walk(&root, done, &mut plan);
    complete_word(&mut plan, &walked, current);
    plan.fixed.retain(|(v, _)| v.starts_with(&plan.typed));
    plan
}

/// Where the words before the one being completed lead.
#[derive(Clone, Copy)]
struct Walked<'a> {
    /// The (sub)command they reach.
    cmd: &'a clap::Command,
    /// How many positional arguments of `cmd` they give.
    positionals: usize,
    /// The argument whose value the next word is.
    pending: Option<&'a Arg>,
    /// After `--`: every word is a positional argument.
    only_positionals: bool,
}

/// Reads the words before the one being completed, noting in `plan` the flags a completion uses.
fn walk<'a>(root: &'a clap::Command, done: &[String], plan: &mut Plan) -> Walked<'a> {
    let mut cmd = root;
    let mut positionals = 0;
    let mut pending: Option<&Arg> = None;
    let mut only_positionals = false;
    for word in done {
        if let Some(arg) = pending.take() {
            remember(plan, arg, word);
            continue;
        }
        if word == "--" {
            only_positionals = true;
        } else if !only_positionals && let Some(flag) = word.strip_prefix("--") {
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (flag, None),
            };
            if let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(name)) {
                match value {
                    Some(v) => remember(plan, arg, v),
                    None if takes_value(arg) => pending = Some(arg),
                    None => {}
                }
            }
        } else if !only_positionals && word.len() > 1 && word.starts_with('-') {
            // `-o json`, `-ojson`, `-o=json`; only the first letter of a cluster like `-ab` can take a value here.
            let mut letters = word[1..].chars();
            let short = letters.next().expect("one letter");
            let rest = letters.as_str();
            if let Some(arg) = cmd.get_arguments().find(|a| a.get_short() == Some(short))
                && takes_value(arg)
            {
                match rest.strip_prefix('=').unwrap_or(rest) {
                    "" => pending = Some(arg),
                    v => remember(plan, arg, v),
                }
            }
        } else if positionals == 0
            && let Some(sub) = cmd.find_subcommand(word)
        {
            cmd = sub;
        } else {
            positionals += 1;
        }
    }
    Walked { cmd, positionals, pending, only_positionals }
}

/// Fills `plan` with what `current`, the word being completed, may be.
fn complete_word(plan: &mut Plan, walked: &Walked, current: &str) {
    let Walked { cmd, positionals, pending, only_positionals } = *walked;
    if let Some(arg) = pending {
        plan.typed = current.to_owned();
        values(plan, arg);
    } else if !only_positionals && current.starts_with("--") && current.contains('=') {
        let (flag, value) = current.split_once('=').expect("an '='");
        if let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(&flag[2..])) {
            plan.prefix = format!("{flag}=");
            plan.typed = value.to_owned();
            values(plan, arg);
        }
    } else if !only_positionals && current.starts_with('-') {
        plan.typed = current.to_owned();
        for arg in cmd.get_arguments().filter(|a| !a.is_positional() && !a.is_hide_set()) {
            let help = about(arg.get_help());
            if let Some(long) = arg.get_long() {
                plan.fixed.push((format!("--{long}"), help.clone()));
            }
            if current.len() <= 2
                && let Some(short) = arg.get_short()
            {
                plan.fixed.push((format!("-{short}"), help));
            }
        }
    } else {
        plan.typed = current.to_owned();
        if positionals == 0 {
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
                plan.fixed.push((sub.get_name().to_owned(), about(sub.get_about())));
            }
        }
        if let Some(arg) = cmd.get_positionals().nth(positionals) {
            values(plan, arg);
        }
    }
}

fn takes_value(arg: &Arg) -> bool {
    arg.get_action().takes_values()
}

fn about(text: Option<&clap::builder::StyledStr>) -> String {
    let text = text.map(|t| t.to_string()).unwrap_or_default();
    text.lines().next().unwrap_or_default().trim_end_matches('.').to_owned()
}

/// Keeps the flags that say where to look.
fn remember(plan: &mut Plan, arg: &Arg, value: &str) {
    let slot = match arg.get_id().as_str() {
        "kubeconfig" => &mut plan.kubeconfig,
        "context" => &mut plan.context,
        "workspace_flag" => &mut plan.workspace,
        _ => return,
    };
    *slot = Some(value.to_owned());
}

/// The values `arg` takes.
fn values(plan: &mut Plan, arg: &Arg) {
    let possible = arg.get_possible_values();
    if !possible.is_empty() {
        for v in possible.iter().filter(|v| !v.is_hide_set()) {
            plan.fixed.push((v.get_name().to_owned(), about(v.get_help())));
        }
        return;
    }
    match arg.get_id().as_str() {
        "workspace" | "workspace_flag" => plan.names = Some(Names::Workspaces),
        "project" => plan.names = Some(Names::Projects),
        "context" => plan.names = Some(Names::Contexts),
        "kubeconfig" => plan.files = true,
        "role" => {
            for r in BuiltinRole::ALL {
                plan.fixed.push((r.name().to_owned(), "built-in role".to_owned()));
            }
        }
        _ => {}
    }
}

/// Answers `kubectl-zenml __complete WORD...` on stdout.
pub async fn run(words: &[String]) {
    let plan = plan(words);
    let mut candidates = plan.fixed.clone();
    if let Some(names) = plan.names {
        let found = tokio::time::timeout(API_TIMEOUT, lookup(&plan, names)).await.unwrap_or_default();
        candidates.extend(found.into_iter().filter(|(v, _)| v.starts_with(&plan.typed)));
    }
    let mut text = String::new();
    for (value, description) in candidates {
        text.push_str(&plan.prefix);
        text.push_str(&value);
        if !description.is_empty() {
            text.push('\t');
            text.push_str(&description);
        }
        text.push('\n');
    }
    text.push_str(&format!(":{}\n", if plan.files { FILES } else { NO_FILES }));
    // Whoever asked may have stopped reading: nothing to report then.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
}

/// Workspace, project or context names, with descriptions; none when they cannot be read.
async fn lookup(plan: &Plan, names: Names) -> Vec<(String, String)> {
    let kubeconfig = plan.kubeconfig.as_deref().map(std::path::Path::new);
    if names == Names::Contexts {
        let Ok((paths, explicit)) = crate::kubeconfig::locate(kubeconfig) else { return Vec::new() };
        let Ok(files) = crate::kubeconfig::Files::read(&paths, explicit) else { return Vec::new() };
        return files.context_names().into_iter().map(|c| (c, String::new())).collect();
    }
    let Ok(s) = Session::new(kubeconfig, plan.context.as_deref(), None, Format::Table).await else {
        return Vec::new();
    };
    match names {
        Names::Workspaces => match s.workspaces().list(&ListParams::default()).await {
            Ok(l) => {
                let mut out: Vec<(String, String)> =
                    l.items.iter().map(|w| (w.name_any(), w.spec.display_name.clone().unwrap_or_default())).collect();
                out.sort();
                out
            }
            Err(_) => Vec::new(),
        },
        Names::Projects => match s.list_projects(plan.workspace.as_deref()).await {
            Ok(projects) => projects
                .iter()
                .map(|p| {
                    let id = p.spec.project_id.as_deref().map(|id| format!("ID {id}, ")).unwrap_or_default();
                    (p.name_any(), format!("{id}workspace {}", p.spec.workspace))
                })
                .collect(),
            Err(_) => Vec::new(),
        },
        Names::Contexts => unreachable!("read from the kubeconfig above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(words: &[&str]) -> Plan {
        plan(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    }

    fn values(p: &Plan) -> Vec<&str> {
        p.fixed.iter().map(|(v, _)| v.as_str()).collect()
    }

    #[test]
    fn first_word_is_a_command_group() {
        let p = plan_of(&[""]);
        assert_eq!(values(&p), ["project", "workspace", "member", "audit", "completion"]);
        assert!(p.fixed.iter().all(|(_, d)| !d.is_empty()), "each has its description: {:?}", p.fixed);
        assert_eq!((p.names, p.files), (None, false));
        assert_eq!(values(&plan_of(&["p"])), ["project"]);
        assert_eq!(values(&plan_of(&[])), values(&plan_of(&[""])));
    }

    #[test]
    fn subcommands_then_their_arguments() {
        assert_eq!(
            values(&plan_of(&["project", ""])),
            ["register", "set", "list", "describe", "freeze", "unfreeze", "prune"]
        );
        assert_eq!(values(&plan_of(&["workspace", "u"])), ["use"]);
        let p = plan_of(&["project", "set", ""]);
        assert_eq!((p.names, values(&p)), (Some(Names::Projects), vec![]));
        let p = plan_of(&["workspace", "use", "m"]);
        assert_eq!((p.names, p.typed.as_str()), (Some(Names::Workspaces), "m"));
        // One positional is enough for `project set`.
        assert_eq!(plan_of(&["project", "set", "fraud", ""]).names, None);
        assert_eq!(plan_of(&["project", "register", ""]).names, None, "a new ID is not completed");
    }

    #[test]
    fn flags_and_their_values() {
        let p = plan_of(&["member", "add", "--"]);
        let flags = values(&p);
        for f in ["--role", "--user", "--group", "--service-account", "--project", "--workspace", "--context"] {
            assert!(flags.contains(&f), "{f} in {flags:?}");
        }
        assert_eq!(values(&plan_of(&["member", "add", "--role", ""])), BuiltinRole::ALL.map(|r| r.name()));
        assert_eq!(plan_of(&["member", "list", "-p", ""]).names, Some(Names::Projects));
        assert_eq!(plan_of(&["-w", ""]).names, Some(Names::Workspaces));
        assert_eq!(values(&plan_of(&["audit", "-o", "j"])), ["json"]);
        assert_eq!(values(&plan_of(&["completion", ""])), ["bash", "elvish", "fish", "powershell", "zsh"]);
        assert_eq!(plan_of(&["--context", ""]).names, Some(Names::Contexts));
        assert!(plan_of(&["--kubeconfig", ""]).files);
        let p = plan_of(&["project", "list", "--workspace=m"]);
        assert_eq!((p.prefix.as_str(), p.typed.as_str(), p.names), ("--workspace=", "m", Some(Names::Workspaces)));
    }

    #[test]
    fn flags_on_the_line_say_where_to_look() {
        let p = plan_of(&["--context", "c", "-w", "ml", "--kubeconfig=/k", "project", "set", ""]);
        assert_eq!(p.names, Some(Names::Projects));
        assert_eq!(
            (p.context.as_deref(), p.workspace.as_deref(), p.kubeconfig.as_deref()),
            (Some("c"), Some("ml"), Some("/k"))
        );
        // A flag's value is not taken for a subcommand.
        let p = plan_of(&["-o", "json", "project", "describe", ""]);
        assert_eq!(p.names, Some(Names::Projects));
        let p = plan_of(&["-ojson", "workspace", ""]);
        assert_eq!(values(&p), ["list", "describe", "use"]);
    }
}
