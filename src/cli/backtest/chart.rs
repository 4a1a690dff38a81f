//! The SVG chart of a backtest (plotters): over time, the types written (a step line, with the
//! narrowings marked) and, on the right axis, the mean band of the written set and of its
//! cheapest three as each snapshot saw them (and spot-optimizer's pick's, with `--peer`).

use plotters::prelude::*;
use spotplan_core::policy::backtest::{PeerReport, Report, Step};
use std::path::Path;

fn days(r: &Report, at: jiff::Timestamp) -> f64 {
    (at.as_second() - r.from.as_second()) as f64 / 86_400.0
}

fn mean_band<'a>(s: &Step, types: impl Iterator<Item = &'a String>) -> Option<f64> {
    let bands: Vec<f64> = types
        .map(|t| f64::from(s.bands.get(t).copied().flatten().unwrap_or(4)))
        .collect();
    (!bands.is_empty()).then(|| bands.iter().sum::<f64>() / bands.len() as f64)
}

pub fn write(
    path: &Path,
    title: &str,
    r: &Report,
    peer: Option<&PeerReport>,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let span = r.days.max(1.0);
    let most = r.steps.iter().map(|s| s.types.len()).max().unwrap_or(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("spotplan backtest: {title}"), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .right_y_label_area_size(44)
        .build_cartesian_2d(0.0..span, 0.0..(most * 1.15).ceil())?
        .set_secondary_coord(0.0..span, 0.0..4.2);
    let from = r.from;
    chart
        .configure_mesh()
        .x_desc(format!("days since {}", from.strftime("%Y-%m-%d")))
        .y_desc("types written")
        .light_line_style(WHITE)
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("mean band (0 <5% .. 4 >20% or unknown)")
        .draw()?;

    // Types written: a step line to the end.
    let mut line = Vec::new();
    for (k, s) in r.steps.iter().enumerate() {
        let x = days(r, s.at);
        if k > 0 {
            line.push((x, r.steps[k - 1].types.len() as f64));
        }
        line.push((x, s.types.len() as f64));
    }
    if let Some(last) = r.steps.last() {
        line.push((span, last.types.len() as f64));
    }
    chart
        .draw_series(LineSeries::new(line, BLUE.stroke_width(2)))?
        .label("types written")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    chart
        .draw_series(
            r.steps
                .iter()
                .filter(|s| s.why == "narrowed")
                .map(|s| Circle::new((days(r, s.at), s.types.len() as f64), 5, RED.filled())),
        )?
        .label("narrowing")
        .legend(|(x, y)| Circle::new((x + 8, y), 4, RED.filled()));

    // Bands, as each step saw them.
    let set: Vec<(f64, f64)> = r
        .steps
        .iter()
        .filter_map(|s| Some((days(r, s.at), mean_band(s, s.types.iter())?)))
        .collect();
    let cheap: Vec<(f64, f64)> = r
        .steps
        .iter()
        .filter_map(|s| Some((days(r, s.at), mean_band(s, s.cheapest.iter())?)))
        .collect();
    chart
        .draw_secondary_series(LineSeries::new(set, GREEN.stroke_width(2)))?
        .label("mean band, whole set")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], GREEN));
    chart
        .draw_secondary_series(LineSeries::new(cheap, MAGENTA.stroke_width(2)))?
        .label("mean band, cheapest three")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], MAGENTA));
    if let Some(p) = peer {
        let picks: Vec<(f64, f64)> = p
            .steps
            .iter()
            .filter(|s| s.instance_type.is_some())
            .map(|s| (days(r, s.at), f64::from(s.band.unwrap_or(4))))
            .collect();
        chart
            .draw_secondary_series(LineSeries::new(picks, BLACK.stroke_width(1)))?
            .label("spot-optimizer's pick, band")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}
