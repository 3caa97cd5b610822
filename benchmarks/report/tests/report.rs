//! Tests over the committed sample (tests/data: illustrative numbers in the mlxcel-bench/1 format,
//! one file per engine) and over small files built inline for the error and edge cases.

use std::path::{Path, PathBuf};

use bench_report::schema::{self, ReportError, Source};
use bench_report::tables::{self, Dataset};
use bench_report::{PageOptions, page};
use serde_json::{Value, json};

fn sample_paths() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    ["mlxcel.json", "mlx-lm.json", "llama-cpp.json"].iter().map(|f| dir.join(f)).collect()
}

fn sample() -> Vec<Source> {
    schema::load(&sample_paths()).expect("sample loads")
}

fn run(model: &str, test: &str, tps: f64, variant: Value) -> Value {
    let (n_prompt, n_gen) = if test.starts_with("tg") { (0, 128) } else { (512, 0) };
    json!({
        "model": model, "source": "safetensors", "params": 1000, "size_bytes": 4000, "dtype": "float32",
        "bits": null, "variant": variant, "test": test,
        "n_prompt": n_prompt, "n_gen": n_gen, "depth": 0,
        "repetitions": 3, "tokens_per_second": {"mean": tps, "std": 1.0, "samples": [tps - 1.0, tps, tps + 1.0]},
        "ttft_ms": null, "peak_memory_bytes": null
    })
}

fn file(engine: &str, class: &str, runs: Vec<Value>) -> Value {
    json!({
        "schema": "mlxcel-bench/1",
        "machine": {"hardware_class": class, "device": "test device", "backend": "cpu", "os": "Linux",
                    "memory_bytes": 1u64 << 30},
        "engine": {"name": engine, "version": "1", "mlx_version": null, "details": {}},
        "date": "2026-01-01T00:00:00Z",
        "command": format!("{engine} bench"),
        "runs": runs
    })
}

fn source(name: &str, value: &Value) -> Result<Source, ReportError> {
    let path = PathBuf::from(name);
    Ok(Source { file: schema::parse(&path, &value.to_string())?, path })
}

fn find<'d, 'a>(data: &'d Dataset<'a>, model: &str, bits: Option<u32>) -> &'d tables::Group<'a> {
    data.groups.iter().find(|g| g.model == model && g.precision.bits == bits).expect("group exists")
}

/// Each `(name, file)` written as JSON into `dir`, in order.
fn write_files(dir: &Path, files: &[(&str, &Value)]) -> Vec<PathBuf> {
    files
        .iter()
        .map(|(name, value)| {
            let path = dir.join(name);
            std::fs::write(&path, value.to_string()).unwrap();
            path
        })
        .collect()
}

/// A page at `out` with no notes, node costs or bandwidth; charts beside it.
fn plain_page(out: &Path) -> PageOptions {
    PageOptions {
        title: "t".into(),
        charts_dir: out.with_extension(""),
        out: out.to_path_buf(),
        notes: None,
        generated: "2026-12-03".into(),
        node_costs: None,
        bandwidth: None,
    }
}

const SMOL: &str = "SmolLM2-135M-Instruct";
const GEMMA: &str = "gemma-3n-E2B (random weights)";

#[test]
fn groups_by_model_and_precision_with_tests_in_llama_bench_order() {
    let sources = sample();
    let data = Dataset::new(&sources, None).unwrap();
    let keys: Vec<(String, String)> = data.groups.iter().map(|g| (g.model.clone(), g.precision.to_string())).collect();
    assert_eq!(
        keys,
        [(SMOL, "float32"), (SMOL, "4-bit, float32"), (GEMMA, "float32")].map(|(m, p)| (m.into(), p.into()))
    );
    let tests: Vec<&str> = find(&data, SMOL, None).tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tests, ["pp512", "tg128", "pp512@d1024", "tg128@d1024"]);
    // mlxcel leads, then the baseline (mlx-lm is preferred when present), then the rest.
    assert_eq!(data.engines, ["mlxcel", "mlx-lm", "llama.cpp"]);
    assert_eq!(data.baseline.as_deref(), Some("mlx-lm"));
}

