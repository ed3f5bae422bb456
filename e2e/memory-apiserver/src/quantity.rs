//! One Kubernetes quantity in the form a real API server stores it.
//!
//! A real server decodes every quantity field of a built-in kind into apimachinery's
//! `resource.Quantity` and encodes it again, so what it stores is rarely what was sent. The
//! rules, from `k8s.io/apimachinery/pkg/api/resource` (`ParseQuantity`, `CanonicalizeBytes`,
//! `RoundUp` in quantity.go, the suffixes in suffix.go):
//!
//! - A quantity is a number with a suffix from one of three families: binary SI (`Ki` … `Ei`),
//!   decimal SI (`n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E`) or a decimal exponent
//!   (`e3`, `E-2`). Its value is exact, rounded up (away from zero) to a whole nano; a binary
//!   value is capped at 2^63-1.
//! - It is written in its own family with the largest suffix that needs no fraction: a
//!   decimal mantissa whose exponent is a multiple of three (`0.5` → `500m`, `1000m` → `1`,
//!   `1000` → `1k`), binary when the value is a whole number of at least 1024 (`1024Mi` →
//!   `1Gi`, `1.5Gi` → `1536Mi`), decimal SI otherwise (`0.1Gi` → `107374182400m`).
//! - Text the parser's fast path already finds canonical is kept as written, sign and leading
//!   zeros included (`+1` stays `+1`, `1E3` stays `1E3`).
//! - Entries of a `ResourceList` (container resources, claim sizes) are also rounded up to a
//!   whole milli (`SetDefaults_ResourceList`): `100u` becomes `1m`.

use std::cmp::Ordering;

/// How finely a field keeps a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Precision {
    /// A plain `Quantity` field (emptyDir `sizeLimit`, a `divisor`, an HPA target).
    Nano,
    /// An entry of a `ResourceList`, rounded up to a milli on the way in.
    Milli,
}

/// Why a quantity has no canonical form here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// Not a quantity: a real API server refuses the object with this message.
    Malformed(&'static str),
    /// A quantity beyond what this stand-in represents (more than 38 significant digits, an
    /// exponent beyond 32 bits, a decimal SI value past `E`): it is stored as written.
    OutOfRange,
}

const FORMAT_WRONG: Unusable = Unusable::Malformed(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
);
const BAD_SUFFIX: Unusable = Unusable::Malformed("unable to parse quantity's suffix");

/// The text a real API server stores for the quantity `text` in a field of `precision`.
pub(crate) fn canonical(text: &str, precision: Precision) -> Result<String, Unusable> {
    // `Quantity.UnmarshalJSON` trims surrounding whitespace before parsing.
    let text = text.trim();
    let mut quantity = parse(text)?;
    if precision == Precision::Milli {
        let rounded = quantity.value.rounded_up(-3)?;
        if rounded != quantity.value {
            quantity.value = rounded;
            quantity.kept = false;
        }
    }
    if quantity.kept {
        return Ok(text.to_string());
    }
    quantity.format()
}

/// The three ways of writing a quantity; a quantity is written again in the family it was
/// read in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    BinarySi,
    DecimalSi,
    DecimalExponent,
}

/// An exact value, `±mantissa × 10^exponent`, with no factor of ten left in the mantissa.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    mantissa: u128,
    exponent: i32,
}

#[derive(Debug)]
struct Quantity {
    value: Decimal,
    family: Family,
    /// Whether apimachinery keeps the text as written (its fast path found it canonical).
    kept: bool,
}

fn parse(text: &str) -> Result<Quantity, Unusable> {
    if text.is_empty() {
        return Err(FORMAT_WRONG);
    }
    if text == "0" {
        return Ok(Quantity {
            value: Decimal::ZERO,
            family: Family::DecimalSi,
            kept: true,
        });
    }
    let (negative, unsigned) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (integer, rest) = split_digits(unsigned);
    let (fraction, suffix) = match rest.strip_prefix('.') {
        Some(after) => split_digits(after),
        None => ("", rest),
    };
    check_suffix_shape(suffix)?;
    let (base, exponent, family) = interpret(suffix)?;

    // Go strips leading zeros from the integer part and calls an empty one "0".
    let integer = match integer.trim_start_matches('0') {
        "" => "0",
        digits => digits,
    };
    let fraction_len = i32::try_from(fraction.len()).map_err(|_| Unusable::OutOfRange)?;
    let digits = format!("{integer}{fraction}");
    let value = match base {
        Base::Ten => {
            let exponent = exponent
                .checked_sub(fraction_len)
                .ok_or(Unusable::OutOfRange)?;
            Decimal::from_digits(negative, &digits, exponent)?
        }
        Base::Two => {
            Decimal::from_digits(negative, &digits, -fraction_len)?.times_power_of_two(exponent)?
        }
    };
    let mut value = value.rounded_up(-9)?;
    if family == Family::BinarySi && value.cmp_magnitude(&Decimal::I64_MAX) == Ordering::Greater {
        value = Decimal {
            negative,
            ..Decimal::I64_MAX
        };
    }
    let kept = fast_path_keeps(family, integer, fraction, exponent);
    Ok(Quantity {
        value,
        family,
        kept,
    })
}

