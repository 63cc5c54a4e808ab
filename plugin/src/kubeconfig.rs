//! Reading and editing kubeconfig files the way kubectl does.
//!
//! - **Which files.** `--kubeconfig FILE` (that file only), else every file in `KUBECONFIG` (missing ones are
//!   skipped), else `~/.kube/config`. Merged like kubectl: the first file that defines a name wins.
//! - **Where changes go** (client-go's `ModifyConfig`): a context is changed in the first file that defines it; a
//!   new context and the preferences go to the *default file* (the explicit file; else the only `KUBECONFIG`
//!   entry, or the first one that exists, or the last one); `current-context` goes to the first file that sets one,
//!   else to the default file.
//! - **How.** Each file is edited as a generic YAML tree ([`Yaml`]), so whatever the plugin does not know about
//!   survives; under kubectl's lock (`FILE.lock`), re-read after the lock is taken, checked (the new text must parse
//!   back to the same tree and load as a kubeconfig), backed up once per run to `FILE.zenml.bak`, and replaced
//!   atomically (temp file in the same directory, same permissions, fsync, rename). Comments are not kept (kubectl
//!   drops them too).
//!
//! The plugin's own data lives in kubeconfig extensions named `zenml.io`, which kubectl preserves: on a context,
//! the workspace it was made for (`kubectl zenml workspace use`); in `preferences.extensions`, each user's default
//! project per workspace.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::yaml::{self, Yaml, YamlError};

