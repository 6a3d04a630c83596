//! The one metrics registry behind `/metrics`: counters, gauges and histograms by name
//! and labels, rendered in the Prometheus text format (version 0.0.4).
//!
//! Series are created on first use and kept for the life of the process; labels are
//! low-cardinality by rule (outcomes, reasons, capabilities, instance ids), never task
//! ids. Histograms have fixed buckets per family.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Label pairs of one series, in the order given.
pub type Labels = Vec<(&'static str, String)>;

/// The bucket bounds (seconds) of the latency histograms: 1 ms to 10 min.
pub const SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
];

/// One metric family: its name, help line and kind.
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    kind: Kind,
}

impl Metric {
    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: Kind::Counter,
        }
    }

    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: Kind::Gauge,
        }
    }

    /// A histogram with the given bucket bounds.
    pub const fn histogram(name: &'static str, help: &'static str, bounds: &'static [f64]) -> Self {
        Self {
            name,
            help,
            kind: Kind::Histogram(bounds),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram(&'static [f64]),
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram(_) => "histogram",
        }
    }
}

enum Series {
    Value(f64),
    Histogram {
        bounds: &'static [f64],
        /// Observations at or below each bound (not cumulative; summed when rendered).
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

struct Family {
    help: &'static str,
    kind: Kind,
    series: BTreeMap<Labels, Series>,
}

/// Every metric of the process.
#[derive(Default)]
pub struct Registry {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

impl Registry {
    /// Makes `m` known, so that `/metrics` lists it before anything happened; with
    /// `zero`, its unlabelled series too, at 0.
    pub fn declare(&self, m: &Metric, zero: bool) {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = Self::family(&mut families, m);
        if zero {
            family
                .series
                .entry(Vec::new())
                .or_insert_with(|| Series::new(m.kind));
        }
    }

    /// Adds `by` to a counter (or a gauge; `by` may then be negative).
    pub fn add(&self, m: &Metric, labels: Labels, by: f64) {
        self.with(m, labels, |s| {
            if let Series::Value(v) = s {
                *v += by;
            }
        });
    }

    /// Sets a gauge.
    pub fn set(&self, m: &Metric, labels: Labels, value: f64) {
        self.with(m, labels, |s| {
            if let Series::Value(v) = s {
                *v = value;
            }
        });
    }

    /// Replaces every series of gauge family `m` with `series`: for figures read at the
    /// scrape, where a series that is gone (an instance, a capability set) must go too.
    pub fn replace(&self, m: &Metric, series: Vec<(Labels, f64)>) {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = Self::family(&mut families, m);
        family.series = series
            .into_iter()
            .map(|(labels, v)| (labels, Series::Value(v)))
            .collect();
    }

    /// Records one observation in a histogram.
    pub fn observe(&self, m: &Metric, labels: Labels, value: f64) {
        self.with(m, labels, |s| {
            if let Series::Histogram {
                bounds,
                counts,
                sum,
                count,
            } = s
            {
                if let Some(i) = bounds.iter().position(|b| value <= *b) {
                    counts[i] += 1;
                }
                *sum += value;
                *count += 1;
            }
        });
    }

    /// Over the series of `m` whose labels `keep` accepts: the sum of their values (of a
    /// histogram: of its observations) and, for a histogram, how many observations.
    pub fn total(&self, m: &Metric, keep: impl Fn(&Labels) -> bool) -> (f64, u64) {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = (0.0, 0);
        for (labels, series) in families.get(m.name).into_iter().flat_map(|f| &f.series) {
            if !keep(labels) {
                continue;
            }
            match series {
                Series::Value(v) => total.0 += v,
                Series::Histogram { sum, count, .. } => {
                    total.0 += sum;
                    total.1 += count;
                }
            }
        }
        total
    }

    fn family<'a>(families: &'a mut BTreeMap<&'static str, Family>, m: &Metric) -> &'a mut Family {
        families.entry(m.name).or_insert_with(|| Family {
            help: m.help,
            kind: m.kind,
            series: BTreeMap::new(),
        })
    }

    fn with(&self, m: &Metric, labels: Labels, f: impl FnOnce(&mut Series)) {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = Self::family(&mut families, m);
        f(family
            .series
            .entry(labels)
            .or_insert_with(|| Series::new(m.kind)));
    }

    /// Every family in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        for (name, family) in families.iter() {
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
            for (labels, series) in &family.series {
                match series {
                    Series::Value(v) => {
                        let _ = writeln!(out, "{name}{} {}", braces(labels, None), number(*v));
                    }
                    Series::Histogram {
                        bounds,
                        counts,
                        sum,
                        count,
                    } => {
                        let mut below = 0;
                        for (bound, n) in bounds.iter().zip(counts) {
                            below += n;
                            let le = number(*bound);
                            let _ =
                                writeln!(out, "{name}_bucket{} {below}", braces(labels, Some(&le)));
                        }
                        let inf = braces(labels, Some("+Inf"));
                        let _ = writeln!(out, "{name}_bucket{inf} {count}");
                        let plain = braces(labels, None);
                        let _ = writeln!(out, "{name}_sum{plain} {}", number(*sum));
                        let _ = writeln!(out, "{name}_count{plain} {count}");
                    }
                }
            }
        }
    }
}

impl Series {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Histogram(bounds) => Series::Histogram {
                bounds,
                counts: vec![0; bounds.len()],
                sum: 0.0,
                count: 0,
            },
            Kind::Counter | Kind::Gauge => Series::Value(0.0),
        }
    }
}

/// `{a="x",b="y"}` (with `le` last when given), or nothing without labels.
fn braces(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: integers without a fraction.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: Metric = Metric::counter("x_total", "Things.");
    const Y: Metric = Metric::gauge("y", "Level.");
    const Z: Metric = Metric::histogram("z_seconds", "Waits.", SECONDS);
    const W: Metric = Metric::counter("w_total", "Not yet.");

    #[test]
    fn counters_gauges_and_histograms_render_in_the_text_format() {
        let r = Registry::default();
        r.add(&X, vec![("outcome", "ok".into())], 2.0);
        r.add(&X, vec![("outcome", "ok".into())], 1.0);
        r.set(&Y, vec![], 4.5);
        r.declare(&W, true);
        for v in [0.002, 0.3, 700.0] {
            r.observe(&Z, vec![("cap", "a\"b".into())], v);
        }
        let mut out = String::new();
        r.render(&mut out);
        assert!(
            out.contains("# TYPE x_total counter\nx_total{outcome=\"ok\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("# TYPE y gauge\ny 4.5\n"), "{out}");
        assert!(out.contains("# TYPE w_total counter\nw_total 0\n"), "{out}");
        assert!(
            out.contains("z_seconds_bucket{cap=\"a\\\"b\",le=\"0.001\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("z_seconds_bucket{cap=\"a\\\"b\",le=\"0.005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("z_seconds_bucket{cap=\"a\\\"b\",le=\"0.5\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("z_seconds_bucket{cap=\"a\\\"b\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("z_seconds_count{cap=\"a\\\"b\"} 3\n"), "{out}");
    }
}
