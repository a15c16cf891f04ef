//! Stamps the git commit into the binary for `coindcx-hub --version`.
//!
//! A build without git or without `.git` (a source tarball, a vendored copy) still works: the
//! commit is then `COINDCX_HUB_COMMIT` from the build environment, or `unknown`.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// A path cargo should watch; a missing one would make cargo rerun this script on every build.
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=COINDCX_HUB_COMMIT");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let dir = Path::new(&dir);
    let from_env = std::env::var("COINDCX_HUB_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty());
    // Only this crate's own repository counts: a tarball unpacked inside another repository
    // must not report that one's commit.
    let own_repo = git(dir, &["rev-parse", "--show-toplevel"])
        .and_then(|top| Path::new(&top).canonicalize().ok())
        .is_some_and(|top| dir.canonicalize().is_ok_and(|d| d == top));
    let commit = from_env
        .or_else(|| {
            own_repo
                .then(|| git(dir, &["rev-parse", "--short=12", "HEAD"]))
                .flatten()
        })
        .unwrap_or_else(|| "unknown".into());
    // Rebuild when HEAD moves: HEAD itself (a branch switch) and the ref it points to (a
    // commit). In a worktree these live under the worktree's own git dir and the common dir.
    if !own_repo {
        println!("cargo:rustc-env=COINDCX_HUB_COMMIT={commit}");
        return;
    }
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(dir, &["rev-parse", "--git-path", path]) {
            watch(&dir.join(p));
        }
    }
    if let Some(head_ref) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(dir, &["rev-parse", "--git-path", &head_ref]) {
            watch(&dir.join(p));
        }
    }
    println!("cargo:rustc-env=COINDCX_HUB_COMMIT={commit}");
}