/// Why the kubeconfig could not be found, read, used or written; each says which file or context.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("cannot find a kubeconfig: set KUBECONFIG")]
    NoHome,
    #[error("no kubeconfig file found (looked at {looked_at}); set KUBECONFIG or pass --kubeconfig")]
    NoFile { looked_at: String },
    #[error("no current context in {looked_at}: pass --context, or `kubectl config use-context NAME`")]
    NoCurrentContext { looked_at: String },
    #[error("context {context:?} is not defined in {looked_at} (`kubectl config get-contexts` lists them)")]
    UnknownContext { context: String, looked_at: String },
    /// A context in use that no file defines any more (removed since the run started).
    #[error("context {0:?} is not defined in any kubeconfig file")]
    NoFileDefines(String),
    #[error("cannot read kubeconfig {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot parse kubeconfig {}: {source}", path.display())]
    Parse { path: PathBuf, source: YamlError },
    /// kube could not load a file that parsed as YAML.
    #[error("cannot load kubeconfig {}: {source}", path.display())]
    Load { path: PathBuf, source: kube::config::KubeconfigError },
    #[error("cannot merge kubeconfig {}: {source}", path.display())]
    Merge { path: PathBuf, source: kube::config::KubeconfigError },
    #[error("cannot use context {context:?}: {source}")]
    Context { context: String, source: kube::config::KubeconfigError },
    #[error("cannot make a client for {context:?}: {source}")]
    Client { context: String, source: kube::Error },
    #[error("cannot edit {}: {source}", path.display())]
    Edit { path: PathBuf, source: EditError },
    /// The edited file failed its check before being written; the file is unchanged.
    #[error("refusing to write {}: {source}", path.display())]
    Unsafe { path: PathBuf, source: EditError },
    #[error("{} is locked ({} exists): another kubectl may be writing it; if none runs, delete the lock file", path.display(), lock.display())]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("cannot lock {}: {source}", path.display())]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("cannot back up {} to {}: {source}", path.display(), backup.display())]
    Backup { path: PathBuf, backup: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// Why an edit of one kubeconfig document cannot be made, or its result cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("context {0:?} is not defined")]
    NoContext(String),
    #[error(transparent)]
    Yaml(#[from] YamlError),
    #[error("the YAML written would not read back the same")]
    NoRoundTrip,
    #[error("the result would not load as a kubeconfig: {0}")]
    NotAKubeconfig(kube::config::KubeconfigError),
}

/// Name of the plugin's extensions, on contexts and in `preferences.extensions`.
pub const EXTENSION: &str = "zenml.io";

/// One kubeconfig file: its path and its content, `None` when it does not exist.
#[derive(Clone, Debug)]
pub struct File {
    pub path: PathBuf,
    pub doc: Option<Yaml>,
}

/// The kubeconfig files in use, in precedence order.
#[derive(Clone, Debug)]
pub struct Files {
    pub files: Vec<File>,
    /// Set by `--kubeconfig`: that file is the only one, and it is where every change goes.
    pub explicit: bool,
}

/// The kubeconfig paths in precedence order, and whether they were given explicitly.
pub fn locate(flag: Option<&Path>) -> Result<(Vec<PathBuf>, bool), KubeconfigError> {
    if let Some(path) = flag {
        return Ok((vec![path.to_owned()], true));
    }
    if let Some(value) = std::env::var_os("KUBECONFIG") {
        let paths: Vec<PathBuf> = std::env::split_paths(&value).filter(|p| !p.as_os_str().is_empty()).collect();
        if !paths.is_empty() {
            return Ok((paths, false));
        }
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or(KubeconfigError::NoHome)?;
    Ok((vec![PathBuf::from(home).join(".kube/config")], false))
}

impl Files {
    /// Reads `paths`. An explicit file must exist; missing `KUBECONFIG` entries are skipped, like kubectl does.
    pub fn read(paths: &[PathBuf], explicit: bool) -> Result<Files, KubeconfigError> {
        let mut files = Vec::new();
        for path in paths {
            let doc = match std::fs::read_to_string(path) {
                Ok(text) => Some(parse(path, &text)?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => None,
                Err(source) => return Err(KubeconfigError::Read { path: path.clone(), source }),
            };
            files.push(File { path: path.clone(), doc });
        }
        Ok(Files { files, explicit })
    }

    /// Files that exist, in order.
    pub fn existing(&self) -> impl Iterator<Item = &File> {
        self.files.iter().filter(|f| f.doc.is_some())
    }

    /// The file new entries and preferences go to (client-go's `GetDefaultFilename`).
    pub fn default_file(&self) -> &Path {
        if self.explicit || self.files.len() == 1 {
            return &self.files[0].path;
        }
        self.existing().next().unwrap_or_else(|| self.files.last().expect("at least one path")).path.as_path()
    }

    /// The first file that defines context `name`.
    pub fn context_file(&self, name: &str) -> Option<&Path> {
        self.existing().find(|f| f.doc.as_ref().and_then(|d| named(d, "contexts", name)).is_some()).map(|f| &*f.path)
    }

    /// The body (`context:`) of context `name`, from the first file that defines it.
    pub fn context(&self, name: &str) -> Option<&Yaml> {
        self.existing().find_map(|f| named(f.doc.as_ref()?, "contexts", name)?.get("context"))
    }

    /// The names of all contexts, in file order, each once.
    pub fn context_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for f in self.existing() {
            let contexts = f.doc.as_ref().and_then(|d| d.get("contexts")).and_then(Yaml::as_seq).unwrap_or_default();
            for name in contexts.iter().filter_map(|c| c.get_str("name")) {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_owned());
                }
            }
        }
        names
    }

    /// The current context: from the first file that sets a non-empty one.
    pub fn current_context(&self) -> Option<&str> {
        self.existing().find_map(|f| f.doc.as_ref()?.get_str("current-context").filter(|c| !c.is_empty()))
    }

    /// Where `current-context` is changed: the first file that sets one, else the default file.
    pub fn current_context_file(&self) -> &Path {
        self.existing()
            .find(|f| f.doc.as_ref().and_then(|d| d.get_str("current-context")).is_some_and(|c| !c.is_empty()))
            .map_or_else(|| self.default_file(), |f| &*f.path)
    }

    /// Every user's default projects, from the first file that holds the plugin's preferences.
    pub fn default_projects(&self) -> Vec<DefaultProject> {
        self.existing()
            .find_map(|f| preferences_extension(f.doc.as_ref()?))
            .map(|ext| {
                ext.get("defaultProjects")
                    .and_then(Yaml::as_seq)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(DefaultProject::from_yaml)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Parses the text of kubeconfig `path`, which may start with a byte order mark.
fn parse(path: &Path, text: &str) -> Result<Yaml, KubeconfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    yaml::parse(text).map_err(|source| KubeconfigError::Parse { path: path.to_owned(), source })
}

/// The entry of list `list` (`contexts`, `clusters`, `users`) named `name`.
fn named<'a>(doc: &'a Yaml, list: &str, name: &str) -> Option<&'a Yaml> {
    doc.get(list)?.as_seq()?.iter().find(|e| e.get_str("name") == Some(name))
}

fn named_mut<'a>(items: &'a mut [Yaml], name: &str) -> Option<&'a mut Yaml> {
    items.iter_mut().find(|e| e.get_str("name") == Some(name))
}

