//! `ringwire bench --plot FILE.svg`: round-trip percentiles per row on a log axis (left) and one-way
//! throughput per row, also on a log axis (right).

use super::report::Row;
use plotters::prelude::*;
use std::path::Path;

const PERCENTILES: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];

fn label(r: &Row) -> String {
    format!("{} {} {}B", r.transport, r.wait, r.size)
}

pub fn svg(path: &Path, rows: &[Row], title: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let root = SVGBackend::new(path, (1400, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root.titled(title, ("sans-serif", 18)).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(760);

    // Round trips: one line per row across the percentiles.
    let lo = rows.iter().map(|r| r.rtt_ns.p50).min().unwrap_or(1).max(1) as f64 / 1.5;
    let hi = rows.iter().map(|r| r.rtt_ns.max).max().unwrap_or(10).max(10) as f64 * 1.5;
    let mut chart = ChartBuilder::on(&left)
        .caption("round trip (ns, log scale)", ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0usize..PERCENTILES.len() - 1, (lo..hi).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_labels(PERCENTILES.len())
        .x_label_formatter(&|i| PERCENTILES.get(*i).copied().unwrap_or("").to_string())
        .y_label_formatter(&|v| ns(*v))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, r) in rows.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let p = &r.rtt_ns;
        let pts: Vec<(usize, f64)> =
            [p.p50, p.p90, p.p99, p.p999, p.max].iter().enumerate().map(|(x, v)| (x, (*v).max(1) as f64)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(label(r))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(pts.into_iter().map(|pt| Circle::new(pt, 3, color.filled()))).map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 11))
        .draw()
        .map_err(|e| e.to_string())?;

    // Throughput: one horizontal bar per row.
    let tmax = rows.iter().map(|r| r.throughput.msgs_per_sec).fold(1.0, f64::max) * 2.0;
    let tmin = rows.iter().map(|r| r.throughput.msgs_per_sec).fold(f64::INFINITY, f64::min).max(1.0) / 2.0;
    let mut bars = ChartBuilder::on(&right)
        .caption("one-way throughput (msgs/s, log scale)", ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(170)
        .build_cartesian_2d((tmin..tmax).log_scale(), (0..rows.len()).into_segmented())
        .map_err(|e| e.to_string())?;
    let labels: Vec<String> = rows.iter().map(label).collect();
    bars.configure_mesh()
        .disable_y_mesh()
        .y_labels(rows.len() + 1)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_label_formatter(&|v| si(*v))
        .draw()
        .map_err(|e| e.to_string())?;
    bars.draw_series(rows.iter().enumerate().map(|(i, r)| {
        let color = Palette99::pick(i).to_rgba();
        let x = r.throughput.msgs_per_sec.max(tmin);
        Rectangle::new([(tmin, SegmentValue::Exact(i)), (x, SegmentValue::Exact(i + 1))], color.filled())
    }))
    .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

fn si(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.0}G", v / 1e9),
        v if v >= 1e6 => format!("{:.0}M", v / 1e6),
        v if v >= 1e3 => format!("{:.0}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

fn ns(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.0} ms", v / 1e6),
        v if v >= 1e3 => format!("{:.0} µs", v / 1e3),
        v => format!("{v:.0} ns"),
    }
}
