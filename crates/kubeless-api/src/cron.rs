//! Cron schedules of CronJobTriggers, parsed like Kubeless does it
//! (robfig/cron `ParseStandard`), and their next firing time.
//!
//! Accepted forms:
//! - five fields `minute hour day-of-month month day-of-week`, each a list
//!   of `*`, `?` (same as `*`), `N`, `N-M`, optionally with `/step`
//!   (`N/step` means `N-max/step`); months `JAN`-`DEC` and weekdays
//!   `SUN`-`SAT` by name (any case); weekday `7` is also Sunday;
//! - descriptors `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//!   `@midnight`, `@hourly`;
//! - `@every <duration>` with a Go duration (`30s`, `1m30s`, `2h`, `1.5h`),
//!   rounded down to whole seconds with a minimum of one second, as robfig
//!   does.
//!
//! Times are unix seconds in UTC. When both day-of-month and day-of-week
//! are restricted, a day matching either fires (the classic cron rule);
//! when one of them is `*` (without a step > 1) both must match.

use std::fmt;

/// Why a schedule could not be parsed. Messages follow robfig/cron.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("empty spec string")]
    Empty,
    #[error("expected exactly 5 fields, found {found}: [{fields}]")]
    FieldCount { found: usize, fields: String },
    #[error("{message} (in the {field} field)")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error("unrecognized descriptor: {descriptor}")]
    Descriptor { descriptor: String },
    #[error("failed to parse duration {spec}: {message}")]
    Duration { spec: String, message: String },
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    source: String,
    kind: ScheduleKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ScheduleKind {
    Every(u64),
    Fields(Fields),
}

/// Bit sets of allowed values per field.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    minutes: u64,
    hours: u64,
    dom: u64,
    months: u64,
    dow: u64,
    /// Day-of-month / day-of-week written as `*` or `?` (no step > 1).
    dom_star: bool,
    dow_star: bool,
}

struct Bounds {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl Schedule {
    /// Parse a schedule (see the module documentation for the syntax).
    pub fn parse(spec: &str) -> Result<Schedule, CronError> {
        let trimmed = spec.trim();
        if trimmed.is_empty() {
            return Err(CronError::Empty);
        }
        let kind = if let Some(descriptor) = trimmed.strip_prefix('@') {
            parse_descriptor(descriptor, trimmed)?
        } else {
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            if fields.len() != 5 {
                return Err(CronError::FieldCount {
                    found: fields.len(),
                    fields: fields.join(" "),
                });
            }
            ScheduleKind::Fields(parse_fields(&fields)?)
        };
        Ok(Schedule {
            source: spec.to_string(),
            kind,
        })
    }

    /// The text this schedule was parsed from.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The interval of an `@every` schedule, in seconds.
    pub fn every(&self) -> Option<u64> {
        match self.kind {
            ScheduleKind::Every(seconds) => Some(seconds),
            ScheduleKind::Fields(_) => None,
        }
    }

