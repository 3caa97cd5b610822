//! mlxcel's cache root, in one place for the build script (which fetches MLX into it; it includes
//! this file with `#[path]`, having no crate to call yet) and for the crates at run time (registry
//! models, the CUDA kernels' code files).

use std::ffi::OsString;
use std::path::PathBuf;

/// `MLXCEL_CACHE_DIR`, else `$XDG_CACHE_HOME/mlxcel`, else `~/.cache/mlxcel`
/// (`~/Library/Caches/mlxcel` on macOS); empty variables count as unset.
pub fn cache_root_for(macos: bool) -> PathBuf {
    cache_root_from(|name| std::env::var_os(name), macos)
}

fn cache_root_from(var: impl Fn(&str) -> Option<OsString>, macos: bool) -> PathBuf {
    let var = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("MLXCEL_CACHE_DIR") {
        return dir;
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return dir.join("mlxcel");
    }
    let home = var("HOME").unwrap_or_else(std::env::temp_dir);
    if macos { home.join("Library/Caches/mlxcel") } else { home.join(".cache/mlxcel") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(vars: &[(&str, &str)], macos: bool) -> PathBuf {
        let lookup = |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| OsString::from(v));
        cache_root_from(lookup, macos)
    }

    #[test]
    fn the_explicit_directory_wins_then_xdg_then_home() {
        let all = [("MLXCEL_CACHE_DIR", "/c"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(root(&all, false), PathBuf::from("/c"));
        assert_eq!(root(&all[1..], false), PathBuf::from("/x/mlxcel"));
        assert_eq!(root(&all[2..], false), PathBuf::from("/h/.cache/mlxcel"));
        assert_eq!(root(&all[2..], true), PathBuf::from("/h/Library/Caches/mlxcel"));
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let vars = [("MLXCEL_CACHE_DIR", ""), ("XDG_CACHE_HOME", ""), ("HOME", "/h")];
        assert_eq!(root(&vars, false), PathBuf::from("/h/.cache/mlxcel"));
    }
}
