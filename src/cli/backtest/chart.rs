//! The SVG chart of a backtest (plotters): over time, the types written (a step line, with the
//! narrowings marked) and, on the right axis, the interruption ceiling and the mean band of the
//! written set and of its cheapest three as each snapshot saw them (and spot-optimizer's pick's,
//! with `--peer`).
//!
//! The x axis is in dates. A stretch without snapshots much longer than the series' usual
//! spacing is a gap: it is shaded and no line crosses it, since nothing was observed there. The
//! legend sits in a strip below the plot, so it never covers data.

use plotters::prelude::*;
use spotplan_core::policy::backtest::{PeerReport, Report, Step, Trigger};
use std::ops::Range;
use std::path::Path;

const DAY: f64 = 86_400.0;
/// A stretch without snapshots is a gap when it is longer than this many times the median
/// spacing of the series, and longer than [`GAP_FLOOR_DAYS`].
const GAP_FACTOR: f64 = 3.0;
const GAP_FLOOR_DAYS: f64 = 14.0;
/// The right axis runs a little below band 0 so a line at band 0 stays off the axis.
const BANDS: Range<f64> = -0.3..4.3;

const SET: RGBColor = RGBColor(0, 140, 60);
const CHEAPEST: RGBColor = RGBColor(200, 0, 160);
const CEILING: RGBColor = RGBColor(220, 40, 40);
const PEER: RGBColor = RGBColor(40, 40, 40);
const GAP: RGBColor = RGBColor(236, 236, 236);

struct Axis {
    from: jiff::Timestamp,
}

impl Axis {
    fn x(&self, at: jiff::Timestamp) -> f64 {
        (at.as_second() - self.from.as_second()) as f64 / DAY
    }

    fn date(&self, x: f64) -> String {
        let at = self.from.as_second() + (x * DAY).round() as i64;
        jiff::Timestamp::from_second(at)
            .map(|t| t.strftime("%Y-%m-%d").to_string())
            .unwrap_or_default()
    }
}

fn mean_band<'a>(s: &Step, types: impl Iterator<Item = &'a String>) -> Option<f64> {
    let bands: Vec<f64> = types
        .map(|t| f64::from(s.bands.get(t).copied().flatten().unwrap_or(4)))
        .collect();
    (!bands.is_empty()).then(|| bands.iter().sum::<f64>() / bands.len() as f64)
}

/// The gaps of a series of snapshot positions (in days, sorted): the stretches much longer than
/// its median spacing.
fn gaps(snapshots: &[f64]) -> Vec<Range<f64>> {
    let mut spacing: Vec<f64> = snapshots.windows(2).map(|w| w[1] - w[0]).collect();
    if spacing.len() < 2 {
        return vec![];
    }
    spacing.sort_by(f64::total_cmp);
    let median = spacing[spacing.len() / 2];
    let limit = (median * GAP_FACTOR).max(GAP_FLOOR_DAYS);
    snapshots
        .windows(2)
        .filter(|w| w[1] - w[0] > limit)
        .map(|w| w[0]..w[1])
        .collect()
}

/// Splits a line into runs that do not cross a gap.
fn runs(points: Vec<(f64, f64)>, gaps: &[Range<f64>]) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![];
    let mut run: Vec<(f64, f64)> = vec![];
    for p in points {
        let crosses = run
            .last()
            .is_some_and(|last| gaps.iter().any(|g| last.0 <= g.start && p.0 >= g.end));
        if crosses {
            out.push(std::mem::take(&mut run));
        }
        run.push(p);
    }
    out.push(run);
    out.retain(|r| !r.is_empty());
    out
}

/// A step line: each value holds until the next point, and the last one to `end`.
fn steps(points: &[(f64, f64)], end: f64) -> Vec<(f64, f64)> {
    let mut line = Vec::new();
    for (k, &(x, y)) in points.iter().enumerate() {
        if k > 0 {
            line.push((x, points[k - 1].1));
        }
        line.push((x, y));
    }
    if let Some(&(_, y)) = points.last() {
        line.push((end, y));
    }
    line
}