#[test]
fn ratio_is_mlxcel_over_baseline_default_runs() {
    let sources = sample();
    let data = Dataset::new(&sources, None).unwrap();
    let cmp = tables::comparison(&data, find(&data, SMOL, None));
    assert_eq!(cmp.engines, ["mlxcel", "mlx-lm", "llama.cpp"]);
    let pp = &cmp.rows[0];
    assert_eq!(pp.test, "pp512");
    assert!((pp.ratio.unwrap() - 412.6 / 356.1).abs() < 1e-12);
    // tg128 has three mlxcel variants; the ratio must use the marked default (41.3), not the best or last.
    assert!((cmp.rows[1].ratio.unwrap() - 41.3 / 44.8).abs() < 1e-12);
    // llama.cpp measured no depth tests: an empty cell, while the ratio still exists.
    assert!(cmp.rows[2].runs[2].is_none());
    assert!(cmp.rows[2].ratio.is_some());

    let other = Dataset::new(&sources, Some("llama.cpp")).unwrap();
    let cmp = tables::comparison(&other, find(&other, SMOL, None));
    assert_eq!(other.engines, ["mlxcel", "llama.cpp", "mlx-lm"]);
    assert!((cmp.rows[0].ratio.unwrap() - 412.6 / 520.4).abs() < 1e-12);
    assert!(cmp.rows[2].ratio.is_none(), "no llama.cpp run at depth 1024");
    // The 4-bit group has no llama.cpp runs, so it has no ratio against it.
    assert!(tables::comparison(&other, find(&other, SMOL, Some(4))).baseline.is_none());
}

#[test]
fn unknown_or_self_baseline_is_an_error() {
    let sources = sample();
    for b in ["vllm", "mlxcel"] {
        let err = Dataset::new(&sources, Some(b)).unwrap_err();
        assert!(matches!(err, ReportError::UnknownBaseline { .. }), "{err}");
        assert!(err.to_string().contains("mlx-lm, llama.cpp"), "{err}");
    }
}

#[test]
fn default_variant_is_the_marked_one_else_the_first_seen() {
    let sources = sample();
    let data = Dataset::new(&sources, None).unwrap();
    let smol = find(&data, SMOL, None);
    let marked = smol.default_run("mlxcel", "tg128").unwrap();
    assert_eq!(marked.variant["decode_path"], "fused");
    assert_eq!(marked.variant["pretranspose"], "on");
    assert!(smol.default_settings("mlxcel").unwrap().get("default").is_none(), "marker is not a setting");
    // Nothing is marked for gemma: the first variant in the file (fused) stands for mlxcel.
    let gemma = find(&data, GEMMA, None);
    assert_eq!(gemma.default_run("mlxcel", "tg128").unwrap().variant["decode_path"], "fused");

    // A test measured only with non-default settings still gets a cell, from its first run.
    let f = file(
        "mlxcel",
        "cpu",
        vec![
            run("m", "pp512", 100.0, json!({"path": "a"})),
            run("m", "tg128", 10.0, json!({"path": "b"})),
            run("m", "tg128", 12.0, json!({"path": "c"})),
            run("m", "pp512", 90.0, json!({"path": "b", "default": true})),
        ],
    );
    let sources = vec![source("x.json", &f).unwrap()];
    let data = Dataset::new(&sources, None).unwrap();
    let g = &data.groups[0];
    assert_eq!(g.default_settings("mlxcel").unwrap()["path"], "b", "a later marked run beats the first seen");
    assert_eq!(g.default_run("mlxcel", "pp512").unwrap().tokens_per_second.mean, 90.0);
    assert_eq!(g.default_run("mlxcel", "tg128").unwrap().tokens_per_second.mean, 10.0);
    assert!(data.baseline.is_none() && tables::comparison(&data, g).rows.iter().all(|r| r.ratio.is_none()));
}

#[test]
fn ab_tables_list_variants_fastest_first_with_ratio_to_best() {
    let sources = sample();
    let data = Dataset::new(&sources, None).unwrap();
    let abs = tables::ab_tables(&data);
    let names: Vec<(&str, &str, &str)> =
        abs.iter().map(|t| (t.engine.as_str(), t.model.as_str(), t.test.as_str())).collect();
    assert_eq!(names, [("mlxcel", SMOL, "pp512"), ("mlxcel", SMOL, "tg128"), ("mlxcel", GEMMA, "tg128")]);
    let tg = &abs[1];
    assert_eq!(tg.keys, ["decode_path", "pretranspose"]);
    let means: Vec<f64> = tg.rows.iter().map(|r| r.run.tokens_per_second.mean).collect();
    assert_eq!(means, [41.3, 37.6, 35.2]);
    assert_eq!(tg.rows.iter().map(|r| r.is_default).collect::<Vec<_>>(), [true, false, false]);
    assert_eq!(tg.rows[0].ratio_to_best, 1.0);
    assert!((tg.rows[2].ratio_to_best - 35.2 / 41.3).abs() < 1e-12);
}

