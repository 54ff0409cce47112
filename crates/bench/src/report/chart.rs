//! `latency.png`: latency percentiles per second (top) and throughput per second (bottom).

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

use super::Summary;

const FAMILY: &str = "sans-serif";

/// Reads one line's value out of a second of the timeline.
type Percentile = fn(&super::SecondSummary) -> f64;

/// Registers the first TrueType font found among the usual system places (Debian's
/// `fonts-dejavu-core` first). Nothing is downloaded: without a font, the chart has no text.
fn font_available() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let places = [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        ];
        places
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .any(|data| {
                // The font registry keeps 'static data: one small leak per process.
                let data: &'static [u8] = Box::leak(data.into_boxed_slice());
                plotters::style::register_font(FAMILY, FontStyle::Normal, data).is_ok()
            })
    })
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Draws the chart of `s` into `path`.
type Area<'b> = DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>;
type Panel<'a, 'b, Y> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;

/// One chart over the run's seconds: frame, caption and axes (no text without a font).
fn panel<'a, 'b, Y>(
    area: &'a Area<'b>,
    caption: String,
    seconds: f64,
    y: Y,
    y_desc: &str,
) -> Result<Panel<'a, 'b, Y::CoordDescType>, String>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let text = font_available();
    let mut b = ChartBuilder::on(area);
    b.margin(15);
    if text {
        b.caption(caption, (FAMILY, 20))
            .x_label_area_size(35)
            .y_label_area_size(70);
    }
    let mut chart = b.build_cartesian_2d(0f64..seconds, y).map_err(err)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("time (s)").y_desc(y_desc);
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(err)?;
    Ok(chart)
}

/// Draws the chart of `s` into `path`.
pub fn draw(path: &Path, s: &Summary) -> Result<(), String> {
    let text = font_available();
    let seconds = s.timeline.len().max(1) as f64;
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(480);

    let lat_max = s.timeline.iter().map(|t| t.max_ms).fold(1.0f64, f64::max) * 1.5;
    let lat_min = s
        .timeline
        .iter()
        .map(|t| t.p50_ms)
        .filter(|v| *v > 0.0)
        .fold(lat_max, f64::min)
        .clamp(0.001, 1.0)
        / 2.0;
    let caption = format!(
        "workload {} against {}: latency per second",
        s.run.workload, s.run.target
    );
    let mut chart = panel(
        &top,
        caption,
        seconds,
        (lat_min..lat_max).log_scale(),
        "latency (ms)",
    )?;
    let series: [(&str, RGBColor, Percentile); 3] = [
        ("p50", RGBColor(40, 120, 200), |t| t.p50_ms),
        ("p99", RGBColor(230, 140, 0), |t| t.p99_ms),
        ("max", RGBColor(200, 40, 40), |t| t.max_ms),
    ];
    for (name, color, value) in series {
        let points = s
            .timeline
            .iter()
            .filter(|t| t.ops > 0)
            .map(|t| (t.second as f64 + 0.5, value(t).max(lat_min)));
        let drawn = chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?;
        if text {
            drawn
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }

    let ops_max = s.timeline.iter().map(|t| t.ops).max().unwrap_or(1).max(1) as f64 * 1.2;
    let green = RGBColor(40, 150, 60);
    let mut chart = panel(
        &bottom,
        "throughput per second".into(),
        seconds,
        0f64..ops_max,
        "ops/s",
    )?;
    let points = s
        .timeline
        .iter()
        .map(|t| (t.second as f64 + 0.5, t.ops as f64));
    chart
        .draw_series(AreaSeries::new(points, 0.0, green.mix(0.3)).border_style(green))
        .map_err(err)?;
    root.present().map_err(err)
}
