//! A git repository served over smart HTTP on loopback, as Flux's source-controller fetches from a git host: each
//! request runs `git http-backend` (git's own CGI server side), so fetches and pushes speak exactly the protocol a
//! real host does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use e2e::{run, unique};

/// A bare repository under a temporary directory, served at [`Repo::url`] until the test process exits, with a
/// working clone to commit and push from.
pub struct Repo {
    root: PathBuf,
    work: PathBuf,
    pub url: String,
}

impl Repo {
    /// An empty repository with branch `main`, served on a free loopback port.
    pub fn new() -> Repo {
        let root = std::env::temp_dir().join(unique("e2e-git"));
        let bare = root.join("repo.git");
        std::fs::create_dir_all(&bare).expect("mkdir");
        git(&bare, &["init", "--quiet", "--bare", "--initial-branch=main"]);
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let url = format!("http://{}/repo.git", listener.local_addr().expect("an address"));
        let project_root = root.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let project_root = project_root.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve(stream, &project_root) {
                        eprintln!("git server: {e}");
                    }
                });
            }
        });
        let work = root.join("work");
        let out = run(Command::new("git").args(["clone", "--quiet", &url]).arg(&work));
        assert!(out.success(), "git clone {url}: {}", out.stderr);
        for (k, v) in [("user.name", "e2e"), ("user.email", "e2e@example.com"), ("commit.gpgsign", "false")] {
            git(&work, &["config", k, v]);
        }
        git(&work, &["checkout", "--quiet", "-b", "main"]);
        Repo { root, work, url }
    }

    /// Writes `files` (path in the repository, content; `None` deletes), commits and pushes them over HTTP; returns the
    /// commit's id.
    pub fn commit(&self, message: &str, files: &[(&str, Option<&str>)]) -> String {
        for (path, content) in files {
            let file = self.work.join(path);
            match content {
                Some(content) => {
                    std::fs::create_dir_all(file.parent().expect("a parent")).expect("mkdir");
                    std::fs::write(&file, content).expect("write");
                }
                None => std::fs::remove_file(&file).unwrap_or_else(|e| panic!("{path}: {e}")),
            }
        }
        git(&self.work, &["add", "--all"]);
        git(&self.work, &["commit", "--quiet", "-m", message]);
        git(&self.work, &["push", "--quiet", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"]).trim().to_owned()
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = run(Command::new("git").arg("-C").arg(dir).args(args));
    assert!(out.success(), "git {args:?} in {}: {}{}", dir.display(), out.stdout, out.stderr);
    out.stdout
}

/// One HTTP/1.1 request, answered by `git http-backend` and then the connection closed (clients reconnect).
fn serve(stream: TcpStream, project_root: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let body = if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        dechunk(&mut reader)?
    } else {
        let len: usize = header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        body
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        // http-backend serves pushes (receive-pack) only to an authenticated user.
        .env("REMOTE_USER", "e2e")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, var) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "HTTP_GIT_PROTOCOL"),
    ] {
        if let Some(v) = header(name) {
            cgi.env(var, v);
        }
    }
    let mut child = cgi.spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    // Written from a thread: http-backend may answer before it has read everything.
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let out = child.wait_with_output()?;
    let _ = writer.join();
    // CGI output: headers (with `Status:` when not 200), a blank line, the body.
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head, body) = match split {
        Some((i, n)) => (String::from_utf8_lossy(&out.stdout[..i]).into_owned(), &out.stdout[i + n..]),
        None => (String::new(), &out.stdout[..]),
    };
    let mut status = "200 OK".to_owned();
    let mut response = Vec::new();
    for h in head.lines().filter(|l| !l.trim().is_empty()) {
        match h.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_owned(),
            _ => response.push(h.trim_end().to_owned()),
        }
    }
    if !out.status.success() && split.is_none() {
        status = "500 Internal Server Error".into();
        eprintln!("git http-backend {method} {target}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut w = stream;
    write!(w, "HTTP/1.1 {status}\r\n")?;
    for h in response {
        write!(w, "{h}\r\n")?;
    }
    write!(w, "Content-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
    w.write_all(body)?;
    w.flush()
}

/// The body of a `Transfer-Encoding: chunked` request (git sends large pushes so).
fn dechunk(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                let mut t = String::new();
                if reader.read_line(&mut t)? == 0 || t.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
    }
}
