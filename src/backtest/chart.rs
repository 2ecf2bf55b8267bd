//! `chart.svg`: demand against serving capacity over time, one panel per
//! cluster, with every scale-out decision marked. With `--compare`, the
//! other configuration's serving capacity is drawn in the same panel.
//!
//! Long runs are drawn in buckets of several steps: each bucket shows its
//! highest demand and its lowest capacity, so a shortfall never disappears
//! from the picture.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::engine::{ClusterRun, Grid};

/// At most this many clusters are drawn; the caption says when more ran.
pub(crate) const MAX_PANELS: usize = 16;
/// At most this many points per line.
const MAX_POINTS: usize = 2000;

const WIDTH: u32 = 1200;
const PANEL_HEIGHT: u32 = 320;

/// What plotters' SVG backend reports: a layout fault, or the file's I/O.
type DrawError = DrawingAreaErrorKind<std::io::Error>;

/// `chart.svg` could not be drawn or written; the other outputs are already
/// on disk.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {}: {source}", path.display())]
pub struct ChartError {
    /// The chart file.
    pub path: PathBuf,
    /// What plotters reported.
    #[source]
    pub source: DrawError,
}

/// Another configuration's runs, drawn over the first's: its name, and its
/// runs (matched to the first's by cluster).
pub(crate) type Overlay<'a> = (&'a str, &'a [ClusterRun]);

/// Writes the chart of `clusters` over `grid` to `path`, with `overlay`'s
/// serving capacity in the same panels.
pub(crate) fn write(
    path: &Path,
    grid: &Grid,
    title: &str,
    clusters: &[ClusterRun],
    overlay: Option<Overlay<'_>>,
) -> Result<(), ChartError> {
    let fail = |source| ChartError {
        path: path.to_path_buf(),
        source,
    };
    let shown = clusters.len().clamp(1, MAX_PANELS);
    let height = PANEL_HEIGHT * shown as u32 + 40;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(fail)?;
    let caption = if clusters.len() > MAX_PANELS {
        format!(
            "{title} (first {MAX_PANELS} of {} clusters)",
            clusters.len()
        )
    } else {
        title.to_string()
    };
    let root = root.titled(&caption, ("sans-serif", 20)).map_err(fail)?;
    let panels = root.split_evenly((shown, 1));
    for (panel, cluster) in panels.iter().zip(clusters.iter().take(MAX_PANELS)) {
        let other = overlay.and_then(|(name, runs)| {
            runs.iter()
                .find(|r| r.instance_id == cluster.instance_id)
                .map(|r| (name, r))
        });
        draw_panel(panel, grid, cluster, other).map_err(fail)?;
    }
    root.present().map_err(fail)
}

/// A timeline series in buckets of `bucket` steps, GiB against hours, drawn
/// as steps (the values hold over a step); `pick` reduces a bucket.
fn stepped_line(
    run: &ClusterRun,
    grid: &Grid,
    bucket: usize,
    pick: impl Fn(&[super::engine::StepRecord]) -> Option<f64>,
) -> Vec<(f64, f64)> {
    let hours = |i: usize| i as f64 * grid.step.as_secs_f64() / 3600.0;
    let mut line: Vec<(f64, f64)> = Vec::with_capacity(run.timeline.len() / bucket + 2);
    for (b, rows) in run.timeline.chunks(bucket).enumerate() {
        let Some(mb) = pick(rows) else { continue };
        let (x, y) = (hours(b * bucket), mb / 1024.0);
        if let Some(&(_, prev)) = line.last()
            && prev != y
        {
            line.push((x, prev));
        }
        line.push((x, y));
    }
    if let Some(&(_, last)) = line.last() {
        line.push((hours(run.timeline.len().max(1)), last));
    }
    line
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    grid: &Grid,
    run: &ClusterRun,
    other: Option<(&str, &ClusterRun)>,
) -> Result<(), DrawError> {
    let steps = run.timeline.len();
    let hours = |i: usize| i as f64 * grid.step.as_secs_f64() / 3600.0;
    let bucket = steps.div_ceil(MAX_POINTS).max(1);
    // Each bucket shows its highest demand and its lowest capacity.
    let highest_demand = |rows: &[super::engine::StepRecord]| {
        rows.iter().filter_map(|r| r.demand_mb).reduce(f64::max)
    };
    let lowest_capacity =
        |rows: &[super::engine::StepRecord]| rows.iter().map(|r| r.capacity_mb).reduce(f64::min);
    let demand = stepped_line(run, grid, bucket, highest_demand);
    let capacity = stepped_line(run, grid, bucket, lowest_capacity);
    let other_capacity =
        other.map(|(name, r)| (name, stepped_line(r, grid, bucket, lowest_capacity)));
    let orders: Vec<(f64, f64, u32)> = run
        .timeline
        .iter()
        .enumerate()
        .filter(|(_, r)| r.increment > 0)
        .map(|(i, r)| (hours(i), r.capacity_mb / 1024.0, r.increment))
        .collect();
    let removals: Vec<(f64, f64)> = run
        .timeline
        .iter()
        .enumerate()
        .filter(|(_, r)| r.removed > 0)
        .map(|(i, r)| (hours(i), r.capacity_mb / 1024.0))
        .collect();
    let x_max = hours(steps.max(1));
    let y_max = demand
        .iter()
        .chain(&capacity)
        .chain(other_capacity.iter().flat_map(|(_, l)| l))
        .map(|p| p.1)
        .fold(1.0f64, f64::max)
        * 1.1;
    let from = grid.from;
    let label = move |x: &f64| {
        (from + chrono::Duration::seconds((x * 3600.0).round() as i64))
            .format("%m-%d %H:%M")
            .to_string()
    };
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "{}: {} node(s) added, {} removed, {:.1} unmet GiB·min",
                run.instance_id,
                run.summary.nodes_added,
                run.summary.nodes_removed,
                run.summary.unmet_gib_minutes
            ),
            ("sans-serif", 16),
        )
        .margin(10)
        .margin_right(40)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&label)
        .y_desc("GiB")
        .draw()?;
    let blue = RGBColor(31, 119, 180);
    let green = RGBColor(44, 160, 44);
    let red = RGBColor(214, 39, 40);
    chart
        .draw_series(LineSeries::new(demand, blue.stroke_width(2)))?
        .label("demand")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue));
    chart
        .draw_series(LineSeries::new(capacity, green.stroke_width(2)))?
        .label("serving capacity")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], green));
    if let Some((name, line)) = other_capacity {
        let grey = RGBColor(127, 127, 127);
        chart
            .draw_series(LineSeries::new(line, grey.stroke_width(2)))?
            .label(format!("serving capacity with {name}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
    }
    chart
        .draw_series(
            orders
                .iter()
                .map(|(x, y, _)| TriangleMarker::new((*x, *y), 6, red.filled())),
        )?
        .label("scale-out decision")
        .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 5, red.filled()));
    let orange = RGBColor(255, 127, 14);
    if !removals.is_empty() {
        chart
            .draw_series(
                removals
                    .iter()
                    .map(|(x, y)| Cross::new((*x, *y), 5, orange.stroke_width(2))),
            )?
            .label("scale-in (graceful removal)")
            .legend(move |(x, y)| Cross::new((x + 10, y), 4, orange.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