    /// The first firing time strictly after `t` (unix seconds, UTC).
    ///
    /// `@every d` fires at `t + d`. Field schedules fire at second 0 of a
    /// matching minute. `None` when nothing matches within five years
    /// (e.g. `0 0 30 2 *`) or the result would overflow.
    pub fn next_after(&self, t: i64) -> Option<i64> {
        match &self.kind {
            ScheduleKind::Every(seconds) => t.checked_add(i64::try_from(*seconds).ok()?),
            ScheduleKind::Fields(fields) => fields.next_after(t),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Schedule {
    type Err = CronError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

fn parse_descriptor(descriptor: &str, spec: &str) -> Result<ScheduleKind, CronError> {
    let fields = match descriptor {
        "yearly" | "annually" => "0 0 1 1 *",
        "monthly" => "0 0 1 * *",
        "weekly" => "0 0 * * 0",
        "daily" | "midnight" => "0 0 * * *",
        "hourly" => "0 * * * *",
        _ => {
            let Some(duration) = descriptor.strip_prefix("every ") else {
                return Err(CronError::Descriptor {
                    descriptor: spec.to_string(),
                });
            };
            let nanos =
                parse_go_duration(duration.trim()).map_err(|message| CronError::Duration {
                    spec: spec.to_string(),
                    message,
                })?;
            return Ok(ScheduleKind::Every((nanos / 1_000_000_000).max(1)));
        }
    };
    let fields: Vec<&str> = fields.split(' ').collect();
    Ok(ScheduleKind::Fields(parse_fields(&fields)?))
}

/// Parse a Go duration (`time.ParseDuration`) into nanoseconds. Negative
/// and zero durations are refused: they cannot describe an interval.
fn parse_go_duration(s: &str) -> Result<u64, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let body = s.strip_prefix('+').unwrap_or(s);
    if body.starts_with('-') {
        return Err(format!("duration {s:?} must be positive"));
    }
    if body == "0" {
        return Err(format!("duration {s:?} must be positive"));
    }
    if body.is_empty() {
        return Err(invalid());
    }
    let mut rest = body;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after.len());
                after.split_at(len)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            _ => return Err(format!("time: unknown unit {unit:?} in duration {s:?}")),
        };
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| invalid())?
        };
        let mut part = whole.checked_mul(scale).ok_or_else(invalid)?;
        // Fractions beyond nanosecond precision cannot matter; keep 20 digits.
        let frac = &frac[..frac.len().min(20)];
        if !frac.is_empty() {
            let digits: u128 = frac.parse().map_err(|_| invalid())?;
            part += digits * scale / 10_u128.pow(frac.len() as u32);
        }
        total = total.checked_add(part).ok_or_else(invalid)?;
        rest = after;
    }
    if total == 0 {
        return Err(format!("duration {s:?} must be positive"));
    }
    // Go durations are int64 nanoseconds.
    u64::try_from(total)
        .ok()
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(invalid)
}

fn parse_fields(fields: &[&str]) -> Result<Fields, CronError> {
    let (minutes, _) = parse_field(fields[0], &MINUTES)?;
    let (hours, _) = parse_field(fields[1], &HOURS)?;
    let (dom, dom_star) = parse_field(fields[2], &DOM)?;
    let (months, _) = parse_field(fields[3], &MONTHS)?;
    let (mut dow, dow_star) = parse_field(fields[4], &DOW)?;
    // 7 is Sunday too.
    if dow & (1 << 7) != 0 {
        dow = (dow & !(1 << 7)) | 1;
    }
    Ok(Fields {
        minutes,
        hours,
        dom,
        months,
        dow,
        dom_star,
        dow_star,
    })
}

/// A comma-separated list of ranges: the bit set and whether it counts as
/// a star for the day-of-month/day-of-week rule.
fn parse_field(field: &str, bounds: &Bounds) -> Result<(u64, bool), CronError> {
    let mut bits = 0_u64;
    let mut star = false;
    for expr in field.split(',') {
        let (range_bits, range_star) =
            parse_range(expr, bounds).map_err(|message| CronError::Field {
                field: bounds.name,
                message,
            })?;
        bits |= range_bits;
        star |= range_star;
    }
    Ok((bits, star))
}

fn parse_range(expr: &str, bounds: &Bounds) -> Result<(u64, bool), String> {
    if expr.is_empty() {
        return Err("empty list element".to_string());
    }
    let mut range_and_step = expr.split('/');
    let range = range_and_step.next().unwrap_or_default();
    let step = range_and_step.next();
    if range_and_step.next().is_some() {
        return Err(format!("too many slashes: {expr}"));
    }
    let mut low_and_high = range.split('-');
    let low = low_and_high.next().unwrap_or_default();
    let high = low_and_high.next();
    if low_and_high.next().is_some() {
        return Err(format!("too many hyphens: {expr}"));
    }
    let (start, mut end, mut star) = if low == "*" || low == "?" {
        if high.is_some() {
            return Err(format!("a wildcard cannot start a range: {expr}"));
        }
        // Weekday 7 only exists as an alias; `*` means 0-6.
        let max = if bounds.name == DOW.name {
            6
        } else {
            bounds.max
        };
        (bounds.min, max, true)
    } else {
        let start = parse_value(low, bounds)?;
        let end = match high {
            Some(high) => parse_value(high, bounds)?,
            None => start,
        };
        (start, end, false)
    };
    let step = match step {
        None => 1,
        Some(step) => {
            let step: u32 = step
                .parse()
                .map_err(|_| format!("failed to parse int from {step}"))?;
            if step == 0 {
                return Err(format!("step of range should be a positive number: {expr}"));
            }
            if high.is_none() && !star {
                end = bounds.max;
            }
            if step > 1 {
                star = false;
            }
            step
        }
    };
    if start < bounds.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            bounds.min
        ));
    }
    if end > bounds.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            bounds.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    let mut bits = 0_u64;
    let mut value = start;
    while value <= end {
        bits |= 1 << value;
        value += step;
    }
    Ok((bits, star))
}