#[test]
fn dtype_tables_compare_precisions_at_equal_settings() {
    let sources = sample();
    let data = Dataset::new(&sources, None).unwrap();
    let dts = tables::dtype_tables(&data);
    assert_eq!(dts.len(), 2, "mlxcel and mlx-lm measured SmolLM2 at two precisions with one setting each");
    let t = &dts[0];
    assert_eq!((t.engine.as_str(), t.model.as_str()), ("mlxcel", SMOL));
    assert_eq!(t.precisions.iter().map(|p| p.to_string()).collect::<Vec<_>>(), ["float32", "4-bit, float32"]);
    assert_eq!(t.tests, ["pp512", "tg128", "pp512@d1024", "tg128@d1024"]);
    assert_eq!(t.cells[1][1].unwrap().tokens_per_second.mean, 62.5);
    assert!(t.cells[3][1].is_none());
}

#[test]
fn bad_schema_and_missing_fields_are_reported_clearly() {
    let mut f = file("mlxcel", "cpu", vec![run("m", "pp512", 1.0, json!({}))]);
    f["schema"] = json!("mlxcel-bench/2");
    let err = source("new.json", &f).unwrap_err();
    assert!(matches!(err, ReportError::UnknownSchema { .. }), "{err}");
    assert!(err.to_string().contains("new.json") && err.to_string().contains("mlxcel-bench/2"), "{err}");

    f.as_object_mut().unwrap().remove("schema");
    assert!(matches!(source("x.json", &f).unwrap_err(), ReportError::MissingSchema { .. }));

    let mut f = file("mlxcel", "cpu", vec![run("m", "pp512", 1.0, json!({}))]);
    f["runs"][0].as_object_mut().unwrap().remove("tokens_per_second");
    let err = source("x.json", &f).unwrap_err();
    assert!(matches!(err, ReportError::Fields { .. }) && err.to_string().contains("tokens_per_second"), "{err}");

    let f = file("mlxcel", "cpu", vec![run("m", "pp512", -5.0, json!({}))]);
    assert!(matches!(source("x.json", &f).unwrap_err(), ReportError::Invalid { .. }));
    let f = file("mlxcel", "cpu", vec![]);
    assert!(matches!(source("x.json", &f).unwrap_err(), ReportError::Invalid { .. }));

    let err = schema::parse(Path::new("x.json"), "{ not json").unwrap_err();
    assert!(matches!(err, ReportError::Json { .. }));
}

#[test]
fn mixed_machines_and_duplicate_runs_are_errors() {
    let a = source("a.json", &file("mlxcel", "cpu-x86_64", vec![run("m", "pp512", 1.0, json!({}))])).unwrap();
    let b = source("b.json", &file("mlx-lm", "cuda-sm90", vec![run("m", "pp512", 1.0, json!({}))])).unwrap();
    let err = schema::check_same_machine(&[a.clone(), b]).unwrap_err();
    assert!(matches!(err, ReportError::MixedMachines { .. }), "{err}");
    assert!(err.to_string().contains("cpu-x86_64") && err.to_string().contains("cuda-sm90"), "{err}");

    // The same engine, model, precision, test and settings twice: one would silently hide the other.
    let again = source("c.json", &file("mlxcel", "cpu-x86_64", vec![run("m", "pp512", 2.0, json!({}))])).unwrap();
    let sources = vec![a, again];
    let err = Dataset::new(&sources, None).unwrap_err();
    assert!(matches!(err, ReportError::DuplicateRun { .. }), "{err}");
    assert!(err.to_string().contains("a.json") && err.to_string().contains("c.json"), "{err}");
}