/// Splits `text` after its leading ASCII digits.
fn split_digits(text: &str) -> (&str, &str) {
    text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    )
}

/// A suffix is letters of `eEinumkKMGTP`, then an optional sign, then digits.
fn check_suffix_shape(suffix: &str) -> Result<(), Unusable> {
    let numeric = suffix.trim_start_matches(|c: char| "eEinumkKMGTP".contains(c));
    let digits = numeric.strip_prefix(['+', '-']).unwrap_or(numeric);
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(FORMAT_WRONG)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Base {
    Two,
    Ten,
}

/// The base, exponent and family a suffix stands for (suffix.go).
fn interpret(suffix: &str) -> Result<(Base, i32, Family), Unusable> {
    let decimal = |exponent| Ok((Base::Ten, exponent, Family::DecimalSi));
    let binary = |exponent| Ok((Base::Two, exponent, Family::BinarySi));
    match suffix {
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "" => decimal(0),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let exponent = suffix
                .strip_prefix(['e', 'E'])
                .filter(|digits| !digits.is_empty())
                .ok_or(BAD_SUFFIX)?
                .parse::<i64>()
                .map_err(|_| BAD_SUFFIX)?;
            // Go converts the exponent to 32 bits without a check; this stand-in refuses to
            // guess what the wrapped value means.
            let exponent = i32::try_from(exponent).map_err(|_| Unusable::OutOfRange)?;
            Ok((Base::Ten, exponent, Family::DecimalExponent))
        }
    }
}

/// Whether `ParseQuantity` keeps the text as written: its fast path (an int64 mantissa,
/// nothing below a nano) remembers the text when it is already in canonical form.
fn fast_path_keeps(family: Family, integer: &str, fraction: &str, exponent: i32) -> bool {
    const MAX_INT64_FACTORS: usize = 18;
    match family {
        Family::DecimalSi | Family::DecimalExponent => {
            let shifted = format!("{integer}{fraction}");
            let scale = i64::from(exponent) - fraction.len() as i64;
            shifted.len() <= MAX_INT64_FACTORS
                && scale >= -9
                && scale % 3 == 0
                && !shifted.ends_with("000")
                && !shifted.starts_with('0')
        }
        Family::BinarySi => {
            // Go's precision estimate for a binary suffix: 15 digits, less those of the
            // number and about 0.3 per power of two.
            let precision = 15 - integer.len() as i64 - i64::from(exponent) * 3 / 10 - 1;
            let Ok(number) = integer.parse::<i64>() else {
                return false;
            };
            fraction.is_empty()
                && precision >= 0
                && number.checked_mul(1_i64 << exponent).is_some()
                && number & 0x07 != 0
        }
    }
}

impl Decimal {
    const ZERO: Self = Self {
        negative: false,
        mantissa: 0,
        exponent: 0,
    };

    /// 2^63-1, the largest value a binary quantity keeps.
    const I64_MAX: Self = Self {
        negative: false,
        mantissa: i64::MAX as u128,
        exponent: 0,
    };

    /// `±digits × 10^exponent`.
    fn from_digits(negative: bool, digits: &str, exponent: i32) -> Result<Self, Unusable> {
        let significant = digits.trim_start_matches('0');
        let mantissa_digits = significant.trim_end_matches('0');
        if mantissa_digits.is_empty() {
            return Ok(Self::ZERO);
        }
        let trailing_zeros = i32::try_from(significant.len() - mantissa_digits.len())
            .map_err(|_| Unusable::OutOfRange)?;
        let mantissa = mantissa_digits
            .parse::<u128>()
            .map_err(|_| Unusable::OutOfRange)?;
        let exponent = exponent
            .checked_add(trailing_zeros)
            .ok_or(Unusable::OutOfRange)?;
        Ok(Self {
            negative,
            mantissa,
            exponent,
        })
    }

    fn times_power_of_two(self, power: i32) -> Result<Self, Unusable> {
        let factor = 1_u128
            .checked_shl(power.unsigned_abs())
            .ok_or(Unusable::OutOfRange)?;
        let mantissa = self
            .mantissa
            .checked_mul(factor)
            .ok_or(Unusable::OutOfRange)?;
        Ok(Self { mantissa, ..self }.normalized())
    }

    /// Moves factors of ten from the mantissa into the exponent.
    fn normalized(mut self) -> Self {
        if self.mantissa == 0 {
            return Self::ZERO;
        }
        while self.mantissa.is_multiple_of(10) {
            self.mantissa /= 10;
            self.exponent += 1;
        }
        self
    }