fn parse_value(s: &str, bounds: &Bounds) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(index) = bounds.names.iter().position(|name| *name == lower) {
        // Month names count from 1, weekday names from 0.
        return Ok(index as u32 + bounds.min);
    }
    s.parse::<u32>()
        .map_err(|_| format!("failed to parse int from {s}"))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Date of a day count since 1970-01-01: (year, month 1-12, day 1-31).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

const DAY: i64 = 86_400;

impl Fields {
    fn day_matches(&self, days: i64, day_of_month: u32) -> bool {
        let weekday = (days + 4).rem_euclid(7); // 1970-01-01 was a Thursday.
        let dom = self.dom & (1 << day_of_month) != 0;
        let dow = self.dow & (1 << weekday) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    fn next_after(&self, t: i64) -> Option<i64> {
        // First whole minute strictly after t.
        let mut ts = t.div_euclid(60).checked_add(1)?.checked_mul(60)?;
        let (start_year, _, _) = civil_from_days(ts.div_euclid(DAY));
        loop {
            let days = ts.div_euclid(DAY);
            let (year, month, day) = civil_from_days(days);
            if year > start_year + 5 {
                return None;
            }
            if self.months & (1 << month) == 0 {
                let (y, m) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                ts = days_from_civil(y, m, 1) * DAY;
                continue;
            }
            if !self.day_matches(days, day) {
                ts = (days + 1) * DAY;
                continue;
            }
            let second_of_day = ts - days * DAY;
            let hour = second_of_day / 3600;
            if self.hours & (1 << hour) == 0 {
                ts = days * DAY + (hour + 1) * 3600;
                continue;
            }
            let minute = (second_of_day % 3600) / 60;
            if self.minutes & (1 << minute) == 0 {
                ts += 60;
                continue;
            }
            return Some(ts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date-time.
    fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
        days_from_civil(y, mo, d) * DAY + h * 3600 + mi * 60
    }

    fn next(spec: &str, t: i64) -> i64 {
        Schedule::parse(spec).unwrap().next_after(t).unwrap()
    }

    #[test]
    fn civil_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(at(2021, 12, 10, 0, 0), 1_639_094_400);
        for days in [-800_000, -1, 0, 59, 60, 11_016, 19_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn every_minute_and_steps() {
        // 2021-12-10 10:17:30 UTC, a Friday.
        let t = at(2021, 12, 10, 10, 17) + 30;
        assert_eq!(next("* * * * *", t), at(2021, 12, 10, 10, 18));
        assert_eq!(
            next("* * * * *", at(2021, 12, 10, 10, 17)),
            at(2021, 12, 10, 10, 18)
        );
        assert_eq!(next("*/5 * * * *", t), at(2021, 12, 10, 10, 20));
        assert_eq!(next("5/20 * * * *", t), at(2021, 12, 10, 10, 25));
        assert_eq!(next("0 */6 * * *", t), at(2021, 12, 10, 12, 0));
        assert_eq!(next("15,45 9-17 * * *", t), at(2021, 12, 10, 10, 45));
        assert_eq!(next("0 0 * * *", t), at(2021, 12, 11, 0, 0));
    }

    #[test]
    fn names_descriptors_and_year_rollover() {
        let t = at(2021, 12, 10, 10, 17);
        assert_eq!(next("0 9 * JAN mon", t), at(2022, 1, 3, 9, 0));
        assert_eq!(next("@yearly", t), at(2022, 1, 1, 0, 0));
        assert_eq!(next("@annually", t), at(2022, 1, 1, 0, 0));
        assert_eq!(next("@monthly", t), at(2022, 1, 1, 0, 0));
        assert_eq!(next("@weekly", t), at(2021, 12, 12, 0, 0));
        assert_eq!(next("@daily", t), at(2021, 12, 11, 0, 0));
        assert_eq!(next("@midnight", t), at(2021, 12, 11, 0, 0));
        assert_eq!(next("@hourly", t), at(2021, 12, 10, 11, 0));
        assert_eq!(next("0 0 29 2 *", t), at(2024, 2, 29, 0, 0));
        assert_eq!(next("0 12 ? * 7", t), at(2021, 12, 12, 12, 0));
        assert_eq!(Schedule::parse("0 0 30 2 *").unwrap().next_after(t), None);
    }

    #[test]
    fn dom_dow_rule() {
        let t = at(2021, 12, 10, 10, 17); // Friday the 10th.
        // Both restricted: the 13th or any Saturday, whichever comes first.
        assert_eq!(next("0 0 13 * SAT", t), at(2021, 12, 11, 0, 0));
        assert_eq!(next("0 0 11 * MON", t), at(2021, 12, 11, 0, 0));
        // Day-of-week is *: only the day of month counts.
        assert_eq!(next("0 0 13 * *", t), at(2021, 12, 13, 0, 0));
        // Day-of-month is *: only the weekday counts.
        assert_eq!(next("0 0 * * MON", t), at(2021, 12, 13, 0, 0));
        // A stepped star is a restriction: either may match.
        assert_eq!(next("0 0 */10 * MON", t), at(2021, 12, 11, 0, 0));
    }

    #[test]
    fn every_durations() {
        let t = 1_639_131_420;
        assert_eq!(next("@every 30s", t), t + 30);
        assert_eq!(next("@every 1m30s", t), t + 90);
        assert_eq!(next("@every 2h", t), t + 7200);
        assert_eq!(next("@every 1.5h", t), t + 5400);
        assert_eq!(next("@every 500ms", t), t + 1);
        assert_eq!(next("@every 1500ms", t), t + 1);
        assert_eq!(Schedule::parse("@every 1h").unwrap().every(), Some(3600));
        for bad in [
            "@every",
            "@every 10",
            "@every 1x",
            "@every -1s",
            "@every 0s",
            "@every ",
            "@every 1.s.",
            "@every h",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_messages() {
        let msg = |s: &str| Schedule::parse(s).unwrap_err().to_string();
        assert_eq!(msg("* * *"), "expected exactly 5 fields, found 3: [* * *]");
        assert_eq!(
            msg("* * * * * *"),
            "expected exactly 5 fields, found 6: [* * * * * *]"
        );
        assert_eq!(msg(""), "empty spec string");
        assert_eq!(msg("@fortnightly"), "unrecognized descriptor: @fortnightly");
        assert_eq!(
            msg("60 * * * *"),
            "end of range (60) above maximum (59): 60 (in the minute field)"
        );
        assert_eq!(
            msg("* * 0 * *"),
            "beginning of range (0) below minimum (1): 0 (in the day-of-month field)"
        );
        assert_eq!(
            msg("* 5-2 * * *"),
            "beginning of range (5) beyond end of range (2): 5-2 (in the hour field)"
        );
        assert_eq!(
            msg("* * * FOO *"),
            "failed to parse int from FOO (in the month field)"
        );
        assert!(msg("*/0 * * * *").contains("step of range should be a positive number"));
        assert!(msg("1-2-3 * * * *").contains("too many hyphens"));
        assert!(msg("1/2/3 * * * *").contains("too many slashes"));
        assert!(msg("1,,2 * * * *").contains("empty list element"));
        assert!(msg("@every 1y").starts_with("failed to parse duration @every 1y: "));
    }
}
