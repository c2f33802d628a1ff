//! Horizontal bar charts as standalone SVG (no dependencies, no network).

/// One bar: its label, value and optional min–max whisker.
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub range: Option<(f64, f64)>,
    /// CSS colour.
    pub color: &'static str,
}

pub const DNSLB: &str = "#2b6cb0";
pub const NATIVE: &str = "#718096";
/// The legacy dnslb path (filter routing): a lighter shade of [`DNSLB`].
pub const LEGACY: &str = "#90cdf4";
pub const CEILING: &str = "#38a169";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A bar chart, one row per bar, values formatted with `format`.
pub fn bar_chart(title: &str, unit: &str, bars: &[Bar], format: impl Fn(f64) -> String) -> String {
    let label_w = 330.0;
    let plot_w = 380.0;
    let value_w = 110.0;
    let row = 26.0;
    let top = 40.0;
    let width = label_w + plot_w + value_w;
    let height = top + row * bars.len() as f64 + 30.0;
    let max = bars
        .iter()
        .map(|b| b.range.map_or(b.value, |(_, hi)| hi.max(b.value)))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { plot_w / max } else { 0.0 };
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="14" font-weight="bold">{}</text>
"#,
        escape(title)
    );
    for (i, bar) in bars.iter().enumerate() {
        let y = top + row * i as f64;
        let value = if bar.value.is_finite() {
            bar.value
        } else {
            0.0
        };
        let w = value * scale;
        svg.push_str(&format!(
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>
<rect x="{label_w}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{}"/>
"#,
            label_w - 8.0,
            y + row * 0.62,
            escape(&bar.label),
            y + 4.0,
            row - 8.0,
            bar.color,
        ));
        if let Some((lo, hi)) = bar
            .range
            .filter(|(lo, hi)| lo.is_finite() && hi.is_finite())
        {
            let (x1, x2, ym) = (label_w + lo * scale, label_w + hi * scale, y + row / 2.0);
            svg.push_str(&format!(
                r#"<line x1="{x1:.1}" y1="{ym:.1}" x2="{x2:.1}" y2="{ym:.1}" stroke="black"/>
<line x1="{x1:.1}" y1="{:.1}" x2="{x1:.1}" y2="{:.1}" stroke="black"/>
<line x1="{x2:.1}" y1="{:.1}" x2="{x2:.1}" y2="{:.1}" stroke="black"/>
"#,
                ym - 5.0,
                ym + 5.0,
                ym - 5.0,
                ym + 5.0
            ));
        }
        let text = if bar.value.is_finite() {
            format(bar.value)
        } else {
            "n/a".into()
        };
        svg.push_str(&format!(
            r#"<text x="{:.1}" y="{:.1}">{}</text>
"#,
            label_w + plot_w + 6.0,
            y + row * 0.62,
            escape(&text)
        ));
    }
    svg.push_str(&format!(
        r#"<text x="{label_w}" y="{:.1}" fill="grey">{} (bar: median; whisker: min–max)</text>
</svg>
"#,
        height - 10.0,
        escape(unit)
    ));
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_a_bar_per_row_and_escapes() {
        let bars = [
            Bar {
                label: "a <b>".into(),
                value: 10.0,
                range: Some((8.0, 12.0)),
                color: DNSLB,
            },
            Bar {
                label: "c".into(),
                value: f64::NAN,
                range: None,
                color: NATIVE,
            },
        ];
        let svg = bar_chart("t & u", "req/s", &bars, |v| format!("{v:.0}"));
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("a &lt;b&gt;") && svg.contains("t &amp; u"));
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("n/a"));
    }
}