    /// Rounded up, away from zero, to a multiple of 10^`scale` (inf.RoundUp).
    fn rounded_up(self, scale: i32) -> Result<Self, Unusable> {
        if self.mantissa == 0 || self.exponent >= scale {
            return Ok(self);
        }
        let digits_dropped = (scale - self.exponent).unsigned_abs();
        // A mantissa has at most 39 digits: dropping more leaves less than one unit.
        let mantissa = match 10_u128.checked_pow(digits_dropped) {
            Some(divisor) => self.mantissa.div_ceil(divisor),
            None => 1,
        };
        Ok(Self {
            mantissa,
            exponent: scale,
            ..self
        }
        .normalized())
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        match (self.mantissa, other.mantissa) {
            (0, 0) => return Ordering::Equal,
            (0, _) => return Ordering::Less,
            (_, 0) => return Ordering::Greater,
            _ => {}
        }
        // Compare at the smaller exponent; a mantissa that overflows there is the larger.
        let low = self.exponent.min(other.exponent);
        let at_low = |d: &Self| {
            10_u128
                .checked_pow((d.exponent - low).unsigned_abs())
                .and_then(|f| d.mantissa.checked_mul(f))
        };
        match (at_low(self), at_low(other)) {
            (Some(a), Some(b)) => a.cmp(&b),
            (None, _) => Ordering::Greater,
            (_, None) => Ordering::Less,
        }
    }
}

impl Quantity {
    /// `CanonicalizeBytes`: the largest suffix of the family that needs no fraction.
    fn format(&self) -> Result<String, Unusable> {
        let value = self.value;
        if value.mantissa == 0 {
            return Ok("0".into());
        }
        let sign = if value.negative { "-" } else { "" };
        let at_least_1024 = value.cmp_magnitude(&Decimal {
            negative: false,
            mantissa: 1024,
            exponent: 0,
        }) != Ordering::Less;
        // A binary quantity below 1024, or with a fraction, is written in decimal SI.
        if self.family == Family::BinarySi && at_least_1024 && value.exponent >= 0 {
            const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            let mut whole = 10_u128
                .checked_pow(value.exponent.unsigned_abs())
                .and_then(|f| value.mantissa.checked_mul(f))
                .ok_or(Unusable::OutOfRange)?;
            let mut power = 0;
            while whole.is_multiple_of(1024) && power + 1 < SUFFIXES.len() {
                whole /= 1024;
                power += 1;
            }
            return Ok(format!("{sign}{whole}{}", SUFFIXES[power]));
        }
        // The exponent goes down to a multiple of three, the mantissa up to match.
        let shift = value.exponent.rem_euclid(3);
        let mantissa = value
            .mantissa
            .checked_mul(10_u128.pow(shift.unsigned_abs()))
            .ok_or(Unusable::OutOfRange)?;
        let exponent = value.exponent - shift;
        let suffix = match self.family {
            Family::DecimalExponent if exponent == 0 => String::new(),
            Family::DecimalExponent => format!("e{exponent}"),
            Family::BinarySi | Family::DecimalSi => decimal_si_suffix(exponent)
                .ok_or(Unusable::OutOfRange)?
                .to_string(),
        };
        Ok(format!("{sign}{mantissa}{suffix}"))
    }
}

