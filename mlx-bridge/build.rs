//! Locates MLX (or fetches the official PyPI wheel once), compiles the C++ shim against it and links
//! `libmlx` dynamically with an rpath, so binaries run with no environment variables.
//!
//! Order: `MLX_DIR` (a prefix with `include/mlx/mlx.h` and `lib/libmlx.{so,dylib}`), else the wheel
//! for this target (`mlx-cpu` on Linux, `mlx-cuda-13` with the `cuda` feature, `mlx-metal` on macOS)
//! fetched with pip into `$MLXCEL_CACHE_DIR` (default: the user cache dir), outside `target/` so a
//! `cargo clean` does not download it again.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const MLX_VERSION: &str = "0.32.4";
const MIN_MINOR: u32 = 30;

const ENV_VARS: &[&str] =
    &["MLX_DIR", "MLXCEL_CACHE_DIR", "MLXCEL_PYTHON", "MLXCEL_OPENBLAS_DIR", "XDG_CACHE_HOME", "HOME"];

const CPP_SOURCES: &[&str] = &[
    "src/cpp/array.cc",
    "src/cpp/ops.cc",
    "src/cpp/nn.cc",
    "src/cpp/system.cc",
    "src/cpp/cpu_fast.cc",
    "src/cpp/cuda_fast.cc",
    "src/cpp/cuda_gemv.cc",
    "src/cpp/cuda_kernel_source.cc",
];

/// The block-quantized kernels' glue (primitives, pool, ISA choice), built with the bridge.
const BQ_BRIDGE_SOURCES: &[&str] = &[
    "src/cpp/block_quant/bridge.cc",
    "src/cpp/block_quant/primitives.cc",
    "src/cpp/block_quant/pool.cc",
    "src/cpp/block_quant/isa.cc",
];

/// Code whose float rounding must match the formats' own dequantizers: no contraction into fma.
const BQ_EXACT_SOURCES: &[&str] = &["src/cpp/block_quant/pack.cc", "src/cpp/block_quant/kernels_scalar.cc"];

/// One translation unit per instruction set, each compiled with only its own -m flags and chosen
/// at run time (`__builtin_cpu_supports`), so the library still runs on CPUs without them.
const BQ_X86_KERNELS: &[(&str, &[&str])] = &[
    ("avx2", &["-mavx2", "-mfma", "-mf16c"]),
    ("avxvnni", &["-mavx2", "-mfma", "-mf16c", "-mavxvnni"]),
    ("avx512vnni", &["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni"]),
];

fn main() {
    for var in ENV_VARS {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=src/ffi.rs");
    println!("cargo:rerun-if-changed=src/cpp");
    println!("cargo:rerun-if-changed=src/cache_dir.rs");

    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let cuda = env::var_os("CARGO_FEATURE_CUDA").is_some();
    let package = wheel_package(&target_os, cuda);

    let prefix = match env::var_os("MLX_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if let Err(why) = check_prefix(&dir) {
                fail(&format!("MLX_DIR={} is not usable: {why}", dir.display()), package);
            }
            dir
        }
        None => match fetch_wheel(package) {
            Ok(dir) => dir,
            Err(why) => fail(&why, package),
        },
    };
    let version = read_version(&prefix).unwrap_or_else(|why| fail(&why, package));
    if version != MLX_VERSION {
        println!(
            "cargo:warning=mlx-bridge is pinned to MLX {MLX_VERSION}; building against {version} from {}",
            prefix.display()
        );
    }

    let include = prefix.join("include");
    let lib = prefix.join("lib");
    cxx_build::bridges(["src/ffi.rs", "src/block_quant/ffi.rs"])
        .files(CPP_SOURCES)
        .files(BQ_BRIDGE_SOURCES)
        .include(&include)
        .include("src/cpp")
        .std("c++20")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .opt_level(2)
        .compile("mlxcel_bridge");
    // Compiled after the bridge so the linker meets the bridge's references first.
    build_block_quant_kernels(&include);

    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=mlx");

    // Link args do not propagate to dependent crates: they are also published as metadata
    // (DEP_MLX_LINK_ARGS, tab-separated) for their build scripts to repeat.
    let mut link_args = Vec::new();
    let blas = if target_os == "linux" && env::var_os("CARGO_FEATURE_OPENBLAS").is_some() {
        link_openblas(&mut link_args)
    } else {
        "mlx-bundled"
    };
    if cuda {
        // The CUDA libmlx needs the nvidia pip libraries, which exist only on GPU machines.
        link_args.push("-Wl,--allow-shlib-undefined".to_string());
    }
    // RUNPATH (not RPATH) so that LD_LIBRARY_PATH still wins: that is how a CPU build is pointed
    // at the CUDA libmlx.so of the same version on a GPU machine.
    if target_os == "linux" {
        link_args.push("-Wl,--enable-new-dtags".to_string());
    }
    link_args.push(format!("-Wl,-rpath,{}", lib.display()));
    for arg in &link_args {
        println!("cargo:rustc-link-arg={arg}");
    }
    println!("cargo:link_args={}", link_args.join("\t"));

    // Read by dependent crates' build scripts (DEP_MLX_*): link args do not propagate.
    println!("cargo:root={}", prefix.display());
    println!("cargo:libdir={}", lib.display());
    println!("cargo:include={}", include.display());
    println!("cargo:blas={blas}");
    println!("cargo:rustc-env=MLXCEL_BUILD_BLAS={blas}");
    println!("cargo:rustc-env=MLXCEL_BUILD_MLX_PREFIX={}", prefix.display());
    println!("cargo:rustc-env=MLXCEL_BUILD_MLX_PACKAGE={package}");
}