/// The `extension` of the `zenml.io` entry in a list of named extensions.
fn extension_in(extensions: Option<&Yaml>) -> Option<&Yaml> {
    extensions?.as_seq()?.iter().find(|e| e.get_str("name") == Some(EXTENSION))?.get("extension")
}

fn preferences_extension(doc: &Yaml) -> Option<&Yaml> {
    extension_in(doc.get("preferences")?.get("extensions"))
}

/// The workspace a context was made for by `kubectl zenml workspace use`.
pub fn context_workspace(context: &Yaml) -> Option<String> {
    extension_in(context.get("extensions"))?.get_str("workspace").map(str::to_owned)
}

/// Sets (or replaces) the `zenml.io` entry of the named-extension list under `key` of `parent`.
fn set_extension(parent: &mut Yaml, key: &str, extension: Yaml) -> Result<(), YamlError> {
    let items = parent.seq_at(key)?;
    match named_mut(items, EXTENSION) {
        Some(existing) => existing.set("extension", extension)?,
        None => {
            let mut entry = Yaml::map();
            entry.set("extension", extension)?;
            entry.set("name", Yaml::str(EXTENSION))?;
            items.push(entry);
        }
    }
    Ok(())
}

/// A user's default project in one workspace of one cluster. Users and clusters are kubeconfig names: one
/// kubeconfig may hold several identities on several clusters, and each has its own defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultProject {
    pub cluster: String,
    pub user: String,
    pub workspace: String,
    /// The Project's Kubernetes name (its namespace).
    pub project: String,
    /// Its ZenML ID, for people reading the file.
    pub project_id: Option<String>,
}

impl DefaultProject {
    fn from_yaml(y: &Yaml) -> Option<DefaultProject> {
        Some(DefaultProject {
            cluster: y.get_str("cluster")?.to_owned(),
            user: y.get_str("user").unwrap_or_default().to_owned(),
            workspace: y.get_str("workspace")?.to_owned(),
            project: y.get_str("project")?.to_owned(),
            project_id: y.get_str("projectId").map(str::to_owned),
        })
    }

    fn to_yaml(&self) -> Yaml {
        let mut m = Yaml::map();
        let mut put = |k: &str, v: &str| m.set(k, Yaml::str(v)).expect("a mapping");
        put("cluster", &self.cluster);
        put("user", &self.user);
        put("workspace", &self.workspace);
        put("project", &self.project);
        if let Some(id) = &self.project_id {
            put("projectId", id);
        }
        m
    }

    fn same_key(&self, other: &DefaultProject) -> bool {
        (&self.cluster, &self.user, &self.workspace) == (&other.cluster, &other.user, &other.workspace)
    }
}

/// The default project of `user` on `cluster` in `workspace`.
pub fn find_default<'a>(
    defaults: &'a [DefaultProject],
    cluster: &str,
    user: &str,
    workspace: &str,
) -> Option<&'a DefaultProject> {
    defaults.iter().find(|d| d.cluster == cluster && d.user == user && d.workspace == workspace)
}

/// `defaults` with `new` replacing the entry of the same cluster, user and workspace.
pub fn with_default(mut defaults: Vec<DefaultProject>, new: DefaultProject) -> Vec<DefaultProject> {
    match defaults.iter_mut().find(|d| d.same_key(&new)) {
        Some(d) => *d = new,
        None => defaults.push(new),
    }
    defaults
}

// ----------------------------------------------------------------------------------------------------------------
// Edits of one document: pure, so they are tested on sample YAML.
// ----------------------------------------------------------------------------------------------------------------

