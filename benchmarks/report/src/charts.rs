//! Grouped bar charts as SVG. The chart description is plain data (built by the page from the
//! comparison tables) so the drawing code knows nothing about result files.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::tables::{Comparison, TestKey};

const MIN_WIDTH: u32 = 1000;
const HEIGHT: u32 = 520;
/// Pixels per bar when a chart has many bars, so value labels and test names keep apart.
const PX_PER_BAR: u32 = 64;
/// Beyond this a chart stops being readable on a page however wide it is; bars get narrower instead.
const MAX_WIDTH: u32 = 2400;

/// Tableau 10: distinguishable, and readable for the common kinds of colour blindness.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

#[derive(Debug, Clone)]
pub struct BarChart {
    pub title: String,
    /// One entry per bar series (engine): its legend name and its colour slot, which the page keeps
    /// the same for an engine across every chart.
    pub series: Vec<(String, usize)>,
    pub panels: Vec<Panel>,
}

/// One set of axes. Prompt processing and generation rates differ by an order of magnitude or more,
/// so they get separate panels rather than one axis on which tg bars would be invisible.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub categories: Vec<String>,
    /// `values[category][series]`: mean and std, None where that engine has no result.
    pub values: Vec<Vec<Option<(f64, f64)>>>,
}

/// Builds the chart of one comparison table: pp tests in one panel, tg tests in another.
pub fn from_comparison(title: String, cmp: &Comparison, tests: &[TestKey], engine_order: &[String]) -> BarChart {
    let series =
        cmp.engines.iter().map(|e| (e.clone(), engine_order.iter().position(|o| o == e).unwrap_or(0))).collect();
    let mut panels = Vec::new();
    for (generation, name) in [(false, "Prompt processing"), (true, "Token generation")] {
        let rows: Vec<_> =
            cmp.rows.iter().filter(|r| tests.iter().any(|t| t.name == r.test && t.generation == generation)).collect();
        if rows.is_empty() {
            continue;
        }
        panels.push(Panel {
            title: name.into(),
            categories: rows.iter().map(|r| r.test.clone()).collect(),
            values: rows
                .iter()
                .map(|r| {
                    r.runs.iter().map(|run| run.map(|x| (x.tokens_per_second.mean, x.tokens_per_second.std))).collect()
                })
                .collect(),
        });
    }
    BarChart { title, series, panels }
}

