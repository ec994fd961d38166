//! A report as one self-contained HTML page: its charts inline SVG, laid out here (pure
//! geometry: scales, bars, markers) and drawn by the template `report.html` (minijinja, which
//! escapes every text, team and certificate names included: they come from tags).
//!
//! No script, font, image or style sheet from elsewhere: the page works offline, on a phone
//! (every chart scales to the screen's width) and on paper. Colours are the Okabe-Ito palette,
//! told apart by people with any common colour-vision deficiency, and no chart relies on
//! colour alone: every bar and marker is labelled or counted in words.

use chrono::{DateTime, Datelike, Utc};
use minijinja::Environment;
use serde::Serialize;

use super::kpis::{Report, quarter_of};
use super::render::waiting_words;

/// Okabe-Ito: blue, orange, bluish green, vermillion, reddish purple, sky blue.
const PALETTE: [&str; 6] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9",
];
const VERMILLION: &str = "#D55E00";
const ORANGE: &str = "#E69F00";
const BLUE: &str = "#0072B2";

/// The drawing width every chart is laid out in (its `viewBox`); the page scales it.
const WIDTH: f64 = 720.0;
/// Room on the left of row charts for their labels.
const LABEL_WIDTH: f64 = 210.0;
const RIGHT_MARGIN: f64 = 24.0;

#[derive(Debug, thiserror::Error)]
#[error("the report page could not be rendered: {0}")]
pub struct HtmlError(#[from] minijinja::Error);

/// A tick on a value axis.
#[derive(Debug, Serialize)]
struct Tick {
    x: f64,
    label: String,
}

/// One team in one quarter: a bar to the median, a whisker to the 90th percentile.
#[derive(Debug, Serialize)]
struct MttrBar {
    y: f64,
    label: String,
    width: f64,
    p90_x: f64,
    colour: &'static str,
    value: String,
    /// Where the value's label goes: past the whisker.
    value_x: f64,
    /// A team's first row starts a group: a rule above it.
    starts_team: bool,
}

#[derive(Debug, Serialize)]
struct MttrChart {
    height: f64,
    axis_y: f64,
    ticks: Vec<Tick>,
    bars: Vec<MttrBar>,
    /// The chart's text equivalent, for screen readers.
    summary: String,
}

/// One quarter's column of incidents.
#[derive(Debug, Serialize)]
struct Column {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    label: String,
    value: usize,
    label_x: f64,
}

#[derive(Debug, Serialize)]
struct IncidentChart {
    height: f64,
    base_y: f64,
    columns: Vec<Column>,
    summary: String,
    /// Incidents of quarters before the last [`MAX_QUARTERS`], not drawn.
    left_out: usize,
}

/// Certificates of one team expiring on one day: one marker, with their number in it.
#[derive(Debug, Serialize)]
struct Marker {
    x: f64,
    y: f64,
    count: usize,
    colour: &'static str,
    title: String,
}

#[derive(Debug, Serialize)]
struct TimelineRow {
    y: f64,
    team: String,
}

#[derive(Debug, Serialize)]
struct Timeline {
    height: f64,
    axis_y: f64,
    rows: Vec<TimelineRow>,
    markers: Vec<Marker>,
    /// The policy's escalation steps as dashed rules.
    rules: Vec<Tick>,
    /// The steps that set the markers' colours, for the caption.
    last_step: i64,
    first_step: i64,
    ticks: Vec<Tick>,
    summary: String,
}

#[derive(Debug, Serialize)]
struct Coverage {
    owned_width: f64,
    unowned_width: f64,
    owned_label: String,
    unowned_label: String,
    summary: String,
}

/// A headline figure and what it rests on.
#[derive(Debug, Serialize)]
struct Tile {
    label: &'static str,
    value: String,
    rests_on: String,
    /// A figure that calls for action is drawn in vermillion and says so in words.
    alarm: bool,
}

#[derive(Debug, Serialize)]
struct Page<'a> {
    report: &'a Report,
    title: String,
    range: String,
    tiles: Vec<Tile>,
    mttr: MttrChart,
    incidents: IncidentChart,
    timeline: Timeline,
    coverage: Option<Coverage>,
    partners: Vec<PartnerLine>,
    colours: Colours,
    /// The policy's rotation window: the "step" of an episode no step fired for.
    window_days: u32,
}