/// What a new kubeconfig file starts as.
pub fn empty_doc() -> Yaml {
    let mut doc = Yaml::map();
    doc.set("apiVersion", Yaml::str("v1")).expect("a mapping");
    doc.set("kind", Yaml::str("Config")).expect("a mapping");
    doc
}

/// Sets the namespace of context `name`, which this document must define.
pub fn set_context_namespace(doc: &mut Yaml, name: &str, namespace: &str) -> Result<(), EditError> {
    let entry = named_mut(doc.seq_at("contexts")?, name).ok_or_else(|| EditError::NoContext(name.to_owned()))?;
    Ok(entry.map_at("context")?.set("namespace", Yaml::str(namespace))?)
}

/// Records `workspace` on context `name` if the plugin made it for a workspace (it has the `zenml.io` extension).
pub fn update_context_workspace(doc: &mut Yaml, name: &str, workspace: &str) -> Result<(), EditError> {
    let Some(entry) = named_mut(doc.seq_at("contexts")?, name) else { return Ok(()) };
    let context = entry.map_at("context")?;
    if extension_in(context.get("extensions")).is_none() {
        return Ok(());
    }
    Ok(set_extension(context, "extensions", workspace_extension(workspace))?)
}

fn workspace_extension(workspace: &str) -> Yaml {
    let mut ext = Yaml::map();
    ext.set("workspace", Yaml::str(workspace)).expect("a mapping");
    ext
}

/// Creates context `name` (or updates it in place) for `cluster` and `user`, with `namespace` (removed when
/// `None`) and the workspace it is for.
pub fn upsert_context(
    doc: &mut Yaml,
    name: &str,
    cluster: &str,
    user: Option<&str>,
    namespace: Option<&str>,
    workspace: &str,
) -> Result<(), EditError> {
    let contexts = doc.seq_at("contexts")?;
    if named_mut(contexts, name).is_none() {
        let mut entry = Yaml::map();
        entry.set("context", Yaml::map())?;
        entry.set("name", Yaml::str(name))?;
        contexts.push(entry);
    }
    let context = named_mut(contexts, name).expect("just added").map_at("context")?;
    context.set("cluster", Yaml::str(cluster))?;
    match user {
        Some(u) => context.set("user", Yaml::str(u))?,
        None => {
            context.remove("user");
        }
    }
    match namespace {
        Some(ns) => context.set("namespace", Yaml::str(ns))?,
        None => {
            context.remove("namespace");
        }
    }
    Ok(set_extension(context, "extensions", workspace_extension(workspace))?)
}

pub fn set_current_context(doc: &mut Yaml, name: &str) -> Result<(), EditError> {
    Ok(doc.set("current-context", Yaml::str(name))?)
}

/// Stores every default project in `preferences.extensions` (the `zenml.io` entry).
pub fn set_default_projects(doc: &mut Yaml, defaults: &[DefaultProject]) -> Result<(), EditError> {
    let mut ext = Yaml::map();
    ext.set("defaultProjects", Yaml::Seq(defaults.iter().map(DefaultProject::to_yaml).collect()))?;
    Ok(set_extension(doc.map_at("preferences")?, "extensions", ext)?)
}

// ----------------------------------------------------------------------------------------------------------------
// Writing files safely.
// ----------------------------------------------------------------------------------------------------------------

/// Applies edits to kubeconfig files; remembers which files it has backed up in this run.
#[derive(Default)]
pub struct Writer {
    backed_up: HashSet<PathBuf>,
}

