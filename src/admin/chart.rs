//! The dashboard's chart: one inline SVG per unit, a bar per day, credits
//! above the axis and debits below. Geometry is computed in decimals, as
//! the amounts are; no float touches a figure.

use std::fmt::Write;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use time::Date;

use super::html::esc;

/// One day's bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Day {
    /// The day.
    pub(crate) day: Date,
    /// Sum of the positive amounts.
    pub(crate) credit: Decimal,
    /// Sum of the negative amounts, as a positive number.
    pub(crate) debit: Decimal,
}

const WIDTH: u32 = 760;
const LEFT: u32 = 70;
const TOP: u32 = 28;
const PLOT: u32 = 170;
const HEIGHT: u32 = TOP + PLOT + 30;

/// Pixels for `value` where `max` is `span` pixels.
fn px(value: Decimal, max: Decimal, span: u32) -> u32 {
    if max.is_zero() {
        return 0;
    }
    value
        .checked_mul(Decimal::from(span))
        .and_then(|v| v.checked_div(max))
        .and_then(|v| {
            v.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
                .to_u32()
        })
        .unwrap_or(0)
        .min(span)
}

/// The chart of `days` (every day of the period, in order) for `unit`;
/// `show` formats an amount.
pub(crate) fn svg(id: &str, unit: &str, days: &[Day], show: impl Fn(Decimal) -> String) -> String {
    let max_credit = days.iter().map(|d| d.credit).max().unwrap_or_default();
    let max_debit = days.iter().map(|d| d.debit).max().unwrap_or_default();
    let scale_max = max_credit.checked_add(max_debit).unwrap_or(max_credit);
    let axis = TOP.saturating_add(px(max_credit, scale_max, PLOT));
    let n = u32::try_from(days.len()).unwrap_or(u32::MAX).max(1);
    let plot_width = WIDTH.saturating_sub(LEFT).saturating_sub(10);
    let slot = (plot_width / n).max(1);
    let bar = slot.saturating_sub(if slot > 4 { 2 } else { 0 }).max(1);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg id=\"{id}\" role=\"img\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
xmlns=\"http://www.w3.org/2000/svg\" font-size=\"11\" font-family=\"system-ui,sans-serif\">\
<title>Per day, {unit}: credited above the line, debited below</title>\
<text x=\"{LEFT}\" y=\"16\" font-weight=\"600\" font-size=\"13\">{unit} per day</text>\
<rect x=\"{lx}\" y=\"7\" width=\"10\" height=\"10\" fill=\"#2f9e5b\"/><text x=\"{lt}\" y=\"16\">credited</text>\
<rect x=\"{rx}\" y=\"7\" width=\"10\" height=\"10\" fill=\"#d0543c\"/><text x=\"{rt}\" y=\"16\">debited</text>",
        unit = esc(unit),
        id = esc(id),
        lx = WIDTH - 190,
        lt = WIDTH - 176,
        rx = WIDTH - 100,
        rt = WIDTH - 86,
    );
    for (i, d) in days.iter().enumerate() {
        let x = LEFT.saturating_add(u32::try_from(i).unwrap_or(0).saturating_mul(slot));
        let up = px(d.credit, scale_max, PLOT);
        let down = px(d.debit, scale_max, PLOT);
        let tip = format!("{}: +{} / -{} {}", d.day, show(d.credit), show(d.debit), esc(unit));
        if up > 0 {
            let _ = write!(
                out,
                "<rect x=\"{x}\" y=\"{}\" width=\"{bar}\" height=\"{up}\" fill=\"#2f9e5b\"><title>{tip}</title></rect>",
                axis.saturating_sub(up)
            );
        }
        if down > 0 {
            let _ = write!(
                out,
                "<rect x=\"{x}\" y=\"{axis}\" width=\"{bar}\" height=\"{down}\" fill=\"#d0543c\"><title>{tip}</title></rect>"
            );
        }
    }
    let right = LEFT.saturating_add(slot.saturating_mul(n));
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{axis}\" x2=\"{right}\" y2=\"{axis}\" stroke=\"#39414d\"/>\
<text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{top}</text>\
<text x=\"{tx}\" y=\"{by}\" text-anchor=\"end\">-{bottom}</text>\
<text x=\"{tx}\" y=\"{ay}\" text-anchor=\"end\">0</text>",
        tx = LEFT - 6,
        ty = TOP + 8,
        by = TOP + PLOT,
        ay = axis + 4,
        top = esc(&show(max_credit)),
        bottom = esc(&show(max_debit)),
    );
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        let _ = write!(
            out,
            "<text x=\"{LEFT}\" y=\"{y}\">{first}</text><text x=\"{right}\" y=\"{y}\" text-anchor=\"end\">{last}</text>",
            y = HEIGHT - 8,
            first = first.day,
            last = last.day,
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn bars_scale_to_the_largest_day_and_debits_hang_below() {
        let days = [
            Day {
                day: date!(2026 - 11 - 01),
                credit: Decimal::new(1000, 2),
                debit: Decimal::ZERO,
            },
            Day {
                day: date!(2026 - 11 - 02),
                credit: Decimal::new(500, 2),
                debit: Decimal::new(1000, 2),
            },
            Day {
                day: date!(2026 - 11 - 03),
                credit: Decimal::ZERO,
                debit: Decimal::ZERO,
            },
        ];
        let svg = svg("chart-azn", "AZN", &days, |d| d.to_string());
        assert!(svg.starts_with("<svg id=\"chart-azn\""));
        // 10 + 10 over 170 px: the largest credit is 85 px, half of it 43.
        assert!(svg.contains("height=\"85\" fill=\"#2f9e5b\""), "{svg}");
        assert!(svg.contains("height=\"43\" fill=\"#2f9e5b\""), "{svg}");
        assert!(
            svg.contains("y=\"113\" width=\"") && svg.contains("height=\"85\" fill=\"#d0543c\""),
            "{svg}"
        );
        assert_eq!(svg.matches("<rect x=\"70\"").count(), 1, "one bar on the first day");
        assert!(svg.contains(">2026-11-01<") && svg.contains(">2026-11-03<"));
        assert!(svg.ends_with("</svg>"));
    }

    #[test]
    fn an_empty_period_draws_an_axis_only() {
        let svg = svg("c", "<u>", &[], |d| d.to_string());
        assert!(svg.contains("&lt;u&gt;") && !svg.contains("<u>"));
        assert!(!svg.contains("fill=\"#2f9e5b\"><title>"));
    }
}
