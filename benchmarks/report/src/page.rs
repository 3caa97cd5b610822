//! Assembles the Markdown page and its charts. Every number printed comes from the result files;
//! the only prose is fixed wording and the `--notes` file.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use crate::charts;
use crate::schema::ReportError;
use crate::tables::{
    self, Dataset, MLXCEL, cell, fmt_bytes, fmt_params, fmt_ratio, fmt_setting, fmt_settings, fmt_stat,
};

#[derive(Debug, Clone)]
pub struct PageOptions {
    pub title: String,
    /// Where the Markdown goes; chart links are made relative to its folder.
    pub out: PathBuf,
    pub charts_dir: PathBuf,
    /// Markdown inserted verbatim after the methodology paragraph.
    pub notes: Option<String>,
    /// Shown as the generation date; passed in so that tests and reruns can pin it.
    pub generated: String,
    /// What one graph node of each kind costs on this machine (`cuda_probe nodes --json`), shown
    /// with the decode breakdown.
    pub node_costs: Option<Vec<NodeCost>>,
    /// The memory bandwidth decode rates are put against (the roofline section).
    pub bandwidth: Option<Bandwidth>,
}

/// A measured memory bandwidth and the file it came from.
#[derive(Debug, Clone)]
pub struct Bandwidth {
    pub tb_per_s: f64,
    pub source: PathBuf,
}

impl Bandwidth {
    /// The copy row of `cuda_kernels --json` output (`{"kernel":"copy","tb_per_s":...}`).
    pub fn from_kernels_json(path: &Path) -> Result<Bandwidth, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|error| ReportError::Read { path: path.into(), error })?;
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(&text).map_err(|error| ReportError::Json { path: path.into(), error })?;
        let tb_per_s = rows
            .iter()
            .find(|r| r.get("kernel").and_then(|k| k.as_str()) == Some("copy"))
            .and_then(|r| r.get("tb_per_s"))
            .and_then(|v| v.as_f64())
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| ReportError::Invalid {
                path: path.into(),
                message: "no copy row with a positive tb_per_s (cuda_kernels --json output expected)".into(),
            })?;
        Ok(Bandwidth { tb_per_s, source: path.into() })
    }
}

/// One row of `cuda_probe nodes --json`: a chain of `chain_nodes` nodes of one kind, evaluated at
/// once; microseconds per node until MLX has encoded them (host) and until the device is done.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct NodeCost {
    pub kind: String,
    pub chain_nodes: u64,
    pub host_us: f64,
    pub total_us: f64,
}

/// The rendered page, not yet written: `charts` holds (file name in `charts_dir`, SVG text).
#[derive(Debug, Clone)]
pub struct Page {
    pub markdown: String,
    pub charts: Vec<(String, String)>,
}

pub fn render(data: &Dataset, opts: &PageOptions) -> Result<Page, ReportError> {
    let mut md = String::new();
    let mut chart_files = Vec::new();
    let out_dir = opts.out.parent().unwrap_or(Path::new("."));
    let link_dir = relative_link(out_dir, &opts.charts_dir);

    let _ = writeln!(md, "# {}\n", opts.title);
    summary(&mut md, data);
    let dates: Vec<&str> = data.sources.iter().map(|s| s.file.date.get(..10).unwrap_or(&s.file.date)).collect();
    let (first, last) = (dates.iter().min().copied().unwrap_or(""), dates.iter().max().copied().unwrap_or(""));
    let measured = if first == last { first.to_owned() } else { format!("{first} to {last}") };
    let _ = writeln!(
        md,
        "Generated on {} by `bench-report` from {} result file{} (measured {measured}).\n",
        opts.generated,
        data.sources.len(),
        if data.sources.len() == 1 { "" } else { "s" }
    );

    machine_section(&mut md, data);
    methodology(&mut md, data, opts.notes.as_deref());

    let _ = writeln!(md, "## Results\n");
    let mut slugs: Vec<String> = Vec::new();
    for group in &data.groups {
        let heading = format!("{} ({})", group.model, group.precision);
        let _ = writeln!(md, "### {heading}\n");
        let cmp = tables::comparison(data, group);
        for engine in &cmp.engines {
            let Some(first) = group.entries.iter().find(|e| e.engine == engine) else { continue };
            let r = first.run;
            let settings = group.default_settings(engine).unwrap_or_default();
            let shown =
                if settings.is_empty() { String::new() } else { format!("; settings {}", fmt_settings(&settings)) };
            let _ = writeln!(
                md,
                "- {engine}: {}, {} parameters, {}{shown}",
                r.source,
                fmt_params(r.params),
                fmt_bytes(r.size_bytes)
            );
        }
        md.push('\n');
        md.push_str(&comparison_table(&cmp));
        md.push('\n');

        let chart = charts::from_comparison(heading.clone(), &cmp, &group.tests, &data.engines);
        let mut slug = slugify(&heading);
        if slugs.contains(&slug) {
            slug = format!("{slug}-{}", slugs.len() + 1);
        }
        slugs.push(slug.clone());
        let file = format!("{slug}.svg");
        let svg = charts::render_svg(&chart)
            .map_err(|message| ReportError::Chart { path: opts.charts_dir.join(&file), message })?;
        let _ = writeln!(md, "![{heading}: tokens per second by test and engine]({link_dir}{file})\n");
        chart_files.push((file, svg));
    }

    best_section(&mut md, data);
    ab_section(&mut md, data);
    dtype_section(&mut md, data);
    if let Some(bandwidth) = &opts.bandwidth {
        roofline_section(&mut md, data, bandwidth, out_dir);
    }
    breakdown_section(&mut md, data);
    if let Some(costs) = &opts.node_costs {
        node_cost_section(&mut md, costs);
    }
    Ok(Page { markdown: md, charts: chart_files })
}

