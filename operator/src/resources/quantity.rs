//! Exact arithmetic on Kubernetes quantities, for budgets and for comparing what the API server canonicalised.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::api::ResourceList;

/// A quantity in thousandths (the API server's finest precision), so sums and comparisons are exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Milli(pub i128);

/// Parses a quantity as the API server does (`500m`, `2`, `1.5Gi`, `1e3`), rounding up to a thousandth.
pub fn parse(q: &str) -> Option<Milli> {
    let s = q.trim();
    let (sign, s) = match s.as_bytes().first()? {
        b'-' => (-1, &s[1..]),
        b'+' => (1, &s[1..]),
        _ => (1, s),
    };
    let num_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return None;
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    // value = digits * 10^exp10 * 2^exp2, kept as an integer mantissa and a decimal exponent.
    let digits = format!("{int_part}{frac_part}");
    let mut mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    let mut exp10: i32 = -(frac_part.len() as i32);
    let mut exp2: u32 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        e if e.starts_with(['e', 'E']) => exp10 += e[1..].parse::<i32>().ok()?,
        _ => return None,
    }
    mantissa = mantissa.checked_mul(1i128 << exp2)?;
    // to thousandths, rounding up like the API server does
    let shift = exp10 + 3;
    let value = if shift >= 0 {
        mantissa.checked_mul(10i128.checked_pow(shift as u32)?)?
    } else {
        let div = 10i128.checked_pow((-shift) as u32)?;
        (mantissa + div - 1) / div
    };
    Some(Milli(sign * value))
}

/// Formats thousandths the short way: `64`, `500m`, `32Gi`.
pub fn format(m: Milli) -> String {
    let v = m.0;
    if v % 1000 != 0 {
        return format!("{v}m");
    }
    let units = v / 1000;
    for (shift, suffix) in [(40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] {
        let unit = 1i128 << shift;
        if units != 0 && units % unit == 0 {
            return format!("{}{suffix}", units / unit);
        }
    }
    units.to_string()
}

/// Whether two quantity strings mean the same amount (`1Gi` and `1024Mi`).
pub fn same(a: &str, b: &str) -> bool {
    a == b || matches!((parse(a), parse(b)), (Some(x), Some(y)) if x == y)
}

/// A resource list in thousandths; unparseable values are dropped (the schema refuses them at admission).
pub fn to_milli(list: &ResourceList) -> BTreeMap<String, Milli> {
    list.iter().filter_map(|(k, v)| parse(&v.0).map(|m| (k.clone(), m))).collect()
}

pub fn to_list(list: &BTreeMap<String, Milli>) -> ResourceList {
    list.iter().map(|(k, v)| (k.clone(), Quantity(format(*v)))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_the_api_server() {
        assert_eq!(parse("500m"), Some(Milli(500)));
        assert_eq!(parse("2"), Some(Milli(2000)));
        assert_eq!(parse("1.5"), Some(Milli(1500)));
        assert_eq!(parse("1Ki"), Some(Milli(1024 * 1000)));
        assert_eq!(parse("1.5Gi"), Some(Milli(1536 * 1024 * 1024 * 1000)));
        assert_eq!(parse("1e3"), Some(Milli(1_000_000)));
        assert_eq!(parse("1k"), Some(Milli(1_000_000)));
        assert_eq!(parse("0.1m"), Some(Milli(1)), "rounds up to a thousandth");
        assert_eq!(parse("-1"), Some(Milli(-1000)));
        assert_eq!(parse("+.5"), Some(Milli(500)));
        for bad in ["", "abc", "1.5.5", "1x", ".", "1Gb", "--1"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_compactly_and_round_trips() {
        for (m, s) in [(500, "500m"), (64_000, "64"), (32 * (1 << 30) * 1000, "32Gi"), (0, "0"), (1_000_000, "1000")] {
            assert_eq!(format(Milli(m)), s);
            assert_eq!(parse(s), Some(Milli(m)));
        }
    }

    #[test]
    fn same_compares_amounts() {
        assert!(same("1Gi", "1024Mi"));
        assert!(same("0.5", "500m"));
        assert!(!same("1", "2"));
        assert!(!same("abc", "abd"));
    }
}
