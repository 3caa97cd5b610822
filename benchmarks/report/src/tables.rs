//! Grouping runs into comparable sets, choosing each engine's default settings, and the tables built
//! from them. Everything here is computed from the loaded results; formatting helpers live at the end.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::schema::{Precision, ReportError, Run, Source, Stat};

/// The engine the page is about: its runs get the ratio, TTFT and memory columns and the A/B tables.
pub const MLXCEL: &str = "mlxcel";
/// Picked as the baseline when `--baseline` is not given and it is present.
pub const PREFERRED_BASELINE: &str = "mlx-lm";

/// One run together with the engine and file that produced it.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub engine: &'a str,
    pub source: &'a Source,
    pub run: &'a Run,
}

/// A test as it sorts on the page: depth first, then prompt processing before generation, then size,
/// so that pp512, tg128, pp512@d1024, tg128@d1024 come out in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestKey {
    pub name: String,
    pub depth: u64,
    pub generation: bool,
    pub n_prompt: u64,
    pub n_gen: u64,
}

impl TestKey {
    fn of(run: &Run) -> Self {
        TestKey {
            name: run.test.clone(),
            depth: run.depth,
            generation: run.is_generation(),
            n_prompt: run.n_prompt,
            n_gen: run.n_gen,
        }
    }

    fn sort_key(&self) -> (u64, bool, u64, u64, &str) {
        (self.depth, self.generation, self.n_prompt, self.n_gen, &self.name)
    }
}

/// All runs of one model at one precision: the unit of a main comparison table and of a chart.
#[derive(Debug, Clone)]
pub struct Group<'a> {
    pub model: String,
    pub precision: Precision,
    pub tests: Vec<TestKey>,
    pub entries: Vec<Entry<'a>>,
}

impl<'a> Group<'a> {
    fn runs_of(&self, engine: &str) -> impl Iterator<Item = &Entry<'a>> {
        self.entries.iter().filter(move |e| e.engine == engine)
    }

    /// The settings that stand for `engine` in the main table: those of a run marked
    /// `"default": true`, or else those of the engine's first run in this group.
    pub fn default_settings(&self, engine: &str) -> Option<Map<String, Value>> {
        let mut runs = self.runs_of(engine);
        let first = runs.next()?;
        let marked = std::iter::once(first).chain(runs).find(|e| e.run.is_marked_default());
        Some(marked.unwrap_or(first).run.settings())
    }

    /// The run shown for `engine` and `test` in the main table. A run marked default wins; otherwise
    /// the run with the group's default settings; otherwise (that variant was not measured for this
    /// test) the first run of the test, so that a cell is only empty when nothing was measured.
    pub fn default_run(&self, engine: &str, test: &str) -> Option<&'a Run> {
        let candidates: Vec<&Entry<'a>> = self.runs_of(engine).filter(|e| e.run.test == test).collect();
        if let Some(marked) = candidates.iter().find(|e| e.run.is_marked_default()) {
            return Some(marked.run);
        }
        let settings = self.default_settings(engine)?;
        candidates.iter().find(|e| e.run.settings() == settings).or(candidates.first()).map(|e| e.run)
    }

    /// Engines with runs in this group, in page order.
    pub fn engines<'s>(&self, order: &'s [String]) -> Vec<&'s str> {
        order.iter().map(String::as_str).filter(|name| self.entries.iter().any(|e| e.engine == *name)).collect()
    }
}

/// The merged results of every input file.
#[derive(Debug)]
pub struct Dataset<'a> {
    pub sources: &'a [Source],
    /// mlxcel first, then the baseline, then the others in the order they were first seen.
    pub engines: Vec<String>,
    pub baseline: Option<String>,
    pub groups: Vec<Group<'a>>,
}