/// Short bar labels: the table below the chart has the exact numbers.
fn bar_label(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Tick labels with as many decimals as the tick spacing needs, so one axis reads 0, 10, 20 rather
/// than mixing "0.00" and "10.0".
fn axis_label(v: f64, y_max: f64) -> String {
    let step = y_max / 10.0;
    let decimals = if step > 0.0 { (-step.log10().floor()).clamp(0.0, 4.0) as usize } else { 0 };
    format!("{v:.decimals$}")
}

pub fn render_svg(chart: &BarChart) -> Result<String, String> {
    let mut svg = String::new();
    {
        let bars: usize = chart.panels.iter().map(|p| p.categories.len() * chart.series.len()).sum();
        let width = (200 * chart.panels.len() as u32 + PX_PER_BAR * bars as u32).clamp(MIN_WIDTH, MAX_WIDTH);
        let root = SVGBackend::with_string(&mut svg, (width, HEIGHT)).into_drawing_area();
        draw(&root, chart).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// An x axis of `n` equal slots, one per test, with its ticks at the slot centres where the test
/// names go. plotters' f64 axis picks "round" tick values instead, and its key-point override does
/// not keep the label formatting that `configure_mesh` needs.
struct Slots(usize);

impl Ranged for Slots {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let frac = value / self.0.max(1) as f64;
        limit.0 + (frac * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, _hint: H) -> Vec<f64> {
        (0..self.0).map(|i| i as f64 + 0.5).collect()
    }

    fn range(&self) -> Range<f64> {
        0.0..self.0 as f64
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>>;

fn draw(root: &Area, chart: &BarChart) -> DrawResult {
    root.fill(&WHITE)?;
    let body = root.titled(&chart.title, ("sans-serif", 26).into_font().style(FontStyle::Bold))?;
    let (legend, body) = body.split_vertically(40);
    draw_legend(&legend, &chart.series)?;
    if chart.panels.is_empty() {
        return Ok(());
    }
    let areas = body.split_evenly((1, chart.panels.len()));
    for (panel, area) in chart.panels.iter().zip(&areas) {
        draw_panel(area, panel, &chart.series)?;
    }
    Ok(())
}

/// A single legend row above the panels: plotters' in-chart legend box would cover the tallest bars.
fn draw_legend(area: &Area, series: &[(String, usize)]) -> DrawResult {
    const SWATCH: i32 = 16;
    const GAP: i32 = 28;
    let font = ("sans-serif", 19).into_font();
    let measure = TextStyle::from(font.clone());
    let widths: Vec<i32> =
        series.iter().map(|(name, _)| area.estimate_text_size(name, &measure).map_or(80, |(w, _)| w as i32)).collect();
    let total: i32 = widths.iter().map(|w| SWATCH + 6 + w).sum::<i32>() + GAP * (series.len() as i32 - 1).max(0);
    let (w, h) = area.dim_in_pixel();
    let mut x = ((w as i32 - total) / 2).max(4);
    let y = h as i32 / 2;
    for ((name, slot), width) in series.iter().zip(widths) {
        let color = PALETTE[slot % PALETTE.len()];
        area.draw(&Rectangle::new([(x, y - SWATCH / 2), (x + SWATCH, y + SWATCH / 2)], color.filled()))?;
        let style = font.clone().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(name.clone(), (x + SWATCH + 6, y), style))?;
        x += SWATCH + 6 + width + GAP;
    }
    Ok(())
}

fn draw_panel(area: &Area, panel: &Panel, series: &[(String, usize)]) -> DrawResult {
    let n = panel.categories.len();
    let top = panel.values.iter().flatten().flatten().map(|(m, s)| m + s).fold(0.0, f64::max);
    // Headroom for the value labels above the tallest error bar.
    let y_max = if top > 0.0 { top * 1.15 } else { 1.0 };
    let categories = panel.categories.clone();
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 21))
        .margin(12)
        .margin_right(24)
        .x_label_area_size(56)
        .y_label_area_size(72)
        .build_cartesian_2d(Slots(n), 0f64..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .x_label_formatter(&|x| {
            let i = x.floor().max(0.0) as usize;
            categories.get(i).cloned().unwrap_or_default()
        })
        .y_label_formatter(&|y| axis_label(*y, y_max))
        .x_desc("test")
        .y_desc("tokens / s")
        .label_style(("sans-serif", 17))
        .axis_desc_style(("sans-serif", 18))
        .draw()?;

    let m = series.len().max(1) as f64;
    // Bars of one test fill 80% of its slot, leaving a visible gap between tests.
    let slot = 0.8 / m;
    let label_font = ("sans-serif", 15).into_font();
    // Value labels are a convenience (the table has the numbers): leave them out rather than let
    // neighbouring labels overlap when the bars are narrow.
    let slot_px = chart.plotting_area().dim_in_pixel().0 as f64 / n.max(1) as f64 * slot;
    let widest = panel.values.iter().flatten().flatten().map(|(v, _)| bar_label(*v).len()).max().unwrap_or(0);
    let label_px = area.estimate_text_size(&"0".repeat(widest), &TextStyle::from(label_font.clone()))?.0 as f64;
    let show_labels = label_px < slot_px * 0.95;
    for (i, row) in panel.values.iter().enumerate() {
        for (j, value) in row.iter().enumerate() {
            let Some((mean, std)) = *value else { continue };
            let color = PALETTE[series.get(j).map_or(j, |s| s.1) % PALETTE.len()];
            let x0 = i as f64 + 0.1 + j as f64 * slot;
            let (l, r) = (x0 + slot * 0.06, x0 + slot * 0.94);
            let cx = x0 + slot / 2.0;
            chart.draw_series(std::iter::once(Rectangle::new([(l, 0.0), (r, mean)], color.filled())))?;
            if std > 0.0 {
                let cap = slot * 0.15;
                let (lo, hi) = ((mean - std).max(0.0), mean + std);
                let ink = BLACK.mix(0.75).stroke_width(1);
                chart.draw_series([
                    PathElement::new(vec![(cx, lo), (cx, hi)], ink),
                    PathElement::new(vec![(cx - cap, hi), (cx + cap, hi)], ink),
                    PathElement::new(vec![(cx - cap, lo), (cx + cap, lo)], ink),
                ])?;
            }
            if show_labels {
                let style = label_font.clone().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom));
                chart.draw_series(std::iter::once(
                    EmptyElement::at((cx, mean + std)) + Text::new(bar_label(mean), (0, -4), style),
                ))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(tests: usize, engines: usize) -> BarChart {
        BarChart {
            title: "m (float32)".into(),
            series: (0..engines).map(|i| (format!("engine{i}"), i)).collect(),
            panels: vec![Panel {
                title: "Prompt processing".into(),
                categories: (0..tests).map(|i| format!("pp{}", 128 * (i + 1))).collect(),
                values: (0..tests)
                    .map(|i| (0..engines).map(|j| Some((1234.6 + (i * j) as f64, 10.0))).collect())
                    .collect(),
            }],
        }
    }

    #[test]
    fn svg_has_title_legend_test_names_and_labels() {
        let svg = render_svg(&chart(2, 2)).unwrap();
        assert!(svg.starts_with("<svg width=\"1000\""));
        for text in ["m (float32)", "engine0", "engine1", "pp128", "pp256", "tokens / s", ">\n1235\n<"] {
            assert!(svg.contains(text), "missing {text:?}");
        }
    }

    #[test]
    fn many_bars_widen_the_chart_and_drop_labels_that_would_overlap() {
        let svg = render_svg(&chart(8, 6)).unwrap();
        assert!(!svg.starts_with("<svg width=\"1000\""), "48 bars need more than the minimum width");
        let narrow = render_svg(&BarChart { panels: vec![chart(40, 8).panels.remove(0)], ..chart(1, 8) }).unwrap();
        assert!(!narrow.contains(">\n1235\n<"), "labels dropped when bars are narrower than the text");
    }

    #[test]
    fn axis_labels_use_the_decimals_the_step_needs() {
        assert_eq!(axis_label(20.0, 55.0), "20");
        assert_eq!(axis_label(0.1, 0.74), "0.10");
        assert_eq!(axis_label(2.0, 9.0), "2.0");
        assert_eq!(bar_label(412.6), "413");
        assert_eq!(bar_label(0.614), "0.61");
    }
}