impl Writer {
    /// Edits `path` with `edit`: under kubectl's lock, on the file as it is now, backed up before the first change
    /// of this run, replaced atomically with the same permissions. A file that does not exist is created (0600).
    pub fn edit(
        &mut self,
        path: &Path,
        edit: impl FnOnce(&mut Yaml) -> Result<(), EditError>,
    ) -> Result<(), KubeconfigError> {
        let _lock = Lock::acquire(path)?;
        let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let (before, mode) = match std::fs::read_to_string(&target) {
            Ok(text) => {
                let mode = std::fs::metadata(&target).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o600);
                (Some(text), mode)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, 0o600),
            Err(source) => return Err(KubeconfigError::Read { path: path.to_owned(), source }),
        };
        let mut doc = match &before {
            Some(text) => parse(path, text)?,
            None => Yaml::Null,
        };
        if doc == Yaml::Null {
            doc = empty_doc();
        }
        edit(&mut doc).map_err(|source| KubeconfigError::Edit { path: path.to_owned(), source })?;
        let text = checked_text(&doc).map_err(|source| KubeconfigError::Unsafe { path: path.to_owned(), source })?;
        if before.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        if let Some(before) = &before
            && self.backed_up.insert(target.clone())
        {
            let backup = backup_path(path);
            write_atomically(&backup, before, mode).map_err(|source| KubeconfigError::Backup {
                path: path.to_owned(),
                backup: backup.clone(),
                source,
            })?;
        }
        write_atomically(&target, &text, mode)
            .map_err(|source| KubeconfigError::Write { path: path.to_owned(), source })
    }
}

/// `FILE.zenml.bak`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".zenml.bak");
    PathBuf::from(name)
}

/// The YAML for `doc`, after checking that it reads back to the same tree and loads as a kubeconfig.
pub fn checked_text(doc: &Yaml) -> Result<String, EditError> {
    let text = yaml::to_string(doc)?;
    if yaml::parse(&text)? != *doc {
        return Err(EditError::NoRoundTrip);
    }
    kube::config::Kubeconfig::from_yaml(&text).map_err(EditError::NotAKubeconfig)?;
    Ok(text)
}