fn build_block_quant_kernels(include: &Path) {
    let kernel_build = || {
        let mut build = cc::Build::new();
        build.cpp(true).std("c++20").opt_level(3).flag("-ffp-contract=off").include("src/cpp/block_quant");
        build
    };
    kernel_build()
        .files(BQ_EXACT_SOURCES)
        .include(include)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .compile("mlxcel_bq_base");
    match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => {
            for (isa, flags) in BQ_X86_KERNELS {
                let mut build = kernel_build();
                for flag in *flags {
                    build.flag(flag);
                }
                build.file(format!("src/cpp/block_quant/kernels_{isa}.cc")).compile(&format!("mlxcel_bq_{isa}"));
            }
        }
        Ok("aarch64") => {
            // The dot-product instructions are checked for at run time (HWCAP_ASIMDDP).
            kernel_build()
                .flag("-march=armv8.2-a+dotprod")
                .file("src/cpp/block_quant/kernels_neon.cc")
                .compile("mlxcel_bq_neon");
        }
        _ => {}
    }
}

fn wheel_package(target_os: &str, cuda: bool) -> &'static str {
    match (target_os, cuda) {
        ("macos", _) => "mlx-metal",
        (_, true) => "mlx-cuda-13",
        _ => "mlx-cpu",
    }
}

fn libmlx_name() -> &'static str {
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") { "libmlx.dylib" } else { "libmlx.so" }
}

fn check_prefix(dir: &Path) -> Result<(), String> {
    let header = dir.join("include/mlx/mlx.h");
    if !header.is_file() {
        return Err(format!("{} is missing", header.display()));
    }
    let lib = dir.join("lib").join(libmlx_name());
    if !lib.is_file() {
        return Err(format!("{} is missing", lib.display()));
    }
    Ok(())
}

