//! Server-side SVG charts (plotters): the small trend lines of metric cards,
//! ingest rates and alert baselines. Numbers in, an `<svg>` string out; no
//! text from outside ever reaches a chart.

use plotters::prelude::*;

/// Width and height of a trend chart, in CSS pixels.
const SIZE: (u32, u32) = (260, 64);

/// A trend of `points` (gaps where a day had no value), with an optional
/// dashed `target` line. Empty input gives an empty chart, not an error.
pub fn trend(points: &[Option<f64>], target: Option<f64>) -> String {
    let values: Vec<f64> = points.iter().flatten().copied().collect();
    if values.is_empty() || points.len() < 2 {
        return String::new();
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let mut low = values.iter().copied().fold(f64::INFINITY, f64::min);
        let mut high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if let Some(t) = target {
            low = low.min(t);
            high = high.max(t);
        }
        if (high - low).abs() < f64::EPSILON {
            high = low + 1.0;
        }
        let pad = (high - low) * 0.1;
        let x_max = (points.len() - 1) as f64;
        let Ok(mut chart) = ChartBuilder::on(&root)
            .margin(4)
            .build_cartesian_2d(0.0..x_max, (low - pad)..(high + pad))
        else {
            return String::new();
        };
        if let Some(t) = target {
            let dashes = (0..points.len().saturating_sub(1)).step_by(2).map(|i| {
                PathElement::new(
                    vec![(i as f64, t), ((i as f64 + 1.0).min(x_max), t)],
                    RGBColor(150, 150, 150),
                )
            });
            let _ = chart.draw_series(dashes);
        }
        // Gaps split the line, so a day without data is not drawn as a value.
        let mut segment: Vec<(f64, f64)> = Vec::new();
        let mut segments = Vec::new();
        for (i, point) in points.iter().enumerate() {
            match point {
                Some(v) => segment.push((i as f64, *v)),
                None if !segment.is_empty() => segments.push(std::mem::take(&mut segment)),
                None => {}
            }
        }
        if !segment.is_empty() {
            segments.push(segment);
        }
        let line = RGBColor(37, 99, 235);
        for segment in segments {
            let dots = segment.len() == 1;
            let _ = chart.draw_series(LineSeries::new(segment.clone(), line.stroke_width(2)));
            if dots {
                let _ = chart.draw_series(
                    segment
                        .into_iter()
                        .map(|p| Circle::new(p, 2, line.filled())),
                );
            }
        }
        let _ = root.present();
    }
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trend_is_an_svg_with_a_line_and_no_text() {
        let svg = trend(
            &[Some(0.2), Some(0.4), None, Some(0.5), Some(0.9)],
            Some(0.8),
        );
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("<polyline") || svg.contains("<path"), "{svg}");
        assert!(!svg.contains("<script"));
        assert!(!svg.contains("<text"));
    }

    #[test]
    fn nothing_to_draw_is_an_empty_string() {
        assert!(trend(&[], None).is_empty());
        assert!(trend(&[None, None], Some(1.0)).is_empty());
    }
}