impl<'a> Dataset<'a> {
    /// Groups the runs and resolves the baseline. `baseline` None picks mlx-lm if present, else the
    /// first engine other than mlxcel.
    pub fn new(sources: &'a [Source], baseline: Option<&str>) -> Result<Self, ReportError> {
        if sources.is_empty() {
            return Err(ReportError::NoInput);
        }
        let mut seen: Vec<String> = Vec::new();
        for s in sources {
            if !seen.contains(&s.file.engine.name) {
                seen.push(s.file.engine.name.clone());
            }
        }
        let baseline = match baseline {
            Some(b) if b == MLXCEL || !seen.iter().any(|e| e == b) => {
                return Err(ReportError::UnknownBaseline {
                    baseline: b.into(),
                    present: seen.iter().filter(|e| *e != MLXCEL).cloned().collect::<Vec<_>>().join(", "),
                });
            }
            Some(b) => Some(b.to_owned()),
            None if seen.iter().any(|e| e == PREFERRED_BASELINE) => Some(PREFERRED_BASELINE.to_owned()),
            None => seen.iter().find(|e| *e != MLXCEL).cloned(),
        };
        let mut engines: Vec<String> = Vec::new();
        engines.extend(seen.iter().filter(|e| *e == MLXCEL).cloned());
        engines.extend(baseline.iter().cloned());
        engines.extend(seen.iter().filter(|e| !engines.contains(e)).cloned().collect::<Vec<_>>());

        let mut groups: Vec<Group<'a>> = Vec::new();
        for source in sources {
            for run in &source.file.runs {
                let entry = Entry { engine: &source.file.engine.name, source, run };
                let precision = run.precision();
                let idx = match groups.iter().position(|g| g.model == run.model && g.precision == precision) {
                    Some(i) => i,
                    None => {
                        groups.push(Group { model: run.model.clone(), precision, tests: vec![], entries: vec![] });
                        groups.len() - 1
                    }
                };
                let group = &mut groups[idx];
                if let Some(dup) = group
                    .entries
                    .iter()
                    .find(|e| e.engine == entry.engine && e.run.test == run.test && e.run.settings() == run.settings())
                {
                    return Err(ReportError::DuplicateRun {
                        run: format!("{} {} ({}) {}", entry.engine, run.model, group.precision, run.test),
                        first: dup.source.path.clone(),
                        other: source.path.clone(),
                    });
                }
                if !group.tests.iter().any(|t| t.name == run.test) {
                    group.tests.push(TestKey::of(run));
                }
                group.entries.push(entry);
            }
        }
        for g in &mut groups {
            g.tests.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        }
        Ok(Dataset { sources, engines, baseline, groups })
    }

    fn has_mlxcel(&self) -> bool {
        self.engines.iter().any(|e| e == MLXCEL)
    }

    /// The ratio column only makes sense when both sides exist.
    pub fn ratio_baseline(&self) -> Option<&str> {
        self.baseline.as_deref().filter(|_| self.has_mlxcel())
    }
}

/// One row of a main comparison table.
#[derive(Debug, Clone)]
pub struct ComparisonRow<'a> {
    pub test: String,
    /// Per engine (in `Comparison::engines` order), its default run for this test.
    pub runs: Vec<Option<&'a Run>>,
    /// mlxcel mean t/s over baseline mean t/s.
    pub ratio: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Comparison<'a> {
    pub engines: Vec<String>,
    pub baseline: Option<String>,
    pub rows: Vec<ComparisonRow<'a>>,
}

pub fn comparison<'a>(data: &Dataset<'a>, group: &Group<'a>) -> Comparison<'a> {
    let engines: Vec<String> = group.engines(&data.engines).into_iter().map(str::to_owned).collect();
    let baseline = data.ratio_baseline().filter(|b| engines.iter().any(|e| e == b)).map(str::to_owned);
    let rows = group
        .tests
        .iter()
        .map(|t| {
            let runs: Vec<Option<&Run>> = engines.iter().map(|e| group.default_run(e, &t.name)).collect();
            let ratio = baseline.as_deref().and_then(|b| {
                let ours = group.default_run(MLXCEL, &t.name)?;
                let theirs = group.default_run(b, &t.name)?;
                Some(ours.tokens_per_second.mean / theirs.tokens_per_second.mean)
            });
            ComparisonRow { test: t.name.clone(), runs, ratio }
        })
        .collect();
    Comparison { engines, baseline, rows }
}