#[test]
fn page_has_tables_ratios_and_chart_links_and_writes_svgs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("docs/benchmarks/h100.md");
    let opts = PageOptions {
        title: "Sample machine".into(),
        charts_dir: dir.path().join("docs/benchmarks/h100"),
        out: out.clone(),
        notes: Some("Hand-written note: *kept verbatim*.\n".into()),
        generated: "2026-11-22".into(),
        node_costs: Some(vec![bench_report::NodeCost {
            kind: "reshape view".into(),
            chain_nodes: 2000,
            host_us: 0.63,
            total_us: 0.641,
        }]),
        bandwidth: None,
    };
    let written = bench_report::generate(&sample_paths(), None, &opts).unwrap();
    assert_eq!(written.len(), 4, "three charts and the page: {written:?}");
    let md = std::fs::read_to_string(&out).unwrap();

    assert!(md.starts_with("# Sample machine\n"));
    assert!(md.contains("- **SmolLM2-135M-Instruct** (float32): pp512 1.16x, tg128 0.92x"), "{md}");
    assert!(md.contains("Generated on 2026-11-22"));
    assert!(md.contains("| Test | mlxcel t/s | mlx-lm t/s | llama.cpp t/s | mlxcel / mlx-lm | mlxcel TTFT ms |"));
    assert!(md.contains("| pp512 | 412.60 ± 4.10 | 356.10 ± 6.30 | 520.40 ± 7.90 | 1.16x | 1240.90 ± 12.30 |"));
    assert!(md.contains("| pp512@d1024 | 298.40 ± 3.70 | 251.00 ± 4.40 | — | 1.19x |"));
    assert!(md.contains("| 0.1.0 (commit 79ad981) | 0.32.4 |"), "engine versions");
    assert!(md.contains("llama-bench -m SmolLM2-135M-Instruct-F32.gguf"), "commands");
    assert!(md.contains("## Settings A/B") && md.contains("| yes | fused | on | 41.30 ± 0.50 | 1.00x |"));
    assert!(md.contains("|  | unfused | on | 35.20 ± 0.70 | 0.85x |"));
    assert!(md.contains("## Precision comparison") && md.contains("| Test | float32 | 4-bit, float32 |"));
    assert!(md.contains("### What one graph node costs") && md.contains("| reshape view | 2000 | 0.63 | 0.64 |"));
    let methodology = md.find("## Methodology").unwrap();
    let note = md.find("Hand-written note: *kept verbatim*.").unwrap();
    assert!(methodology < note && note < md.find("## Results").unwrap());

    let links: Vec<&str> = md.lines().filter(|l| l.starts_with("![")).collect();
    assert_eq!(links.len(), 3);
    for link in links {
        let target = link.rsplit_once("](").unwrap().1.trim_end_matches(')');
        assert!(target.starts_with("h100/") && target.ends_with(".svg"), "{target}");
        let svg = std::fs::read_to_string(out.parent().unwrap().join(target)).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{target}");
        assert!(svg.contains("tokens / s") && svg.contains("mlxcel"), "{target}");
    }
}

#[test]
fn chart_links_are_relative_to_the_page() {
    assert_eq!(page::relative_link(Path::new("docs/benchmarks"), Path::new("docs/benchmarks/h100")), "h100/");
    assert_eq!(page::relative_link(Path::new("docs/benchmarks"), Path::new("docs/img/./h100")), "../img/h100/");
    assert_eq!(page::relative_link(Path::new("docs"), Path::new("docs")), "");
    assert_eq!(
        page::slugify("gemma-3n-E2B (random weights) (4-bit, bfloat16)"),
        "gemma-3n-e2b-random-weights-4-bit-bfloat16"
    );
}

