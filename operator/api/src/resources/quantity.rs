//! Exact arithmetic on Kubernetes quantities, for budgets and for comparing what the API server canonicalised.
//!
//! The schema admits only quantities this module represents exactly (see `api::schema::quantity_map`): at most
//! [`MAX`] in base units, at the API server's finest precision (`1n`). Whatever slips past it (objects stored before
//! the schema tightened) is an error here, never a silent zero: a budget that counted an unreadable quantity as
//! nothing would grant it in full.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::ResourceList;

/// A quantity in billionths of its base unit (the API server's finest precision), so sums and comparisons are exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Amount(pub i128);

const NANO: i128 = 1_000_000_000;
/// The largest quantity the API admits in any of our fields, in base units: 10^18 (`1E`: 10^18 CPUs, 888 PiB of
/// memory). Far beyond any cluster, and small enough that sums over any number of projects stay exact.
pub const MAX: &str = "1E";
const MAX_UNITS: i128 = 1_000_000_000_000_000_000;

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub fn max(self, other: Amount) -> Amount {
        if self >= other { self } else { other }
    }
}

impl std::ops::Add for Amount {
    type Output = Amount;
    fn add(self, o: Amount) -> Amount {
        Amount(self.0 + o.0)
    }
}

impl std::ops::Sub for Amount {
    type Output = Amount;
    fn sub(self, o: Amount) -> Amount {
        Amount(self.0 - o.0)
    }
}

impl std::ops::AddAssign for Amount {
    fn add_assign(&mut self, o: Amount) {
        self.0 += o.0;
    }
}

impl std::ops::SubAssign for Amount {
    fn sub_assign(&mut self, o: Amount) {
        self.0 -= o.0;
    }
}

/// Why a quantity cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuantityError {
    /// Not a quantity at all.
    Syntax(String),
    /// A quantity, but beyond [`MAX`] (or negative).
    OutOfRange(String),
}

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantityError::Syntax(q) => write!(f, "{q:?} is not a quantity (examples: 500m, 2, 1.5, 4Gi, 1e3)"),
            QuantityError::OutOfRange(q) => write!(f, "{q:?} is out of range: quantities must be between 0 and {MAX}"),
        }
    }
}

/// Parses a quantity as the API server does (`500m`, `2`, `1.5Gi`, `1e3`), rounding up to a billionth like it.
/// Quantities beyond [`MAX`] and negative ones are refused: no field of ours takes them.
pub fn parse(q: &str) -> Result<Amount, QuantityError> {
    let syntax = || QuantityError::Syntax(q.to_owned());
    let range = || QuantityError::OutOfRange(q.to_owned());
    let s = q.trim();
    let (negative, s) = match s.as_bytes().first().ok_or_else(syntax)? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(syntax());
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    let (mut exp10, exp2) = suffix_exponents(suffix).ok_or_else(syntax)?;
    // value = digits * 10^(exp10 - frac) * 2^exp2, without leading zeros so long zero prefixes cost nothing.
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    exp10 -= frac_part.len() as i64;
    if digits.is_empty() {
        return Ok(Amount::ZERO);
    }
    if negative {
        return Err(range());
    }
    // The value's order of magnitude, to refuse the huge before any arithmetic and round the tiny up to 1n.
    let magnitude = digits.len() as i64 + exp10 + (f64::from(exp2) * std::f64::consts::LOG10_2).ceil() as i64;
    if magnitude > 20 {
        return Err(range());
    }
    if magnitude < -9 {
        return Ok(Amount(1));
    }
    // At most 20 significant digits matter above 1n once the magnitude is bounded; more would only round up.
    let (kept, dropped) = digits.split_at(digits.len().min(30));
    let mut mantissa: i128 = kept.parse().map_err(|_| syntax())?;
    exp10 += dropped.len() as i64;
    let round_up = dropped.bytes().any(|b| b != b'0');
    mantissa = mantissa.checked_mul(1i128 << exp2).ok_or_else(range)?;
    let shift = exp10 + 9; // to billionths
    let value = if shift >= 0 {
        mantissa.checked_mul(10i128.checked_pow(shift as u32).ok_or_else(range)?).ok_or_else(range)?
            + i128::from(round_up)
    } else {
        match 10i128.checked_pow((-shift) as u32) {
            Some(div) => (mantissa + div - 1) / div + i128::from(round_up && mantissa % div == 0),
            // A divisor past i128 is past any mantissa we keep: less than a billionth, rounded up.
            None => 1,
        }
    };
    if value > MAX_UNITS * NANO {
        return Err(range());
    }
    Ok(Amount(value))
}