/// The version from `include/mlx/version.h`; MLX older than 0.30 lacks APIs the shim uses.
fn read_version(prefix: &Path) -> Result<String, String> {
    let path = prefix.join("include/mlx/version.h");
    let text = fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let field = |name: &str| -> Result<u32, String> {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("#define MLX_VERSION_{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("{} has no MLX_VERSION_{name}", path.display()))
    };
    let (major, minor, patch) = (field("MAJOR")?, field("MINOR")?, field("PATCH")?);
    if major == 0 && minor < MIN_MINOR {
        return Err(format!(
            "MLX {major}.{minor}.{patch} at {} is too old: mlxcel needs MLX >= 0.{MIN_MINOR} (pinned {MLX_VERSION})",
            prefix.display()
        ));
    }
    Ok(format!("{major}.{minor}.{patch}"))
}

#[path = "src/cache_dir.rs"]
mod cache_dir;

fn cache_root() -> PathBuf {
    cache_dir::cache_root_for(env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos"))
}

/// Fetches `<package>==MLX_VERSION` with pip once and unpacks it to `<cache>/mlx/<package>-<version>/`.
/// Returns the prefix (`.../mlx`); the wheel's `*.libs` folder stays beside it, where libmlx's own
/// rpath expects it.
fn fetch_wheel(package: &str) -> Result<PathBuf, String> {
    let root = cache_root().join("mlx");
    let dest = root.join(format!("{package}-{MLX_VERSION}"));
    let prefix = dest.join("mlx");
    if check_prefix(&prefix).is_ok() {
        return Ok(prefix);
    }
    let python = find_python()?;
    let staging = root.join(format!(".staging-{package}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    println!("cargo:warning=fetching {package}=={MLX_VERSION} from PyPI into {} (once)", dest.display());

    let wheels = staging.join("wheel");
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"])
        .arg("--disable-pip-version-check")
        .arg("--dest")
        .arg(&wheels)
        .arg(format!("{package}=={MLX_VERSION}"))
        .status()
        .map_err(|e| format!("cannot run {python} -m pip: {e}"))?;
    if !status.success() {
        let _ = fs::remove_dir_all(&staging);
        return Err(format!("`{python} -m pip download {package}=={MLX_VERSION}` failed ({status})"));
    }
    let wheel = fs::read_dir(&wheels)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .ok_or_else(|| format!("pip left no wheel in {}", wheels.display()))?;
    let unpacked = staging.join("unpacked");
    let status = Command::new(&python)
        .args(["-c", "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])"])
        .arg(&wheel)
        .arg(&unpacked)
        .status()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !status.success() {
        let _ = fs::remove_dir_all(&staging);
        return Err(format!("unpacking {} failed", wheel.display()));
    }
    check_prefix(&unpacked.join("mlx"))?;
    // A concurrent build may have won the race; its copy is as good as ours.
    if fs::rename(&unpacked, &dest).is_err() && check_prefix(&prefix).is_err() {
        return Err(format!("cannot move the unpacked wheel to {}", dest.display()));
    }
    let _ = fs::remove_dir_all(&staging);
    Ok(prefix)
}

fn find_python() -> Result<String, String> {
    let candidates: Vec<String> = match env::var("MLXCEL_PYTHON") {
        Ok(python) => vec![python],
        Err(_) => vec!["python3".into(), "python".into()],
    };
    candidates
        .into_iter()
        .find(|python| {
            Command::new(python).args(["-m", "pip", "--version"]).output().is_ok_and(|out| out.status.success())
        })
        .ok_or_else(|| "no Python with pip found (tried MLXCEL_PYTHON, python3, python)".to_string())
}

/// Links OpenBLAS as a direct dependency of every binary so its BLAS symbols are found before the
/// netlib reference BLAS that libmlx (from the mlx-cpu wheel) pulls in: fp32 GEMM goes from
/// ~5 to ~120 GFLOP/s on two cores. `--no-as-needed` keeps the linker from dropping a library the
/// binary itself calls nothing from (rustc's `-as-needed` link modifier is still unstable).
fn link_openblas(link_args: &mut Vec<String>) -> &'static str {
    let mut dirs: Vec<PathBuf> = env::var_os("MLXCEL_OPENBLAS_DIR").map(PathBuf::from).into_iter().collect();
    let multiarch = format!("{}-linux-gnu", env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default());
    for base in ["/usr/lib", "/usr/local/lib", "/usr/lib64", "/lib"] {
        dirs.push(Path::new(base).join(&multiarch));
        dirs.push(PathBuf::from(base));
    }
    for dir in &dirs {
        for (file, flag) in [("libopenblas.so", "-lopenblas"), ("libopenblas.so.0", "-l:libopenblas.so.0")] {
            if dir.join(file).exists() {
                link_args.push(format!("-Wl,-L{},--no-as-needed,{flag},--as-needed", dir.display()));
                return "openblas";
            }
        }
    }
    println!(
        "cargo:warning=OpenBLAS not found: MLX's CPU matmul falls back to the wheel's reference BLAS \
         (~25x slower in fp32). Install it with `apt-get install libopenblas-dev` (Debian/Ubuntu) or set \
         MLXCEL_OPENBLAS_DIR; build with --no-default-features to leave it out on purpose."
    );
    "mlx-bundled"
}

/// Reports why MLX could not be found, with the remedies, and stops the build (no panic backtrace).
fn fail(why: &str, package: &str) -> ! {
    let cache = cache_root().join("mlx");
    eprintln!(
        "\n\nmlx-bridge cannot find MLX {MLX_VERSION}: {why}\n\n\
         Remedies, any one of:\n  \
         - let the build fetch the official wheel: make `python3 -m pip` work with PyPI reachable \
         (or set MLXCEL_PYTHON); it is unpacked once into {cache} (set MLXCEL_CACHE_DIR to move it);\n  \
         - set MLX_DIR to a prefix holding include/mlx/mlx.h and lib/{lib}, e.g. an unpacked wheel's mlx/ folder:\n      \
         pip download --no-deps --only-binary=:all: {package}=={MLX_VERSION} -d /tmp/mlxw && \
         (cd /tmp/mlxw && python3 -m zipfile -e *.whl .) && export MLX_DIR=/tmp/mlxw/mlx\n  \
         - or a source install of MLX >= 0.{MIN_MINOR} (cmake --install into a prefix, then MLX_DIR=<prefix>).\n",
        cache = cache.display(),
        lib = libmlx_name(),
    );
    std::process::exit(1);
}
