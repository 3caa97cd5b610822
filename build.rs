// Link args from mlx-bridge's build script (rpath to libmlx, OpenBLAS ahead of libmlx's bundled
// BLAS) do not reach this crate's binaries and tests: repeat them from its `links = "mlx"` metadata.
// Also records the git commit, so benchmark reports can say which code they measured.
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_MLX_LINK_ARGS");
    for arg in std::env::var("DEP_MLX_LINK_ARGS").unwrap_or_default().split('\t').filter(|a| !a.is_empty()) {
        println!("cargo:rustc-link-arg={arg}");
    }
    let commit = git(&["rev-parse", "--short=10", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    println!("cargo:rustc-env=MLXCEL_GIT_COMMIT={commit}{}", if dirty { "-dirty" } else { "" });
    // Rebuild when HEAD moves (a commit, a checkout) or the index changes (dirty state).
    for path in ["HEAD", "index"] {
        if let Some(path) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r])) {
        println!("cargo:rerun-if-changed={head_ref}");
    }
}
