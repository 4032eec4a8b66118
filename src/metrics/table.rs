//! HdrHistogram's standard percentile distribution output (as Java's
//! `outputPercentileDistribution` prints it), values in milliseconds.

use hdrhistogram::Histogram;
use std::fmt::Write;

/// Percentile steps per halving of the distance to 100%.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The table for one histogram of microsecond values.
pub fn percentile_distribution(histogram: &Histogram<u64>) -> String {
    let mut out = String::new();
    let ms = |micros: u64| micros as f64 / 1000.0;
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if histogram.is_empty() {
        let _ = writeln!(out, "#[no values recorded]");
        return out;
    }
    for step in histogram.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        let quantile = step.quantile_iterated_to();
        let value = ms(step.value_iterated_to());
        if quantile < 1.0 {
            let _ = writeln!(
                out,
                "{value:12.3} {quantile:2.12} {:10} {:14.2}",
                count_up_to(histogram, step.value_iterated_to()),
                1.0 / (1.0 - quantile)
            );
        } else {
            let _ = writeln!(out, "{value:12.3} {quantile:2.12} {:10}", histogram.len());
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        histogram.mean() / 1000.0,
        histogram.stdev() / 1000.0
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        ms(histogram.max()),
        histogram.len()
    );
    // Sub-buckets per bucket: the power of two that holds 2 * 10^sigfig values.
    let sub_buckets = (2.0 * 10f64.powi(i32::from(histogram.sigfig())))
        .log2()
        .ceil()
        .exp2();
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        histogram.buckets(),
        sub_buckets
    );
    out
}

fn count_up_to(histogram: &Histogram<u64>, value: u64) -> u64 {
    histogram.count_between(0, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_the_standard_shape() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
        }
        let table = percentile_distribution(&h);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("Value") && lines[0].contains("1/(1-Percentile)"));
        let first: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(first[0], "0.010");
        assert!(first[1].starts_with("0.000000"));
        let last_value = lines
            .iter()
            .rev()
            .find(|l| l.split_whitespace().nth(1) == Some("1.000000000000"))
            .unwrap();
        assert!(last_value.trim_start().starts_with("10.0"), "{last_value}");
        assert!(table.contains("#[Mean    ="));
        assert!(table.contains("Total count    =         1000]"));
        assert!(table.contains("SubBuckets     =         2048]"), "{table}");
    }
}