#[test]
fn decode_rates_are_put_against_the_bandwidth_over_the_weight_bytes_per_token() {
    let dir = tempfile::tempdir().unwrap();
    let kernels = dir.path().join("results/kernels.json");
    std::fs::create_dir_all(kernels.parent().unwrap()).unwrap();
    std::fs::write(&kernels, r#"[{"kernel":"copy","tb_per_s":4.0},{"kernel":"affine_gemv","N":64}]"#).unwrap();
    let bandwidth = bench_report::Bandwidth::from_kernels_json(&kernels).unwrap();
    assert_eq!(bandwidth.tb_per_s, 4.0);

    // mlxcel knows its weight bytes per token (2 GB: 2000 t/s at 4 TB/s); mlx-lm's file does not,
    // and is put against mlxcel's for the same model and precision.
    let mut ours = run("m", "tg128", 200.0, json!({}));
    ours["decode_weight_bytes"] = json!(2_000_000_000u64);
    let files = [
        ("mlxcel.json", file("mlxcel", "cuda-sm90", vec![ours, run("m", "pp512", 900.0, json!({}))])),
        ("mlx-lm.json", file("mlx-lm", "cuda-sm90", vec![run("m", "tg128", 50.0, json!({}))])),
    ];
    let paths = write_files(dir.path(), &files.iter().map(|(name, value)| (*name, value)).collect::<Vec<_>>());
    let out = dir.path().join("docs/page.md");
    let opts = PageOptions { bandwidth: Some(bandwidth), ..plain_page(&out) };
    bench_report::generate(&paths, None, &opts).unwrap();
    let md = std::fs::read_to_string(&out).unwrap();
    assert!(md.contains("## Decode against the memory roofline"), "{md}");
    assert!(md.contains("4.00 TB/s") && md.contains("[kernels.json](../results/kernels.json)"), "{md}");
    assert!(md.contains("| m | float32 | tg128 | mlxcel | 200.00 ± 1.00 | 1.86 GiB | 2000 | 10.0% |"), "{md}");
    assert!(md.contains("| m | float32 | tg128 | mlx-lm | 50.00 ± 1.00 | 1.86 GiB | 2000 | 2.5% |"), "{md}");
    assert!(!md.contains("| pp512 | mlxcel |"), "prefill rows are not decode rows: {md}");

    std::fs::write(&kernels, r#"[{"kernel":"affine_gemv"}]"#).unwrap();
    let err = bench_report::Bandwidth::from_kernels_json(&kernels).unwrap_err();
    assert!(err.to_string().contains("no copy row"), "{err}");
}

#[test]
fn kernels_per_token_leave_out_the_views() {
    let ops: Vec<(String, u64)> = [("Slice", 40), ("Matmul", 9), ("Reshape", 7), ("CustomKernel", 3), ("Broadcast", 2)]
        .iter()
        .map(|(name, n)| (name.to_string(), *n))
        .collect();
    assert_eq!(page::kernel_ops(&ops), 12);
}

#[test]
fn breakdown_rows_show_encode_where_measured_and_a_dash_in_older_files() {
    let dir = tempfile::tempdir().unwrap();
    let spread = |mean: f64| json!({"mean": mean, "std": 0.25});
    let breakdown = |bits: Value, encode: Option<f64>| {
        let mut times = json!({"depth": 2048, "steps": 16, "graph_nodes_per_token": 100,
            "graph_ops": [["Matmul", 60], ["Reshape", 40]],
            "build_ms": spread(2.0), "eval_ms": spread(8.0), "step_ms": spread(10.0)});
        if let Some(encode) = encode {
            times["encode_ms"] = spread(encode);
        }
        json!({"model": "m", "dtype": "bfloat16", "bits": bits, "variant": {"default": true}, "breakdown": times})
    };
    let mut mlxcel = file("mlxcel", "cuda-sm90", vec![run("m", "tg128", 200.0, json!({}))]);
    mlxcel["decode_breakdowns"] = json!([breakdown(json!(null), Some(7.5)), breakdown(json!(4), None)]);
    let path = dir.path().join("mlxcel.json");
    std::fs::write(&path, mlxcel.to_string()).unwrap();
    let out = dir.path().join("page.md");
    let opts = plain_page(&out);
    bench_report::generate(&[path], None, &opts).unwrap();
    let md = std::fs::read_to_string(&out).unwrap();
    assert!(md.contains("| eval ms | encode ms | eval µs/op |"), "{md}");
    assert!(md.contains("| 100 | 60 | 2.00 ± 0.25 | 8.00 ± 0.25 | 7.50 ± 0.25 | 80.0 |"), "{md}");
    assert!(md.contains("| 100 | 60 | 2.00 ± 0.25 | 8.00 ± 0.25 | — | 80.0 |"), "{md}");
}

/// A file of decode breakdowns alone (an earlier run's "before" plan) adds its breakdown rows and
/// no rates; a file with neither runs nor breakdowns is refused.
#[test]
fn a_breakdown_only_file_adds_breakdown_rows_and_no_rates() {
    let dir = tempfile::tempdir().unwrap();
    let spread = |mean: f64| json!({"mean": mean, "std": 0.25});
    let times = json!({"depth": 2048, "steps": 16, "graph_nodes_per_token": 300,
        "graph_ops": [["Matmul", 200], ["Reshape", 100]],
        "build_ms": spread(3.0), "eval_ms": spread(20.0), "step_ms": spread(23.0)});
    let mut before = file("mlxcel", "cuda-sm90", vec![]);
    before["decode_breakdowns"] = json!([{"model": "m", "dtype": "bfloat16", "bits": null, "variant": {"cuda_kernels": "off"}, "breakdown": times}]);
    let after = file("mlxcel", "cuda-sm90", vec![run("m", "tg128", 200.0, json!({"cuda_kernels": "on"}))]);
    let paths = write_files(dir.path(), &[("before.json", &before), ("after.json", &after)]);
    let out = dir.path().join("page.md");
    bench_report::generate(&paths, None, &plain_page(&out)).unwrap();
    let md = std::fs::read_to_string(&out).unwrap();
    assert!(md.contains("| 300 | 200 | 3.00 ± 0.25 | 20.00 ± 0.25 | — |"), "{md}");
    assert!(!md.contains("## Settings A/B"), "no second variant's rates: {md}");

    let empty = file("mlxcel", "cuda-sm90", vec![]);
    let error = source("empty.json", &empty).expect_err("an empty file is refused").to_string();
    assert!(error.contains("\"runs\" and \"decode_breakdowns\" are both empty"), "{error}");
}