/// The powers of ten and two a suffix stands for: SI (`k` … `E`, `m` … `n`), binary (`Ki` … `Ei`), or a decimal
/// exponent (`e3`, `E-2`); `None` for anything else.
fn suffix_exponents(suffix: &str) -> Option<(i64, u32)> {
    Some(match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        e if e.len() > 1 && e.starts_with(['e', 'E']) => {
            let exp = &e[1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Any exponent past a few dozen is out of range (or rounds to 1n) whatever the digits: no need to read it.
            let magnitude: i64 = if digits.len() > 6 { 1_000_000 } else { digits.parse().ok()? };
            (if exp.starts_with('-') { -magnitude } else { magnitude }, 0)
        }
        _ => return None,
    })
}

/// How a resource's amounts read best: memory and storage in bytes with binary suffixes, everything else (CPUs,
/// GPUs, counts) in decimal units.
fn is_bytes(resource: &str) -> bool {
    let name = resource.rsplit('/').next().unwrap_or(resource);
    ["memory", "storage", "hugepages-"].iter().any(|w| name.contains(w))
}

/// Formats an amount of `resource` the way a person writes it: `4`, `500m` for CPUs, `32Gi` for memory, `10` pods.
pub fn format_for(resource: &str, a: Amount) -> String {
    let v = a.0;
    if v % NANO != 0 {
        return if v % 1_000_000 == 0 { format!("{}m", v / 1_000_000) } else { format!("{v}n") };
    }
    let units = v / NANO;
    if is_bytes(resource) {
        for (shift, suffix) in [(60, "Ei"), (50, "Pi"), (40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] {
            let unit = 1i128 << shift;
            if units != 0 && units % unit == 0 {
                return format!("{}{suffix}", units / unit);
            }
        }
    }
    units.to_string()
}

/// Whether two quantity strings mean the same amount (`1Gi` and `1024Mi`).
pub fn same(a: &str, b: &str) -> bool {
    a == b || matches!((parse(a), parse(b)), (Ok(x), Ok(y)) if x == y)
}

/// A quantity that cannot be used, with the resource it was given for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidQuantity {
    pub resource: String,
    pub error: QuantityError,
}

impl fmt::Display for InvalidQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.resource, self.error)
    }
}

/// A resource list as amounts; the first quantity that cannot be used is the error.
pub fn amounts(list: &ResourceList) -> Result<BTreeMap<String, Amount>, InvalidQuantity> {
    list.iter()
        .map(|(k, v)| {
            parse(&v.0).map(|a| (k.clone(), a)).map_err(|error| InvalidQuantity { resource: k.clone(), error })
        })
        .collect()
}