/// Engines that run a model at precisions mlxcel was not measured at (llama.cpp on the GGUF's
/// own blocks, mlx-lm requantized) never share a results table with it: this table puts mlxcel's
/// default-plan run next to each other engine's fastest run of the same model and test.
fn best_section(md: &mut String, data: &Dataset) {
    let mut rows = Vec::new();
    let mut models: Vec<&str> = Vec::new();
    for g in &data.groups {
        if !models.contains(&g.model.as_str()) {
            models.push(&g.model);
        }
    }
    for model in models {
        let groups: Vec<_> = data.groups.iter().filter(|g| g.model == model).collect();
        // The group holding mlxcel's run marked as the machine's default plan, else its first.
        let is_default = |e: &&tables::Entry| {
            e.engine == tables::MLXCEL && e.run.variant.get("default").and_then(|v| v.as_bool()) == Some(true)
        };
        // Unquantized first: a checkpoint's own precision is the headline, its quantized runs are variants.
        let Some(ours_group) = groups
            .iter()
            .find(|g| g.entries.iter().any(|e| is_default(&e) && e.run.bits.is_none()))
            .or_else(|| groups.iter().find(|g| g.entries.iter().any(|e| is_default(&e))))
            .or_else(|| groups.iter().find(|g| g.entries.iter().any(|e| e.engine == tables::MLXCEL)))
        else {
            continue;
        };
        for test in &ours_group.tests {
            let Some(ours) = ours_group.default_run(tables::MLXCEL, &test.name) else { continue };
            for engine in data.engines.iter().filter(|e| *e != tables::MLXCEL) {
                let best = groups
                    .iter()
                    .flat_map(|g| g.entries.iter().map(move |e| (g, e)))
                    .filter(|(_, e)| e.engine == engine && e.run.test == test.name)
                    .max_by(|a, b| a.1.run.tokens_per_second.mean.total_cmp(&b.1.run.tokens_per_second.mean));
                let Some((group, theirs)) = best else { continue };
                let settings = theirs.run.settings();
                let settings = if settings.is_empty() { String::new() } else { fmt_settings(&settings) };
                rows.push(vec![
                    model.to_string(),
                    test.name.clone(),
                    format!("{} ({})", fmt_stat(&ours.tokens_per_second), ours_group.precision),
                    format!(
                        "{engine}: {} ({}{})",
                        fmt_stat(&theirs.run.tokens_per_second),
                        group.precision,
                        if settings.is_empty() { String::new() } else { format!(", {settings}") }
                    ),
                    fmt_ratio(ours.tokens_per_second.mean / theirs.run.tokens_per_second.mean),
                ]);
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## mlxcel against each engine's fastest run
"
    );
    let _ = writeln!(
        md,
        "mlxcel with its default plan for this machine, against the fastest run each other engine \
         produced for the same model and test, whatever its precision or settings.\n"
    );
    let headers: Vec<String> =
        ["model", "test", "mlxcel t/s", "fastest other run t/s", "mlxcel / other"].map(String::from).to_vec();
    md.push_str(&crate::tables::markdown_table(&headers, &[false, false, true, true, true], &rows));
    md.push('\n');
}

/// mlxcel's decode breakdowns: graph size, host build time and evaluation time per token.
fn breakdown_section(md: &mut String, data: &Dataset) {
    let breakdowns: Vec<_> = data.sources.iter().flat_map(|s| s.file.decode_breakdowns.iter()).collect();
    if breakdowns.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Where a decode step's time goes
"
    );
    let _ = writeln!(
        md,
        "`mlxcel bench --breakdown N`: N greedy decode steps after the longest prompt, each built and then \
         evaluated with nothing overlapping. *Ops* counts the distinct operations one step evaluates (a \
         compiled block counts once); *kernels* leaves out the views among them (reshapes, slices, \
         broadcasts and the like, which share their input's memory instead of launching a kernel), a \
         proxy for kernel launches; *build* is host time to construct the lazy graph; *eval* is from \
         scheduling until the token is on the host (device work, launches and \
         MLX's own per-op host work), and *encode* the part of it before MLX hands the step to the device \
         (its host work per operation: where encode is most of eval, the host bounds the step, not the \
         device). These steps start with the device idle; pipelined decoding builds and encodes the next \
         step while the device runs this one, and can be faster than build + encode here.\n"
    );
    let mut rows = Vec::new();
    for b in &breakdowns {
        let t = &b.breakdown;
        let precision = match b.bits {
            Some(bits) => format!("{} {bits}-bit", b.dtype),
            None => b.dtype.clone(),
        };
        let top: Vec<String> = t.graph_ops.iter().take(6).map(|(name, n)| format!("{name} {n}")).collect();
        rows.push(vec![
            b.model.clone(),
            precision,
            fmt_settings(
                &b.variant
                    .iter()
                    .filter(|(k, _)| k.as_str() != "default")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            t.depth.to_string(),
            t.graph_nodes_per_token.to_string(),
            kernel_ops(&t.graph_ops).to_string(),
            format!("{:.2} ± {:.2}", t.build_ms.mean, t.build_ms.std),
            format!("{:.2} ± {:.2}", t.eval_ms.mean, t.eval_ms.std),
            t.encode_ms.as_ref().map_or_else(|| "—".to_string(), |e| format!("{:.2} ± {:.2}", e.mean, e.std)),
            format!("{:.1}", 1000.0 * t.eval_ms.mean / t.graph_nodes_per_token.max(1) as f64),
            top.join(", "),
        ]);
    }
    let headers: Vec<String> = [
        "model",
        "precision",
        "settings",
        "depth",
        "ops/token",
        "kernels/token",
        "build ms",
        "eval ms",
        "encode ms",
        "eval µs/op",
        "most frequent ops",
    ]
    .map(String::from)
    .to_vec();
    let right = [false, false, false, true, true, true, true, true, true, true, false];
    md.push_str(&crate::tables::markdown_table(&headers, &right, &rows));
    md.push('\n');
}

/// MLX primitives that produce a view of their input (shared memory, new strides), not a kernel.
const VIEW_OPS: &[&str] = &[
    "Reshape",
    "Slice",
    "Squeeze",
    "ExpandDims",
    "Transpose",
    "Broadcast",
    "Flatten",
    "Unflatten",
    "AsStrided",
    "Split",
];

/// The operations among `ops` (primitive name, count) that launch work: all but the views.
pub fn kernel_ops(ops: &[(String, u64)]) -> u64 {
    ops.iter().filter(|(name, _)| !VIEW_OPS.contains(&name.as_str())).map(|(_, n)| n).sum()
}

/// Each engine's default decode rate against what the memory bandwidth allows: the weight bytes a
/// step reads (from mlxcel's result for the same model and precision, where an engine's own file
/// does not give them) divided into the measured bandwidth.
fn roofline_section(md: &mut String, data: &Dataset, bandwidth: &Bandwidth, out_dir: &Path) {
    let mut rows = Vec::new();
    for group in &data.groups {
        let Some(bytes) = group.entries.iter().find_map(|e| e.run.decode_weight_bytes) else { continue };
        let roofline = bandwidth.tb_per_s * 1e12 / bytes as f64;
        for test in group.tests.iter().filter(|t| t.generation) {
            for engine in group.engines(&data.engines) {
                let Some(run) = group.default_run(engine, &test.name) else { continue };
                rows.push(vec![
                    group.model.clone(),
                    group.precision.to_string(),
                    test.name.clone(),
                    engine.to_string(),
                    fmt_stat(&run.tokens_per_second),
                    fmt_bytes(bytes),
                    format!("{roofline:.0}"),
                    format!("{:.1}%", 100.0 * run.tokens_per_second.mean / roofline),
                ]);
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    let name = bandwidth.source.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let folder = bandwidth.source.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let link = format!("{}{name}", relative_link(out_dir, folder));
    let _ = writeln!(
        md,
        "## Decode against the memory roofline\n\nA decode step reads every weight once (Gemma 3n's \
         per-layer embedding table: one row), so the weight bytes per token divided into the memory \
         bandwidth bound the tokens per second. Bandwidth: {:.2} TB/s, the copy (read + write) measured by \
         `cuda_kernels` in [{name}]({link}).\n",
        bandwidth.tb_per_s,
    );
    let headers: Vec<String> =
        ["model", "precision", "test", "engine", "t/s", "weights per token", "roofline t/s", "of roofline"]
            .map(String::from)
            .to_vec();
    md.push_str(&crate::tables::markdown_table(&headers, &[false, false, false, false, true, true, true, true], &rows));
    md.push('\n');
}

/// The per-node costs that the breakdown's op counts multiply.
fn node_cost_section(md: &mut String, costs: &[NodeCost]) {
    let _ = writeln!(
        md,
        "### What one graph node costs\n\n`cuda_probe nodes`: a chain of nodes of one kind, each reading the \
         previous one's output, evaluated at once; microseconds per node until `async_eval` returns (MLX \
         has encoded every kernel: host) and until the device has finished (total). Where total is close \
         to host, the device keeps up and a step's time is MLX's host work per node times the nodes.\n"
    );
    let rows: Vec<Vec<String>> = costs
        .iter()
        .map(|c| {
            vec![c.kind.clone(), c.chain_nodes.to_string(), format!("{:.2}", c.host_us), format!("{:.2}", c.total_us)]
        })
        .collect();
    let headers: Vec<String> = ["node kind", "chain", "host µs/node", "total µs/node"].map(String::from).to_vec();
    md.push_str(&crate::tables::markdown_table(&headers, &[false, true, true, true], &rows));
    md.push('\n');
}

/// One line per model group: the headline ratios, so a reader need not scan the tables.
fn summary(md: &mut String, data: &Dataset) {
    let Some(baseline) = data.ratio_baseline() else { return };
    let mut lines = Vec::new();
    for group in &data.groups {
        let cmp = tables::comparison(data, group);
        let parts: Vec<String> =
            cmp.rows.iter().filter_map(|r| r.ratio.map(|x| format!("{} {}", r.test, fmt_ratio(x)))).collect();
        if !parts.is_empty() {
            lines.push(format!("- **{}** ({}): {}", group.model, group.precision, parts.join(", ")));
        }
    }
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(md, "mlxcel tokens per second divided by {baseline}'s (above 1.00x mlxcel is faster):\n");
    for l in lines {
        let _ = writeln!(md, "{l}");
    }
    md.push('\n');
}

fn machine_section(md: &mut String, data: &Dataset) {
    let _ = writeln!(md, "## Machine and software\n");
    // Engines describe the same machine in their own words; show every distinct description,
    // labelled with the engines that gave it.
    let field = |get: &dyn Fn(&crate::schema::Machine) -> String| -> String {
        let mut values: Vec<(String, Vec<&str>)> = Vec::new();
        for s in data.sources {
            let v = get(&s.file.machine);
            match values.iter_mut().find(|(x, _)| *x == v) {
                Some((_, engines)) => engines.push(&s.file.engine.name),
                None => values.push((v, vec![&s.file.engine.name])),
            }
        }
        if values.len() == 1 {
            return values.remove(0).0;
        }
        values.iter().map(|(v, e)| format!("{v} ({})", e.join(", "))).collect::<Vec<_>>().join("; ")
    };
    let rows = vec![
        vec!["Hardware class".into(), field(&|m| m.hardware_class.clone())],
        vec!["Device".into(), field(&|m| m.device.clone())],
        vec!["Backend".into(), field(&|m| m.backend.clone())],
        vec!["OS".into(), field(&|m| m.os.clone())],
        vec!["Memory".into(), field(&|m| fmt_bytes(m.memory_bytes))],
    ];
    md.push_str(&tables::markdown_table(&["Machine".into(), "".into()], &[], &rows));
    md.push('\n');

    let rows: Vec<Vec<String>> = sources_in_page_order(data)
        .iter()
        .map(|s| {
            let e = &s.file.engine;
            let details = e.details.iter().map(|(k, v)| format!("{k}: {}", fmt_setting(Some(v)))).collect::<Vec<_>>();
            vec![
                e.name.clone(),
                e.version.clone(),
                e.mlx_version.clone().unwrap_or_else(|| "—".into()),
                if details.is_empty() { "—".into() } else { details.join(", ") },
                s.file.date.clone(),
            ]
        })
        .collect();
    let headers: Vec<String> = ["Engine", "Version", "MLX", "Details", "Measured"].map(String::from).to_vec();
    md.push_str(&tables::markdown_table(&headers, &[], &rows));
    md.push_str("\nCommands, as recorded in each result file:\n\n```sh\n");
    for s in sources_in_page_order(data) {
        let _ = writeln!(md, "# {}\n{}", s.file.engine.name, s.file.command);
    }
    md.push_str("```\n\n");
}

/// Files sorted like the table columns (mlxcel, baseline, others), keeping input order within an engine.
fn sources_in_page_order<'a>(data: &Dataset<'a>) -> Vec<&'a crate::schema::Source> {
    let mut sources: Vec<&crate::schema::Source> = data.sources.iter().collect();
    sources.sort_by_key(|s| data.engines.iter().position(|e| *e == s.file.engine.name));
    sources
}

fn methodology(md: &mut String, data: &Dataset, notes: Option<&str>) {
    let mut reps: Vec<u32> = data.sources.iter().flat_map(|s| s.file.runs.iter().map(|r| r.repetitions)).collect();
    reps.sort_unstable();
    reps.dedup();
    let reps = match reps.as_slice() {
        [one] => format!("{one} repetitions"),
        many => format!(
            "{} repetitions depending on the run",
            many.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
        ),
    };
    let _ = writeln!(md, "## Methodology\n");
    let _ = write!(
        md,
        "Tests follow llama-bench conventions. `ppN` processes an N-token prompt starting from an empty cache \
         and reports prompt tokens per second; `tgN` generates N tokens after the prompt and reports generated \
         tokens per second; a suffix `@dD` means the test starts with D tokens already in the cache. Each value \
         is the mean ± standard deviation over {reps}, measured after a warm-up run that is not counted. \
         Where an engine was measured with several settings, the main tables use its default settings (the \
         run marked `\"default\": true`, or else the first settings it reported) and the other settings \
         appear in the A/B tables."
    );
    if let Some(b) = data.ratio_baseline() {
        let _ = write!(
            md,
            " The ratio column is mlxcel's mean divided by {b}'s mean. TTFT (time to first token) and peak \
             memory (MLX's buffers) are as reported by mlxcel; peak RSS is each process's peak resident \
             memory (Linux VmHWM) over the test, the model's load included."
        );
    }
    md.push_str("\n\n");
    if let Some(notes) = notes {
        md.push_str(notes.trim_end());
        md.push_str("\n\n");
    }
}

fn comparison_table(cmp: &tables::Comparison) -> String {
    let has_mlxcel = cmp.engines.iter().any(|e| e == MLXCEL);
    let mut headers = vec!["Test".to_string()];
    headers.extend(cmp.engines.iter().map(|e| format!("{e} t/s")));
    if let Some(b) = &cmp.baseline {
        headers.push(format!("{MLXCEL} / {b}"));
    }
    if has_mlxcel {
        headers.push(format!("{MLXCEL} TTFT ms"));
        headers.push(format!("{MLXCEL} peak memory"));
    }
    // Peak RSS for every engine that reported it (the whole process: load, runtime, buffers).
    let rss_cols: Vec<usize> = (0..cmp.engines.len())
        .filter(|&i| cmp.rows.iter().any(|r| r.runs[i].is_some_and(|x| x.peak_rss_bytes.is_some())))
        .collect();
    headers.extend(rss_cols.iter().map(|&i| format!("{} peak RSS", cmp.engines[i])));
    let mlxcel_col = cmp.engines.iter().position(|e| e == MLXCEL);
    let rows: Vec<Vec<String>> = cmp
        .rows
        .iter()
        .map(|r| {
            let mut row = vec![r.test.clone()];
            row.extend(r.runs.iter().map(|run| run.map_or("—".into(), |x| fmt_stat(&x.tokens_per_second))));
            if cmp.baseline.is_some() {
                row.push(r.ratio.map_or("—".into(), fmt_ratio));
            }
            if let Some(i) = mlxcel_col {
                let run = r.runs[i];
                row.push(run.and_then(|x| x.ttft_ms.as_ref()).map_or("—".into(), fmt_stat));
                row.push(run.and_then(|x| x.peak_memory_bytes).map_or("—".into(), fmt_bytes));
            }
            for &i in &rss_cols {
                row.push(r.runs[i].and_then(|x| x.peak_rss_bytes).map_or("—".into(), fmt_bytes));
            }
            row
        })
        .collect();
    let right: Vec<bool> = (0..headers.len()).map(|i| i > 0).collect();
    tables::markdown_table(&headers, &right, &rows)
}

fn ab_section(md: &mut String, data: &Dataset) {
    let abs = tables::ab_tables(data);
    if abs.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Settings A/B\n");
    let _ = writeln!(
        md,
        "Runs of one engine, model, precision and test that differ only in their settings, fastest first. \
         \"vs best\" is the row's mean t/s divided by the fastest row's.\n"
    );
    for t in abs {
        let _ = writeln!(md, "### {}: {} ({}), {}\n", t.engine, t.model, t.precision, t.test);
        let mut headers = vec!["Default".to_string()];
        headers.extend(t.keys.iter().cloned());
        headers.extend(["t/s".to_string(), "vs best".to_string()]);
        let rows: Vec<Vec<String>> = t
            .rows
            .iter()
            .map(|r| {
                let mut row = vec![if r.is_default { "yes".into() } else { String::new() }];
                row.extend(t.keys.iter().map(|k| fmt_setting(r.settings.get(k))));
                row.push(fmt_stat(&r.run.tokens_per_second));
                row.push(fmt_ratio(r.ratio_to_best));
                row
            })
            .collect();
        let n = headers.len();
        let right: Vec<bool> = (0..n).map(|i| i >= n - 2).collect();
        md.push_str(&tables::markdown_table(&headers, &right, &rows));
        md.push('\n');
    }
}

fn dtype_section(md: &mut String, data: &Dataset) {
    let dts = tables::dtype_tables(data);
    if dts.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Precision comparison\n");
    let _ = writeln!(md, "One engine and model with the same settings at different dtypes and quantizations (t/s).\n");
    for t in dts {
        let _ = writeln!(md, "### {}: {}, settings {}\n", t.engine, t.model, cell(&fmt_settings(&t.settings)));
        let mut headers = vec!["Test".to_string()];
        headers.extend(t.precisions.iter().map(|p| p.to_string()));
        let rows: Vec<Vec<String>> = t
            .tests
            .iter()
            .zip(&t.cells)
            .map(|(test, cells)| {
                let mut row = vec![test.clone()];
                row.extend(cells.iter().map(|c| c.map_or("—".into(), |r| fmt_stat(&r.tokens_per_second))));
                row
            })
            .collect();
        let right: Vec<bool> = (0..headers.len()).map(|i| i > 0).collect();
        md.push_str(&tables::markdown_table(&headers, &right, &rows));
        md.push('\n');
    }
}

/// File names for charts: lowercase letters, digits and single dashes.
pub fn slugify(text: &str) -> String {
    let mut slug = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_owned()
}

fn absolute(path: &Path) -> PathBuf {
    let joined =
        if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(path) };
    // Lexical: the chart folder may not exist yet, so canonicalize() is not an option.
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The Markdown link prefix (ending in `/`, or empty) that leads from `from_dir` to `to_dir`.
pub fn relative_link(from_dir: &Path, to_dir: &Path) -> String {
    let (from, to) = (absolute(from_dir), absolute(to_dir));
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); from.len() - common];
    parts.extend(to[common..].iter().map(|c| c.as_os_str().to_string_lossy().into_owned()));
    parts.iter().map(|p| format!("{p}/")).collect()
}

/// Writes the page and the charts, creating folders as needed; returns every path written.
pub fn write(page: &Page, opts: &PageOptions) -> Result<Vec<PathBuf>, ReportError> {
    let mk = |dir: &Path| std::fs::create_dir_all(dir).map_err(|error| ReportError::Write { path: dir.into(), error });
    let put = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|error| ReportError::Write { path: path.into(), error })
    };
    let mut written = Vec::new();
    if let Some(dir) = opts.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        mk(dir)?;
    }
    if !page.charts.is_empty() {
        mk(&opts.charts_dir)?;
    }
    for (name, svg) in &page.charts {
        let path = opts.charts_dir.join(name);
        put(&path, svg)?;
        written.push(path);
    }
    put(&opts.out, &page.markdown)?;
    written.push(opts.out.clone());
    Ok(written)
}