fn write_atomically(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.zenml-{}.tmp", std::process::id()));
    // Under the lock, a leftover temp file of this name can only be from a crashed run.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        // `mode` is filtered by the umask at creation; set it exactly.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// kubectl's lock on a kubeconfig file: `FILE.lock`, created exclusively, removed when done.
struct Lock(PathBuf);

impl Lock {
    fn acquire(path: &Path) -> Result<Lock, KubeconfigError> {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let lock = PathBuf::from(name);
        if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| KubeconfigError::Lock { path: path.to_owned(), source })?;
        }
        let start = Instant::now();
        loop {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&lock) {
                Ok(_) => return Ok(Lock(lock)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && start.elapsed() < Duration::from_secs(5) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(KubeconfigError::Locked { path: path.to_owned(), lock });
                }
                Err(source) => return Err(KubeconfigError::Lock { path: path.to_owned(), source }),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "\
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: QUJDREVGRw==
    server: https://127.0.0.1:6443
    tls-server-name: kubernetes
  name: local
contexts:
- context:
    cluster: local
    user: admin
  name: admin@local
- context:
    cluster: local
    namespace: team
    user: admin
    extensions:
    - name: other.example.com
      extension: {keep: me}
  name: team
current-context: admin@local
preferences: {}
users:
- name: admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
    as: alice
    as-groups: [ml-admins, system:authenticated]
x-unknown-top-level: {anything: [1, 2]}
";

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kubectl-zenml-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn files(paths: &[PathBuf]) -> Files {
        Files::read(paths, false).unwrap()
    }

    #[test]
    fn namespace_edit_preserves_everything_else() {
        let mut doc = yaml::parse(ADMIN).unwrap();
        set_context_namespace(&mut doc, "admin@local", "ml-default").unwrap();
        let text = checked_text(&doc).unwrap();
        let after = yaml::parse(&text).unwrap();
        // Only the one field differs.
        let mut expected = yaml::parse(ADMIN).unwrap();
        let ctx = named_mut(expected.seq_at("contexts").unwrap(), "admin@local").unwrap();
        ctx.map_at("context").unwrap().set("namespace", Yaml::str("ml-default")).unwrap();
        assert_eq!(after, expected);
        assert!(text.contains("x-unknown-top-level"), "{text}");
        assert!(text.contains("as-groups:"), "{text}");
        let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        let ctx = kc.contexts.iter().find(|c| c.name == "admin@local").unwrap().context.clone().unwrap();
        assert_eq!(ctx.namespace.as_deref(), Some("ml-default"));
        let user = kc.auth_infos[0].auth_info.clone().unwrap();
        assert_eq!(user.impersonate.as_deref(), Some("alice"));
        assert!(set_context_namespace(&mut doc, "missing", "x").is_err());
    }

    #[test]
    fn workspace_contexts_are_created_then_updated_in_place() {
        let mut doc = yaml::parse(ADMIN).unwrap();
        upsert_context(&mut doc, "local-zenml-ml", "local", Some("admin"), Some("ml-default"), "ml").unwrap();
        set_current_context(&mut doc, "local-zenml-ml").unwrap();
        let kc = kube::config::Kubeconfig::from_yaml(&checked_text(&doc).unwrap()).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("local-zenml-ml"));
        let ctx = kc.contexts.iter().find(|c| c.name == "local-zenml-ml").unwrap().context.clone().unwrap();
        assert_eq!((ctx.cluster.as_str(), ctx.user.as_deref()), ("local", Some("admin")));
        assert_eq!(ctx.namespace.as_deref(), Some("ml-default"));
        let body = named(&doc, "contexts", "local-zenml-ml").unwrap().get("context").unwrap();
        assert_eq!(context_workspace(body).as_deref(), Some("ml"));

        upsert_context(&mut doc, "local-zenml-ml", "local", Some("admin"), None, "ml").unwrap();
        let contexts = doc.get("contexts").unwrap().as_seq().unwrap();
        assert_eq!(contexts.len(), 3, "updated, not duplicated");
        assert_eq!(contexts[2].get("context").unwrap().get("namespace"), None);

        // A context the plugin did not make keeps its extensions, and gets no workspace of ours.
        update_context_workspace(&mut doc, "team", "ml").unwrap();
        let team = named(&doc, "contexts", "team").unwrap().get("context").unwrap();
        assert_eq!(context_workspace(team), None);
        assert_eq!(team.get("extensions").unwrap().as_seq().unwrap().len(), 1);
        update_context_workspace(&mut doc, "local-zenml-ml", "other").unwrap();
        let ours = named(&doc, "contexts", "local-zenml-ml").unwrap().get("context").unwrap();
        assert_eq!(context_workspace(ours).as_deref(), Some("other"));
    }

    #[test]
    fn default_projects_live_in_preferences_and_are_keyed_by_cluster_user_workspace() {
        let mut doc = yaml::parse(ADMIN).unwrap();
        let d = |cluster: &str, ws: &str, p: &str| DefaultProject {
            cluster: cluster.into(),
            user: "admin".into(),
            workspace: ws.into(),
            project: p.into(),
            project_id: Some(p.into()),
        };
        let defaults = with_default(Vec::new(), d("local", "ml", "ml-default"));
        let defaults = with_default(defaults, d("local", "ops", "ops-a"));
        let defaults = with_default(defaults, d("local", "ml", "fraud"));
        assert_eq!(defaults.len(), 2);
        set_default_projects(&mut doc, &defaults).unwrap();
        let text = checked_text(&doc).unwrap();
        let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        let ext = &kc.preferences.unwrap().extensions.unwrap()[0];
        assert_eq!(ext.name, "zenml.io");
        assert_eq!(ext.extension["defaultProjects"][0]["project"], "fraud");
        let dir = dir("prefs");
        std::fs::write(dir.join("config"), &text).unwrap();
        let read = files(&[dir.join("config")]).default_projects();
        assert_eq!(read, defaults);
        assert_eq!(find_default(&read, "local", "admin", "ml").unwrap().project, "fraud");
        assert!(find_default(&read, "other", "admin", "ml").is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn multi_file_kubeconfig_goes_where_kubectl_would() {
        let dir = dir("multi");
        let (a, b, missing) = (dir.join("a"), dir.join("b"), dir.join("missing"));
        // a: only preferences and a context of its own; b: the admin config with the current context.
        std::fs::write(&a, "apiVersion: v1\nkind: Config\ncontexts:\n- name: only-a\n  context: {cluster: local}\n")
            .unwrap();
        std::fs::write(&b, ADMIN).unwrap();
        let f = files(&[missing.clone(), a.clone(), b.clone()]);
        assert_eq!(f.default_file(), a.as_path(), "the first file that exists");
        assert_eq!(f.current_context(), Some("admin@local"));
        assert_eq!(f.current_context_file(), b.as_path(), "the first file that sets current-context");
        assert_eq!(f.context_file("admin@local"), Some(b.as_path()));
        assert_eq!(f.context_file("only-a"), Some(a.as_path()));
        assert_eq!(f.context_file("nope"), None);
        let none_exist = files(&[dir.join("x"), dir.join("y")]);
        assert_eq!(none_exist.default_file(), dir.join("y").as_path(), "else the last one");

        let mut w = Writer::default();
        w.edit(f.context_file("admin@local").unwrap(), |d| set_context_namespace(d, "admin@local", "p1")).unwrap();
        w.edit(f.default_file(), |d| upsert_context(d, "local-zenml-ml", "local", Some("admin"), Some("p1"), "ml"))
            .unwrap();
        w.edit(f.current_context_file(), |d| set_current_context(d, "local-zenml-ml")).unwrap();
        let f = files(&[missing.clone(), a.clone(), b.clone()]);
        assert_eq!(f.current_context(), Some("local-zenml-ml"));
        assert_eq!(f.context_file("local-zenml-ml"), Some(a.as_path()));
        assert_eq!(f.context("admin@local").unwrap().get_str("namespace"), Some("p1"));
        assert!(!missing.exists(), "a missing file is not created when it is not the target");
        // b was backed up once, with its original content; a too.
        assert_eq!(std::fs::read_to_string(backup_path(&b)).unwrap(), ADMIN);
        assert!(backup_path(&a).exists());
        // A second edit of b in the same run does not overwrite the backup.
        w.edit(&b, |d| set_context_namespace(d, "admin@local", "p2")).unwrap();
        assert_eq!(std::fs::read_to_string(backup_path(&b)).unwrap(), ADMIN);
        // kube merges them the same way.
        let merged = kube::config::Kubeconfig::read_from(&a)
            .unwrap()
            .merge(kube::config::Kubeconfig::read_from(&b).unwrap())
            .unwrap();
        assert_eq!(merged.current_context.as_deref(), Some("local-zenml-ml"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn writes_keep_permissions_and_leave_no_temp_or_lock_files() {
        let dir = dir("perms");
        let path = dir.join("config");
        std::fs::write(&path, ADMIN).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut w = Writer::default();
        w.edit(&path, |d| set_context_namespace(d, "team", "other")).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(std::fs::metadata(backup_path(&path)).unwrap().permissions().mode() & 0o777, 0o640);
        let names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, ["config", "config.zenml.bak"]);
        // A new file is private.
        let new = dir.join("sub/new-config");
        w.edit(&new, |d| set_current_context(d, "x")).unwrap();
        assert_eq!(std::fs::metadata(&new).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!backup_path(&new).exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn symlinked_kubeconfig_is_written_through_the_link() {
        let dir = dir("link");
        let real = dir.join("real");
        let link = dir.join("config");
        std::fs::write(&real, ADMIN).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        Writer::default().edit(&link, |d| set_context_namespace(d, "team", "x")).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert!(std::fs::read_to_string(&real).unwrap().contains("namespace: x"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_edit_changes_nothing() {
        let dir = dir("lock");
        let path = dir.join("config");
        std::fs::write(&path, ADMIN).unwrap();
        let err = Writer::default().edit(&path, |d| set_context_namespace(d, "missing", "x")).unwrap_err();
        assert!(
            matches!(&err, KubeconfigError::Edit { source: EditError::NoContext(c), .. } if c == "missing"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), ADMIN);
        assert!(!backup_path(&path).exists());
        assert!(!dir.join("config.lock").exists(), "the lock is released");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unparseable_files_are_refused_not_overwritten() {
        let dir = dir("bad");
        let path = dir.join("config");
        std::fs::write(&path, "contexts: [unclosed\n").unwrap();
        assert!(Files::read(std::slice::from_ref(&path), true).is_err());
        assert!(Writer::default().edit(&path, |d| set_current_context(d, "x")).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "contexts: [unclosed\n");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