/// A step line that holds only until the start of the gap it runs into, and picks up again after.
fn held(points: &[(f64, f64)], end: f64, gaps: &[Range<f64>]) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![];
    for run in runs(points.to_vec(), gaps) {
        let last = run.last().map_or(end, |p| p.0);
        let until = gaps
            .iter()
            .find(|g| g.start >= last)
            .map_or(end, |g| g.start);
        out.push(steps(&run, until));
    }
    out
}

type Plane =
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>;
type Chart<'a, 'b> = plotters::chart::DualCoordChartContext<'a, SVGBackend<'b>, Plane, Plane>;

pub fn write(
    path: &Path,
    title: &str,
    r: &Report,
    peer: Option<&PeerReport>,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (960, 530)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_vertically(474);
    let axis = Axis { from: r.from };
    let span = r.days.max(1.0);
    let most = r.steps.iter().map(|s| s.types.len()).max().unwrap_or(1) as f64;
    let snapshot_days: Vec<f64> = r
        .steps
        .iter()
        .filter(|s| s.trigger == Trigger::Snapshot)
        .map(|s| axis.x(s.at))
        .collect();
    let gaps = gaps(&snapshot_days);

    let mut chart = ChartBuilder::on(&plot)
        .caption(format!("spotplan backtest: {title}"), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .right_y_label_area_size(44)
        .build_cartesian_2d(0.0..span, 0.0..(most * 1.15).ceil())?
        .set_secondary_coord(0.0..span, BANDS);
    let date = |x: &f64| axis.date(*x);
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&date)
        .y_desc("types written")
        .light_line_style(WHITE)
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("band (0 <5% .. 4 >20% or unknown)")
        .draw()?;
    shade(&mut chart, &gaps, most)?;

    let written: Vec<(f64, f64)> = r
        .steps
        .iter()
        .map(|s| (axis.x(s.at), s.types.len() as f64))
        .collect();
    for line in held(&written, span, &gaps) {
        chart.draw_series(LineSeries::new(line, BLUE.stroke_width(2)))?;
    }
    // The written list stays in force through a gap, unobserved: dashed.
    for g in &gaps {
        if let Some(&(_, y)) = written.iter().rev().find(|p| p.0 <= g.start) {
            chart.draw_series(DashedLineSeries::new(
                [(g.start, y), (g.end, y)],
                6,
                6,
                BLUE.stroke_width(1),
            ))?;
        }
    }
    chart.draw_series(
        r.steps
            .iter()
            .filter(|s| s.why == "narrowed")
            .map(|s| Circle::new((axis.x(s.at), s.types.len() as f64), 5, RED.filled())),
    )?;

    let ceiling: Vec<(f64, f64)> = r
        .steps
        .iter()
        .filter_map(|s| Some((axis.x(s.at), f64::from(s.ceiling?))))
        .collect();
    chart.draw_secondary_series(
        ceiling
            .iter()
            .map(|&p| TriangleMarker::new(p, 4, CEILING.filled())),
    )?;
    for line in held(&ceiling, span, &gaps) {
        chart.draw_secondary_series(DashedLineSeries::new(line, 8, 5, CEILING.stroke_width(2)))?;
    }
    let band_line = |pick: &dyn Fn(&Step) -> Option<f64>| -> Vec<(f64, f64)> {
        r.steps
            .iter()
            .filter_map(|s| Some((axis.x(s.at), pick(s)?)))
            .collect()
    };
    let set = band_line(&|s| mean_band(s, s.types.iter()));
    let cheap = band_line(&|s| mean_band(s, s.cheapest.iter()));
    for (points, color) in [(set, SET), (cheap, CHEAPEST)] {
        dotted_runs(&mut chart, points, &gaps, color, 2)?;
    }
    if let Some(p) = peer {
        let picks: Vec<(f64, f64)> = p
            .steps
            .iter()
            .filter(|s| s.instance_type.is_some())
            .map(|s| (axis.x(s.at), f64::from(s.band.unwrap_or(4))))
            .collect();
        dotted_runs(&mut chart, picks, &gaps, PEER, 1)?;
    }
    draw_legend(&legend, peer.is_some(), !ceiling.is_empty())?;
    root.present()?;
    Ok(())
}