fn decimal_si_suffix(exponent: i32) -> Option<&'static str> {
    Some(match exponent {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        // Go writes a decimal SI value past `E` with no suffix at all (a wrong number); such
        // values are left as written here.
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(text: &str) -> String {
        canonical(text, Precision::Nano).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    /// apimachinery's own expectations, quantity_test.go: `TestQuantityParseEmit` (input →
    /// `String()`), and `TestQuantityString`, whose `alternate` spellings must come out as
    /// `expect` and whose `expect` strings are kept as written.
    #[test]
    fn matches_apimachinerys_tables() {
        let parse_emit = [
            ("1Ki", "1Ki"),
            ("1Mi", "1Mi"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1000M", "1G"),
            (".001Ki", "1024m"),
            (".000001Ki", "1024u"),
            (".000000001Ki", "1024n"),
            (".000000000001Ki", "2n"),
        ];
        for (input, expected) in parse_emit {
            assert_eq!(stored(input), expected, "{input}");
            if expected != "0" {
                assert_eq!(
                    stored(&format!("-{input}")),
                    format!("-{expected}"),
                    "-{input}"
                );
            }
        }
        // (expect, alternate) pairs of TestQuantityString.
        let string = [
            ("1Gi", "1024Mi"),
            ("300Mi", "307200Ki"),
            ("6Ki", ""),
            ("1001Gi", "1025024Mi"),
            ("1Ti", "1024Gi"),
            ("5", "5000m"),
            ("500m", "0.5"),
            ("1G", "1000M"),
            ("1G", "0.001T"),
            ("1m", "1000u"),
            ("80m", ""),
            ("1080m", "1.08"),
            ("1080m", "1080000000n"),
            ("300M", ""),
            ("1T", ""),
            ("1234567M", ""),
            ("1234567m", ""),
            ("3k", ""),
            ("1025", ""),
            ("0", "00"),
            ("1e9", ".001e12"),
            ("1e-3", "0.001e0"),
            ("1e-9", "1000e-12"),
            ("80e-3", ""),
            ("300e6", ""),
            ("1e12", ""),
            ("1e3", ""),
            ("3e3", ""),
            ("1n", ""),
            ("80n", ""),
            ("1080n", ""),
            ("1u", ""),
            ("80u", ""),
            ("1080u", ""),
        ];
        for (expected, alternate) in string {
            assert_eq!(stored(expected), expected, "{expected} is kept");
            if !alternate.is_empty() {
                assert_eq!(stored(alternate), expected, "{alternate}");
            }
        }
    }

    /// Values and formats from `TestQuantityParse` (quantity_test.go), written out by the
    /// rules of `CanonicalizeBytes`; rounding and saturation included.
    #[test]
    fn rounds_saturates_and_keeps_the_family() {
        let table = [
            ("0Ki", "0"),
            ("0m", "0"),
            ("50k", "50k"),
            ("40T", "40T"),
            ("1E", "1E"),
            ("12E", "12E"),
            ("1E-3", "1E-3"),
            ("1e14", "100e12"),
            // Kept as written: the fast path sees no trailing "000" and a scale of 0.
            ("100.035k", "100.035k"),
            ("0.0005k", "500m"),
            ("0.5e0", "500e-3"),
            ("0.5e-1", "50e-3"),
            ("1.2e3", "1200"),
            ("1.3E+6", "1300e3"),
            ("7.123456M", "7.123456M"),
            ("2.5P", "2500T"),
            ("3.001n", "4n"),
            ("1.1E-9", "2e-9"),
            ("0.0000000001", "1n"),
            ("0.00000012345", "124n"),
            ("9Ei", "9223372036854775807"),
            ("9223372036854775807Ki", "9223372036854775807"),
            ("100.035Ki", "102435840m"),
            ("0.5Mi", "512Ki"),
            ("0.05Gi", "53687091200m"),
            ("0.000000000001Ki", "2n"),
            (".001", "1m"),
            (".0001k", "100m"),
            ("1.", "1."),
            ("1.G", "1.G"),
        ];
        for (input, expected) in table {
            assert_eq!(stored(input), expected, "{input}");
        }
    }

    /// What the operator's users write, and what a cluster then shows.
    #[test]
    fn everyday_values() {
        let table = [
            ("0.5", "500m"),
            ("0.1", "100m"),
            ("1000m", "1"),
            ("1000", "1k"),
            ("250m", "250m"),
            ("2", "2"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("0.1Gi", "107374182400m"),
            ("100Mi", "100Mi"),
            ("1e3", "1e3"),
            ("+1", "+1"),
            ("01", "01"),
            (" 1 ", "1"),
            ("-0", "0"),
        ];
        for (input, expected) in table {
            assert_eq!(stored(input), expected, "{input}");
        }
    }

    #[test]
    fn resource_lists_round_up_to_a_milli() {
        let milli = |text| canonical(text, Precision::Milli).unwrap();
        assert_eq!(milli("100u"), "1m");
        assert_eq!(milli("1500u"), "2m");
        assert_eq!(milli("-1500u"), "-2m");
        assert_eq!(milli("0.0001"), "1m");
        assert_eq!(milli("1n"), "1m");
        assert_eq!(milli("250m"), "250m");
        assert_eq!(milli("0.5"), "500m");
        assert_eq!(milli("+1"), "+1");
        assert_eq!(milli("1024Mi"), "1Gi");
    }

    /// `TestQuantityParse`'s invalid inputs (those without surrounding spaces, which the
    /// JSON decoder trims first).
    #[test]
    fn malformed_quantities_are_refused() {
        for text in [
            "", "1.1.M", "1+1.0M", "0.1mi", "0.1am", "aoeu", ".5i", "1i", "-3.01i", "-3.01e-",
            "1e", "1k3", "1 Gi",
        ] {
            assert!(
                matches!(
                    canonical(text, Precision::Nano),
                    Err(Unusable::Malformed(_))
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn what_this_stand_in_cannot_represent_is_out_of_range() {
        for text in [
            "1000E",
            "1e99999999999",
            "123456789012345678901234567890123456789012",
        ] {
            assert_eq!(
                canonical(text, Precision::Nano),
                Err(Unusable::OutOfRange),
                "{text}"
            );
        }
    }
}