#[derive(Debug, Serialize)]
struct PartnerLine {
    partner: String,
    team: String,
    certificate: String,
    waiting_for: &'static str,
    since: String,
    /// The old certificate's expiry: the partner's deadline.
    not_after: String,
}

#[derive(Debug, Serialize)]
struct Colours {
    alarm: &'static str,
    owned: &'static str,
    unowned: &'static str,
}

/// The report as one self-contained HTML page.
pub fn html(report: &Report) -> Result<String, HtmlError> {
    let mut env = Environment::new();
    env.add_filter("duration", duration_words);
    env.add_template("report.html", include_str!("report.html"))?;
    let page = Page {
        report,
        title: match &report.team {
            Some(team) => format!("Client certificate rotation: {team}"),
            None => "Client certificate rotation".to_string(),
        },
        range: format!(
            "{} to {}, as of {}",
            report.since.map_or_else(|| "the start".to_string(), day),
            day(report.until),
            report.now.format("%Y-%m-%d %H:%M UTC")
        ),
        tiles: tiles(report),
        mttr: mttr_chart(report),
        incidents: incident_chart(report),
        timeline: timeline(report),
        coverage: coverage(report),
        partners: report
            .partners_waiting
            .iter()
            .map(|p| PartnerLine {
                partner: p.partner.clone(),
                team: p.team.clone(),
                certificate: p.certificate.clone(),
                waiting_for: waiting_words(p.waiting_for),
                since: day(p.since),
                not_after: p.not_after.map_or_else(|| "–".to_string(), day),
            })
            .collect(),
        colours: Colours {
            alarm: VERMILLION,
            owned: BLUE,
            unowned: ORANGE,
        },
        window_days: report.policy.window_days,
    };
    Ok(env.get_template("report.html")?.render(&page)?)
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// Hours as people say them: "36 h" under three days, "4.5 d" from then on.
fn duration_words(hours: f64) -> String {
    if hours < 72.0 {
        format!("{hours:.0} h")
    } else {
        format!("{:.1} d", hours / 24.0)
    }
}

fn tiles(report: &Report) -> Vec<Tile> {
    let k = &report.kpis;
    let m = &k.mttr_hours;
    vec![
        Tile {
            label: "In use, fewer than 30 days left",
            value: k.expiring_within_30_days.to_string(),
            rests_on: match k.expired_in_use {
                0 => format!("of {} certificates in use", k.certificates_in_use),
                n => format!("of {} in use; {n} already expired", k.certificates_in_use),
            },
            alarm: k.expiring_within_30_days > 0,
        },
        Tile {
            label: "Owner known from tags",
            value: k
                .owner_coverage_percent
                .map_or_else(|| "–".to_string(), |p| format!("{p:.1} %")),
            rests_on: format!("of {} certificates in use", k.certificates_in_use),
            alarm: k.owner_coverage_percent.is_some_and(|p| p < 100.0),
        },
        Tile {
            label: "MTTR of rotations (median)",
            value: m.median.map_or_else(|| "–".to_string(), duration_words),
            rests_on: match (m.mean, m.p90) {
                (Some(mean), Some(p90)) => format!(
                    "mean {}, p90 {}; {} rotation(s)",
                    duration_words(mean),
                    duration_words(p90),
                    m.episodes
                ),
                _ => "no rotation ended in this range".to_string(),
            },
            alarm: false,
        },
        Tile {
            label: "Incidents",
            value: k.incidents.to_string(),
            rests_on: "certificates that expired while a stage presented them".to_string(),
            alarm: k.incidents > 0,
        },
    ]
}

/// A value axis from 0 to a round maximum at or above `max`, with about five ticks: the
/// maximum and the step.
fn nice_axis(max: f64) -> (f64, f64) {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    ((max / step).ceil() * step, step)
}

const MTTR_ROW: f64 = 22.0;

fn mttr_chart(report: &Report) -> MttrChart {
    let rows: Vec<_> = report
        .team_quarters
        .iter()
        .filter(|r| r.mttr_hours.median.is_some())
        .collect();
    let max = rows
        .iter()
        .filter_map(|r| r.mttr_hours.p90)
        .fold(0.0, f64::max);
    // The axis in the unit its labels use: hours under three days, days from then on, so the
    // ticks fall on round numbers of that unit.
    let unit = if max < 72.0 { 1.0 } else { 24.0 };
    let (top, step) = nice_axis(max / unit);
    let (top, step) = (top * unit, step * unit);
    // Room on the right for the value's label past the whisker.
    let plot = WIDTH - LABEL_WIDTH - RIGHT_MARGIN - 150.0;
    let x = |hours: f64| LABEL_WIDTH + plot * hours / top;
    let quarters: Vec<&str> = {
        let mut q: Vec<&str> = rows.iter().map(|r| r.quarter.as_str()).collect();
        q.sort_unstable();
        q.dedup();
        q
    };
    let mut bars = Vec::new();
    let mut last_team: Option<&str> = None;
    for (i, r) in rows.iter().enumerate() {
        let median = r.mttr_hours.median.unwrap_or(0.0);
        let p90 = r.mttr_hours.p90.unwrap_or(median);
        let colour_index = quarters.iter().position(|q| *q == r.quarter).unwrap_or(0);
        bars.push(MttrBar {
            y: 10.0 + i as f64 * MTTR_ROW,
            label: format!("{} · {}", r.team, r.quarter),
            width: (x(median) - LABEL_WIDTH).max(1.0),
            p90_x: x(p90),
            colour: PALETTE[colour_index % PALETTE.len()],
            value: format!(
                "{} (p90 {}, n={})",
                duration_words(median),
                duration_words(p90),
                r.mttr_hours.episodes
            ),
            value_x: x(p90) + 6.0,
            starts_team: last_team.is_some_and(|t| t != r.team),
        });
        last_team = Some(&r.team);
    }
    let axis_y = 10.0 + rows.len() as f64 * MTTR_ROW + 4.0;
    let ticks = (0..)
        .map(|n| n as f64 * step)
        .take_while(|v| *v <= top + step / 2.0)
        .map(|v| Tick {
            x: x(v),
            label: if unit == 1.0 {
                format!("{v:.0} h")
            } else {
                format!("{} d", v / 24.0)
            },
        })
        .collect();
    MttrChart {
        height: axis_y + 30.0,
        axis_y,
        ticks,
        summary: if rows.is_empty() {
            "No rotation ended in this range.".to_string()
        } else {
            rows.iter()
                .map(|r| {
                    format!(
                        "{} in {}: median {}",
                        r.team,
                        r.quarter,
                        duration_words(r.mttr_hours.median.unwrap_or(0.0))
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
        bars,
    }
}

/// The quarter after `quarter` ("2026-Q4" → "2027-Q1").
fn next_quarter(quarter: &str) -> Option<String> {
    let (year, q) = quarter.split_once("-Q")?;
    let (year, q): (i32, u32) = (year.parse().ok()?, q.parse().ok()?);
    Some(if q >= 4 {
        format!("{}-Q1", year + 1)
    } else {
        format!("{year}-Q{}", q + 1)
    })
}

/// The most quarters the incident chart shows: the latest ones.
const MAX_QUARTERS: usize = 12;

fn incident_chart(report: &Report) -> IncidentChart {
    // Every quarter of the range, those without incidents as zero: a quarter without data is
    // a quarter without incidents. Without a start, from the first quarter with data, and at
    // least the year up to the range's end.
    let end = report
        .until
        .checked_sub_signed(chrono::Duration::seconds(1))
        .unwrap_or(report.until);
    let last = quarter_of(end);
    let year_before = quarter_of(
        end.with_day(1)
            .and_then(|d| d.checked_sub_months(chrono::Months::new(9)))
            .unwrap_or(end),
    );
    let first = match report.since {
        Some(since) => quarter_of(since),
        None => report
            .quarters
            .first()
            .map(|q| q.quarter.clone())
            .filter(|q| *q < year_before)
            .unwrap_or(year_before),
    };
    let mut quarters = vec![first.clone()];
    while quarters.last().is_some_and(|q| *q < last) {
        match quarters.last().and_then(|q| next_quarter(q)) {
            Some(next) => quarters.push(next),
            None => break,
        }
    }
    let mut left_out = 0;
    if quarters.len() > MAX_QUARTERS {
        let earlier: Vec<String> = quarters.drain(..quarters.len() - MAX_QUARTERS).collect();
        left_out = report
            .quarters
            .iter()
            .filter(|q| earlier.contains(&q.quarter))
            .map(|q| q.incidents)
            .sum();
    }
    let counts: Vec<usize> = quarters
        .iter()
        .map(|q| {
            report
                .quarters
                .iter()
                .find(|r| &r.quarter == q)
                .map_or(0, |r| r.incidents)
        })
        .collect();
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let (plot_height, base_y) = (150.0, 180.0);
    let slot = (WIDTH - 40.0) / quarters.len() as f64;
    let width = (slot * 0.6).min(60.0);
    let columns = quarters
        .iter()
        .zip(&counts)
        .enumerate()
        .map(|(i, (q, n))| {
            let height = plot_height * *n as f64 / max;
            let x = 20.0 + i as f64 * slot + (slot - width) / 2.0;
            Column {
                x,
                // A zero still shows: a hairline on the base, labelled 0.
                y: base_y - height.max(1.5),
                width,
                height: height.max(1.5),
                label: q.clone(),
                value: *n,
                label_x: x + width / 2.0,
            }
        })
        .collect();
    IncidentChart {
        height: base_y + 30.0,
        base_y,
        columns,
        summary: quarters
            .iter()
            .zip(&counts)
            .map(|(q, n)| format!("{q}: {n}"))
            .collect::<Vec<_>>()
            .join("; "),
        left_out,
    }
}

const TIMELINE_ROW: f64 = 30.0;
const TIMELINE_DAYS: f64 = 90.0;

fn timeline(report: &Report) -> Timeline {
    // The policy's escalation steps within the 90 days shown: the dashed rules, and the
    // colours (past the last step, past the first, later).
    let mut steps: Vec<u32> = report
        .policy
        .escalation
        .iter()
        .map(|s| s.days_left)
        .filter(|d| f64::from(*d) <= TIMELINE_DAYS)
        .collect();
    steps.sort_unstable();
    let last_step = steps.first().map_or(0, |d| i64::from(*d));
    let first_step = steps.last().map_or(0, |d| i64::from(*d));
    let mut teams: Vec<&str> = report
        .upcoming_expiries
        .iter()
        .map(|u| u.team.as_str())
        .collect();
    teams.sort_unstable();
    teams.dedup();
    let plot = WIDTH - LABEL_WIDTH - RIGHT_MARGIN;
    let x = |days: f64| LABEL_WIDTH + plot * days.clamp(0.0, TIMELINE_DAYS) / TIMELINE_DAYS;
    let row_y = |i: usize| 20.0 + i as f64 * TIMELINE_ROW;
    // One marker per team and day: its number says how many certificates it stands for.
    let mut groups: std::collections::BTreeMap<(usize, i64), Vec<&super::UpcomingExpiry>> =
        std::collections::BTreeMap::new();
    for u in &report.upcoming_expiries {
        let row = teams.iter().position(|t| *t == u.team).unwrap_or(0);
        groups.entry((row, u.days_left)).or_default().push(u);
    }
    let markers = groups
        .into_iter()
        .map(|((row, days), certs)| Marker {
            x: x(days as f64),
            y: row_y(row),
            count: certs.len(),
            colour: match days {
                d if d < last_step => VERMILLION,
                d if d < first_step => ORANGE,
                _ => BLUE,
            },
            title: format!(
                "{} in {days} days ({}): {}",
                certs[0].team,
                day(certs[0].not_after),
                certs
                    .iter()
                    .map(|c| c.certificate.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
        .collect();
    let axis_y = row_y(teams.len().max(1)) - TIMELINE_ROW / 2.0 + 4.0;
    Timeline {
        height: axis_y + 30.0,
        axis_y,
        last_step,
        first_step,
        rows: teams
            .iter()
            .enumerate()
            .map(|(i, t)| TimelineRow {
                y: row_y(i),
                team: t.to_string(),
            })
            .collect(),
        markers,
        rules: steps
            .iter()
            .map(|d| Tick {
                x: x(f64::from(*d)),
                label: format!("{d} d"),
            })
            .collect(),
        ticks: [0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0]
            .iter()
            .map(|d| Tick {
                x: x(*d),
                label: format!("{d}"),
            })
            .collect(),
        summary: if report.upcoming_expiries.is_empty() {
            "No certificate in use expires in the next 90 days.".to_string()
        } else {
            format!(
                "{} certificate(s) in use expire in the next 90 days, the first in {} days.",
                report.upcoming_expiries.len(),
                report.upcoming_expiries[0].days_left
            )
        },
    }
}

fn coverage(report: &Report) -> Option<Coverage> {
    let k = &report.kpis;
    let percent = k.owner_coverage_percent?;
    let owned = (percent / 100.0 * k.certificates_in_use as f64).round() as usize;
    let unowned = k.certificates_in_use - owned.min(k.certificates_in_use);
    let plot = WIDTH - 40.0;
    Some(Coverage {
        owned_width: plot * percent / 100.0,
        unowned_width: plot * (100.0 - percent) / 100.0,
        owned_label: format!("owner known: {owned} ({percent:.1} %)"),
        unowned_label: format!("no owner tag: {unowned}"),
        summary: format!(
            "{owned} of {} certificates in use have an owner from tags ({percent:.1} %).",
            k.certificates_in_use
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::lifecycle::{Policy, Seen, StageFate, decide};
    use crate::report::{ReportBuilder, ReportOptions};
    use crate::test_support::{at, cert, present, stage, user};

    /// A certificate of a team named like an attack, observed in the window and again after
    /// its stage moved away, plus one in use near expiry.
    fn page_of(team: &str) -> String {
        let policy = Policy::default();
        let first = decide(
            None,
            &present("c1", 50.0, 100.0, vec![user("s1", Some(team), None)]),
            &policy,
            at(50.0),
        );
        let mut switched = present("c1", 53.0, 100.0, vec![]);
        if let Seen::Present { departed, .. } = &mut switched.seen {
            departed.insert(
                stage("s1"),
                StageFate::SwitchedTo {
                    certificate: cert("c3"),
                    certificate_created_at: Some(at(52.9)),
                    certificate_not_after: Some(at(500.0)),
                },
            );
        }
        let moved = decide(Some(&first.record), &switched, &policy, at(53.0));
        let soon = decide(
            None,
            &present("c2", 53.0, 60.0, vec![user("s2", Some(team), None)]),
            &policy,
            at(53.0),
        );
        let mut b = ReportBuilder::new(ReportOptions {
            since: None,
            until: None,
            team: None,
            now: at(54.0),
            policy: crate::lifecycle::Policy::default(),
        });
        b.add(&moved.record);
        b.add(&soon.record);
        html(&b.finish()).unwrap()
    }

    #[test]
    fn every_chart_is_drawn_and_names_from_tags_are_escaped() {
        let page = page_of("<script>alert(1)</script>");
        for chart in ["mttr", "timeline", "incidents", "coverage"] {
            assert!(
                page.contains(&format!("data-chart=\"{chart}\"")),
                "{chart} missing"
            );
        }
        assert!(!page.contains("<script"), "a tag value became markup");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "nothing loaded from elsewhere"
        );
        // One rotation bar (a big-bang one, listed), one expiry marker, the year up to `now`
        // (2025-Q2 to 2026-Q1) a column per quarter, and the owned share.
        assert_eq!(page.matches("<g class=\"mark\">").count(), 1 + 1 + 4 + 1);
        assert!(page.contains(">2025-Q2</text>") && !page.contains(">2025-Q1</text>"));
        assert!(
            page.contains("<td class=\"n\">2 h</td>"),
            "the big-bang row"
        );
    }

    #[test]
    fn axes_end_on_a_round_number_at_or_above_the_largest_value() {
        assert_eq!(nice_axis(93.0), (100.0, 20.0));
        assert_eq!(nice_axis(0.0), (1.0, 0.2));
        assert_eq!(nice_axis(1234.0), (1250.0, 250.0));
    }

    #[test]
    fn quarters_follow_each_other_across_a_year_end() {
        assert_eq!(next_quarter("2026-Q3").as_deref(), Some("2026-Q4"));
        assert_eq!(next_quarter("2026-Q4").as_deref(), Some("2027-Q1"));
    }

    #[test]
    fn durations_read_in_hours_then_days() {
        assert_eq!(duration_words(36.0), "36 h");
        assert_eq!(duration_words(108.0), "4.5 d");
    }
}