/// Shades each gap and says what it is.
fn shade(
    chart: &mut Chart<'_, '_>,
    gaps: &[Range<f64>],
    top: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    for g in gaps {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(g.start, 0.0), (g.end, (top * 1.15).ceil())],
            GAP.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("no snapshots ({:.0} days)", g.end - g.start),
            (g.start + 1.0, top * 0.08),
            ("sans-serif", 13).into_font().color(&BLACK.mix(0.6)),
        )))?;
    }
    Ok(())
}

/// A band line on the right axis: runs that stop at gaps, each point marked.
fn dotted_runs(
    chart: &mut Chart<'_, '_>,
    points: Vec<(f64, f64)>,
    gaps: &[Range<f64>],
    color: RGBColor,
    width: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    chart.draw_secondary_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    for run in runs(points, gaps) {
        chart.draw_secondary_series(LineSeries::new(run, color.stroke_width(width)))?;
    }
    Ok(())
}

/// The legend, in its own strip under the plot.
fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    peer: bool,
    ceiling: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut items: Vec<(&str, RGBColor, bool)> = vec![
        ("types written (left)", BLUE, false),
        ("narrowing", RED, true),
        ("mean band, whole set", SET, false),
        ("mean band, cheapest three", CHEAPEST, false),
    ];
    if ceiling {
        items.push(("interruption ceiling", CEILING, false));
    }
    if peer {
        items.push(("spot-optimizer's pick, band", PEER, false));
    }
    let font = ("sans-serif", 13).into_font();
    // Three to a row, in fixed columns, so the strip never runs off the right edge.
    for (k, (label, color, dot)) in items.into_iter().enumerate() {
        let (x, y) = (60 + 300 * (k % 3) as i32, 14 + 22 * (k / 3) as i32);
        if dot {
            area.draw(&Circle::new((x + 8, y), 5, color.filled()))?;
        } else {
            area.draw(&PathElement::new(
                vec![(x, y), (x + 18, y)],
                color.stroke_width(2),
            ))?;
        }
        area.draw(&Text::new(label, (x + 24, y - 7), font.clone()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_stretch_without_snapshots_is_a_gap_and_no_line_crosses_it() {
        // The 2022 series' shape: one snapshot, 87 days of nothing, then about every two weeks.
        let days = [0.0, 87.0, 103.0, 139.0, 144.0, 159.0, 166.0, 167.0, 181.0];
        let g = gaps(&days);
        assert_eq!(g, vec![0.0..87.0]);
        let line: Vec<(f64, f64)> = days.iter().map(|&d| (d, 1.0)).collect();
        let r = runs(line, &g);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], vec![(0.0, 1.0)]);
        assert_eq!(r[1].first(), Some(&(87.0, 1.0)));
        // A held value stops where the gap starts.
        let h = held(&[(0.0, 20.0), (87.0, 20.0), (120.0, 16.0)], 195.0, &g);
        assert_eq!(h[0], vec![(0.0, 20.0), (0.0, 20.0)]);
        assert_eq!(h[1].last(), Some(&(195.0, 16.0)));
    }

    #[test]
    fn evenly_spaced_snapshots_have_no_gap() {
        assert!(gaps(&[0.0, 7.0, 14.0, 21.0, 28.0]).is_empty());
        assert!(gaps(&[0.0, 7.0]).is_empty());
    }
}