/// Amounts back to a resource list, each in its resource's natural unit.
pub fn to_list(list: &BTreeMap<String, Amount>) -> ResourceList {
    list.iter().map(|(k, v)| (k.clone(), Quantity(format_for(k, *v)))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(units: i128) -> Amount {
        Amount(units * NANO)
    }

    #[test]
    fn parses_like_the_api_server() {
        assert_eq!(parse("500m"), Ok(Amount(500_000_000)));
        assert_eq!(parse("2"), Ok(n(2)));
        assert_eq!(parse("1.5"), Ok(Amount(1_500_000_000)));
        assert_eq!(parse("1Ki"), Ok(n(1024)));
        assert_eq!(parse("1.5Gi"), Ok(n(1536 * 1024 * 1024)));
        assert_eq!(parse("1e3"), Ok(n(1000)));
        assert_eq!(parse("1E3"), Ok(n(1000)));
        assert_eq!(parse("1e+3"), Ok(n(1000)));
        assert_eq!(parse("25e-1"), Ok(Amount(2_500_000_000)));
        assert_eq!(parse("1k"), Ok(n(1000)));
        assert_eq!(parse("1n"), Ok(Amount(1)));
        assert_eq!(parse("0.1n"), Ok(Amount(1)), "rounds up to a billionth");
        assert_eq!(parse("1e-40"), Ok(Amount(1)), "rounds up to a billionth");
        assert_eq!(parse("1.0000000001"), Ok(Amount(1_000_000_001)), "rounds up");
        assert_eq!(parse("+.5"), Ok(Amount(500_000_000)));
        assert_eq!(parse("0"), Ok(Amount::ZERO));
        assert_eq!(parse("-0"), Ok(Amount::ZERO));
        assert_eq!(parse("000000000000000000000000000000000000000042"), Ok(n(42)), "leading zeros are free");
        for bad in ["", "abc", "1.5.5", "1x", ".", "1Gb", "--1", "1e", "1e+", "1ex", "e3"] {
            assert!(matches!(parse(bad), Err(QuantityError::Syntax(_))), "{bad}: {:?}", parse(bad));
        }
    }

    #[test]
    fn the_bounds_are_exact_and_everything_beyond_is_refused() {
        assert_eq!(parse(MAX), Ok(n(MAX_UNITS)));
        assert_eq!(parse("1000000000000000000"), Ok(n(MAX_UNITS)));
        assert_eq!(parse("1000P"), Ok(n(MAX_UNITS)));
        for huge in [
            "1000000000000000001",
            "1.000000001E",
            "2E",
            "1Ei",
            "1e40",
            "1e999999999999",
            "999999999999999999999999999999999999999999",
            "100000000000000000000000000000000000000000000000000000000000000000000",
            "-1",
            "-500m",
        ] {
            assert!(matches!(parse(huge), Err(QuantityError::OutOfRange(_))), "{huge}: {:?}", parse(huge));
        }
    }

    #[test]
    fn formats_in_the_resource_s_unit_and_round_trips() {
        for (resource, a, s) in [
            ("requests.cpu", Amount(500_000_000), "500m"),
            ("requests.cpu", n(64), "64"),
            ("requests.cpu", n(1024), "1024"),
            ("requests.cpu", Amount(1), "1n"),
            ("requests.memory", n(32 << 30), "32Gi"),
            ("requests.memory", n(1000), "1000"),
            ("limits.ephemeral-storage", n(1 << 20), "1Mi"),
            ("requests.nvidia.com/gpu", n(2048), "2048"),
            ("pods", n(0), "0"),
            ("pods", n(MAX_UNITS), "1000000000000000000"),
        ] {
            assert_eq!(format_for(resource, a), s, "{resource}");
            assert_eq!(parse(s), Ok(a), "{s}");
        }
    }

    #[test]
    fn same_compares_amounts() {
        assert!(same("1Gi", "1024Mi"));
        assert!(same("0.5", "500m"));
        assert!(!same("1", "2"));
        assert!(!same("abc", "abd"));
    }

    #[test]
    fn a_list_with_an_unreadable_quantity_is_an_error_naming_it() {
        let list: ResourceList =
            [("pods".to_owned(), Quantity("10".into())), ("requests.cpu".into(), Quantity("1e40".into()))].into();
        let err = amounts(&list).unwrap_err();
        assert_eq!(err.resource, "requests.cpu");
        assert!(err.to_string().contains("between 0 and 1E"), "{err}");
    }
}