/// Runs of one engine, model, precision and test that differ only in their settings.
#[derive(Debug, Clone)]
pub struct AbTable<'a> {
    pub engine: String,
    pub model: String,
    pub precision: Precision,
    pub test: String,
    /// Union of the setting names over the rows, in first-seen order.
    pub keys: Vec<String>,
    /// Fastest first.
    pub rows: Vec<AbRow<'a>>,
}

#[derive(Debug, Clone)]
pub struct AbRow<'a> {
    pub run: &'a Run,
    pub settings: Map<String, Value>,
    pub is_default: bool,
    /// This row's mean t/s over the fastest row's.
    pub ratio_to_best: f64,
}

/// A/B tables for mlxcel (the engine whose settings the page is meant to tune), then other engines
/// that also measured several settings.
pub fn ab_tables<'a>(data: &Dataset<'a>) -> Vec<AbTable<'a>> {
    let mut tables = Vec::new();
    for engine in &data.engines {
        for group in &data.groups {
            for test in &group.tests {
                let runs: Vec<&Run> =
                    group.runs_of(engine).filter(|e| e.run.test == test.name).map(|e| e.run).collect();
                if runs.len() < 2 {
                    continue;
                }
                let best = runs.iter().map(|r| r.tokens_per_second.mean).fold(f64::MIN, f64::max);
                let default_run = group.default_run(engine, &test.name);
                let mut rows: Vec<AbRow> = runs
                    .iter()
                    .map(|r| AbRow {
                        run: r,
                        settings: r.settings(),
                        is_default: default_run.is_some_and(|d| std::ptr::eq(d, *r)),
                        ratio_to_best: r.tokens_per_second.mean / best,
                    })
                    .collect();
                rows.sort_by(|a, b| desc(a.run.tokens_per_second.mean, b.run.tokens_per_second.mean));
                let mut keys: Vec<String> = Vec::new();
                for k in rows.iter().flat_map(|r| r.settings.keys()) {
                    if !keys.contains(k) {
                        keys.push(k.clone());
                    }
                }
                tables.push(AbTable {
                    engine: engine.clone(),
                    model: group.model.clone(),
                    precision: group.precision.clone(),
                    test: test.name.clone(),
                    keys,
                    rows,
                });
            }
        }
    }
    tables
}

fn desc(a: f64, b: f64) -> Ordering {
    b.partial_cmp(&a).unwrap_or(Ordering::Equal)
}

/// One engine's runs of one model with identical settings at several precisions.
#[derive(Debug, Clone)]
pub struct DtypeTable<'a> {
    pub engine: String,
    pub model: String,
    pub settings: Map<String, Value>,
    pub precisions: Vec<Precision>,
    pub tests: Vec<String>,
    /// `cells[test][precision]`
    pub cells: Vec<Vec<Option<&'a Run>>>,
}

