//! `--schedule` validation: a standard 5-field cron expression or a
//! descriptor (`@daily`, `@every 1h30m`, ...), as robfig/cron's
//! `ParseStandard` accepts.

/// Check a cron expression; the error says what is wrong.
pub fn check(expr: &str) -> Result<(), String> {
    let expr = expr.trim();
    if let Some(d) = expr.strip_prefix('@') {
        if let Some(every) = d.strip_prefix("every ") {
            return check_every(every.trim());
        }
        return match d {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ => Err(format!("unrecognized descriptor: @{d}")),
        };
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {expr}",
            fields.len()
        ));
    }
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    check_field(fields[0], 0, 59, &[], 0)?;
    check_field(fields[1], 0, 23, &[], 0)?;
    check_field(fields[2], 1, 31, &[], 0)?;
    check_field(fields[3], 1, 12, &MONTHS, 1)?;
    check_field(fields[4], 0, 6, &DAYS, 0)?;
    Ok(())
}

fn check_every(d: &str) -> Result<(), String> {
    // Go duration: one or more <number><unit>.
    let mut rest = d;
    if rest.is_empty() {
        return Err("failed to parse duration @every: empty".to_string());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return Err(format!("failed to parse duration @every {d}"));
        }
        rest = &rest[num_end..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u))
            .ok_or_else(|| format!("failed to parse duration @every {d}"))?;
        rest = &rest[unit.len()..];
    }
    Ok(())
}

fn value(s: &str, min: u32, max: u32, names: &[&str], name_base: u32) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + name_base);
    }
    let v: u32 = s
        .parse()
        .map_err(|_| format!("failed to parse int from {s}"))?;
    if v < min || v > max {
        return Err(format!("{v} out of range [{min}, {max}]: {s}"));
    }
    Ok(v)
}

fn check_field(
    field: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_base: u32,
) -> Result<(), String> {
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        if let Some(step) = step {
            let n: u32 = step
                .parse()
                .map_err(|_| format!("failed to parse int from {step}"))?;
            if n == 0 {
                return Err(format!("step of range should be a positive number: {part}"));
            }
        }
        if range == "*" || range == "?" {
            continue;
        }
        match range.split_once('-') {
            Some((lo, hi)) => {
                let lo = value(lo, min, max, names, name_base)?;
                let hi = value(hi, min, max, names, name_base)?;
                if lo > hi {
                    return Err(format!(
                        "beginning of range ({lo}) beyond end of range ({hi}): {part}"
                    ));
                }
            }
            None => {
                value(range, min, max, names, name_base)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_standard_expressions() {
        for e in [
            "*/1 * * * *",
            "0 0 1 jan mon",
            "5,10-20/5 * * * 0-6",
            "@daily",
            "@every 1h30m",
        ] {
            assert!(check(e).is_ok(), "{e}");
        }
    }

    #[test]
    fn rejects_bad_expressions() {
        for e in [
            "* * * *",
            "60 * * * *",
            "* * * * * *",
            "@sometimes",
            "@every x",
            "*/0 * * * *",
        ] {
            assert!(check(e).is_err(), "{e}");
        }
    }
}
