//! `--plot`: latency percentile curves in the HdrHistogram style — percentile on a logarithmic
//! axis (50%, 90%, 99%, 99.9%, ...), latency on the other — one curve per workload and backend,
//! so that distributions are compared by looking at them.

use std::path::Path;

use plotters::prelude::*;

use crate::bench::Outcome;

/// Points per decade of the percentile axis.
const STEPS_PER_DECADE: u32 = 20;
/// The axis runs to the 99.999th percentile.
const DECADES: f64 = 5.0;

pub fn write_svg(path: &Path, results: &[Outcome]) -> Result<(), Box<dyn std::error::Error>> {
    // The floors are measured again before each backend (`bench::measure`): one curve each,
    // the first, rather than one per backend under the same label.
    let mut drawn = std::collections::HashSet::new();
    let curves: Vec<(String, Vec<(f64, f64)>)> = results
        .iter()
        .filter_map(|r| {
            let h = r.latency.as_ref()?;
            if !drawn.insert(r.label()) {
                return None;
            }
            let points = (0..=(DECADES as u32 * STEPS_PER_DECADE))
                .map(|i| {
                    let x = f64::from(i) / f64::from(STEPS_PER_DECADE);
                    let quantile = 1.0 - 10f64.powf(-x);
                    (x, (h.value_at_quantile(quantile) as f64 / 1e3).max(1.0))
                })
                .collect();
            Some((r.label(), points))
        })
        .collect();
    if curves.is_empty() {
        return Err("no latency results to plot".into());
    }
    let y_min = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .fold(f64::MAX, f64::min);
    // Start the latency axis at the power of ten below the fastest point, not at 1 us.
    let y_min = 10f64.powf(y_min.max(1.0).log10().floor());
    let y_max = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .fold(1.0, f64::max)
        * 1.5;
    let root = SVGBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("rwal latency by percentile", ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..DECADES, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (us)")
        .x_labels(6)
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()?;
    for (i, (label, points)) in curves.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// `0` -> "0%", `1` -> "90%", `2` -> "99%", `3` -> "99.9%".
fn percentile_label(x: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.round() as usize).saturating_sub(2);
    format!("{percent:.decimals$}%")
}

#[cfg(test)]
mod tests {
    use super::percentile_label;

    #[test]
    fn labels_read_as_percentiles() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(5.0), "99.999%");
    }
}