pub fn dtype_tables<'a>(data: &Dataset<'a>) -> Vec<DtypeTable<'a>> {
    let mut tables: Vec<DtypeTable<'a>> = Vec::new();
    for engine in &data.engines {
        let mut models: Vec<&str> = Vec::new();
        for g in &data.groups {
            if !models.contains(&g.model.as_str()) {
                models.push(&g.model);
            }
        }
        for model in models {
            let groups: Vec<&Group<'a>> = data.groups.iter().filter(|g| g.model == model).collect();
            let entries: Vec<&Entry<'a>> = groups.iter().flat_map(|g| g.runs_of(engine)).collect();
            let mut variants: Vec<Map<String, Value>> = Vec::new();
            for e in &entries {
                let s = e.run.settings();
                if !variants.contains(&s) {
                    variants.push(s);
                }
            }
            for settings in variants {
                let same: Vec<&Run> = entries.iter().filter(|e| e.run.settings() == settings).map(|e| e.run).collect();
                let mut precisions: Vec<Precision> = Vec::new();
                for r in &same {
                    if !precisions.contains(&r.precision()) {
                        precisions.push(r.precision());
                    }
                }
                if precisions.len() < 2 {
                    continue;
                }
                // Unquantized first, then from the most bits to the fewest.
                precisions.sort_by_key(|p| (p.bits.map_or(0, |b| u32::MAX - b), p.dtype.clone()));
                let mut keys: Vec<TestKey> = Vec::new();
                for r in &same {
                    if !keys.iter().any(|k| k.name == r.test) {
                        keys.push(TestKey::of(r));
                    }
                }
                keys.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
                let tests: Vec<String> = keys.into_iter().map(|k| k.name).collect();
                let cells = tests
                    .iter()
                    .map(|t| {
                        precisions
                            .iter()
                            .map(|p| same.iter().copied().find(|r| &r.test == t && &r.precision() == p))
                            .collect()
                    })
                    .collect();
                tables.push(DtypeTable {
                    engine: engine.clone(),
                    model: model.to_owned(),
                    settings,
                    precisions,
                    tests,
                    cells,
                });
            }
        }
    }
    tables
}

// ---- formatting ----

/// llama-bench prints two decimals for t/s; kept so numbers can be compared with its output by eye.
pub fn fmt_stat(s: &Stat) -> String {
    format!("{:.2} ± {:.2}", s.mean, s.std)
}

pub fn fmt_ratio(r: f64) -> String {
    format!("{r:.2}x")
}

pub fn fmt_bytes(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let b = bytes as f64;
    if b >= GIB { format!("{:.2} GiB", b / GIB) } else { format!("{:.1} MiB", b / MIB) }
}

/// Parameter counts as model cards write them (135M, 1.2B).
pub fn fmt_params(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 { format!("{:.2}B", n / 1e9) } else { format!("{:.1}M", n / 1e6) }
}

/// Setting values as written in the JSON, without quotes around strings.
pub fn fmt_setting(v: Option<&Value>) -> String {
    match v {
        None => "—".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

pub fn fmt_settings(settings: &Map<String, Value>) -> String {
    if settings.is_empty() {
        return "(none)".into();
    }
    settings.iter().map(|(k, v)| format!("{k}={}", fmt_setting(Some(v)))).collect::<Vec<_>>().join(", ")
}

/// Markdown needs `|` escaped inside cells; newlines would end the row.
pub fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// A GitHub-flavoured Markdown table; `right` marks numeric columns.
pub fn markdown_table(headers: &[String], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    out.push_str(&format!("| {} |\n", headers.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | ")));
    let rule: Vec<&str> =
        (0..headers.len()).map(|i| if right.get(i).copied().unwrap_or(false) { "---:" } else { "---" }).collect();
    out.push_str(&format!("| {} |\n", rule.join(" | ")));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_the_page_conventions() {
        assert_eq!(fmt_stat(&Stat { mean: 412.6, std: 4.1, samples: vec![] }), "412.60 ± 4.10");
        assert_eq!(fmt_ratio(412.6 / 356.1), "1.16x");
        assert_eq!(fmt_bytes(538_060_032), "513.1 MiB");
        assert_eq!(fmt_bytes(25_276_063_744), "23.54 GiB");
        assert_eq!(fmt_params(134_515_008), "134.5M");
        assert_eq!(fmt_params(5_439_438_272), "5.44B");
        assert_eq!(fmt_setting(Some(&Value::Bool(false))), "false");
        assert_eq!(fmt_setting(Some(&Value::String("on".into()))), "on");
    }

    #[test]
    fn markdown_table_escapes_pipes_and_right_aligns_numbers() {
        let t = markdown_table(&["a".into(), "b".into()], &[false, true], &[vec!["x|y".into(), "1".into()]]);
        assert_eq!(t, "| a | b |\n| --- | ---: |\n| x\\|y | 1 |\n");
    }
}
