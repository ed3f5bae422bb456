//! Quantities in the objects the operator applies, compared by amount.
//!
//! A real API server stores every quantity of a built-in kind in apimachinery's canonical form
//! (`0.5` → `500m`, `1024Mi` → `1Gi`, `1000` → `1k`) and rounds `ResourceList` entries up to a
//! milli, while the operator renders what the user wrote. Compared as text, a spec saying
//! `cpu: "0.5"` would never match its live object, and every reconcile would apply it again.
//! So where a field holds a quantity, desired and live match when they are the same amount.
//! Known by position, not by looks: a label `"1"` and a live `"1.0"` still differ.

/// A list item in the path [`at`] is given.
pub const ITEM: &str = "[]";

/// How finely the API server keeps a field's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// A plain quantity: nothing finer than a nano.
    Nano,
    /// A `ResourceList` entry: rounded up to a milli (`SetDefaults_ResourceList`).
    Milli,
}

/// Where the kinds the operator applies hold quantities, as dotted paths from the object's
/// root: `name[]` is every item of the list `name`, `*` any key of a map. A path ending in `*`
/// is a `ResourceList`, every entry a quantity. Only the PersistentVolumeClaim has
/// `spec.resources` among these kinds. Add a path here when `render` writes a `Quantity`
/// somewhere new.
const QUANTITY_FIELDS: &[&str] = &[
    // Deployment: both containers' resources, the worker-threads divisor, /tmp's size.
    "spec.template.spec.containers[].resources.limits.*",
    "spec.template.spec.containers[].resources.requests.*",
    "spec.template.spec.containers[].env[].valueFrom.resourceFieldRef.divisor",
    "spec.template.spec.volumes[].emptyDir.sizeLimit",
    // PersistentVolumeClaim: the OAuth state's size.
    "spec.resources.requests.*",
    "spec.resources.limits.*",
    // HorizontalPodAutoscaler: metric targets (an integer target of 1000 is stored as `1k`).
    "spec.metrics[].*.target.averageValue",
    "spec.metrics[].*.target.value",
];

/// The precision of the quantity field at `path`, or `None` if it holds no quantity.
pub fn at(path: &[&str]) -> Option<Precision> {
    let pattern = QUANTITY_FIELDS.iter().find(|pattern| {
        let mut steps = path.iter();
        let matches = pattern
            .split('.')
            .all(|segment| match segment.strip_suffix(ITEM) {
                Some(list) => steps.next() == Some(&list) && steps.next() == Some(&ITEM),
                None => steps
                    .next()
                    .is_some_and(|step| *step == segment || (segment == "*" && *step != ITEM)),
            });
        matches && steps.next().is_none()
    })?;
    Some(if pattern.ends_with('*') {
        Precision::Milli
    } else {
        Precision::Nano
    })
}

/// Whether the API server stores `desired`, written into a field of `precision`, as the
/// amount `live` says. Text that is no quantity never matches here (the caller has already
/// compared it as text).
pub fn same_amount(desired: &str, live: &str, precision: Precision) -> bool {
    let stored = Amount::parse(desired).map(|amount| amount.rounded_up(precision));
    stored.is_some() && stored == Amount::parse(live)
}

/// An exact amount, `±mantissa × 10^exponent` with no factor of ten left in the mantissa, so
/// two spellings of one amount are equal. Rounded up to a nano, as the API server keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Amount {
    negative: bool,
    mantissa: u128,
    exponent: i32,
}

impl Amount {
    /// `<sign><digits>[.<digits>]<suffix>` (apimachinery's grammar); `None` for anything
    /// else, or beyond 38 digits.
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let number_end = unsigned
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(unsigned.len());
        let (number, suffix) = unsigned.split_at(number_end);
        let (integer, fraction) = number.split_once('.').unwrap_or((number, ""));
        if text.is_empty() || fraction.contains('.') {
            return None;
        }
        let (power_of_two, power_of_ten) = match suffix {
            "Ki" => (10, 0),
            "Mi" => (20, 0),
            "Gi" => (30, 0),
            "Ti" => (40, 0),
            "Pi" => (50, 0),
            "Ei" => (60, 0),
            "n" => (0, -9),
            "u" => (0, -6),
            "m" => (0, -3),
            "" => (0, 0),
            "k" => (0, 3),
            "M" => (0, 6),
            "G" => (0, 9),
            "T" => (0, 12),
            "P" => (0, 15),
            "E" => (0, 18),
            exponent => (0, exponent.strip_prefix(['e', 'E'])?.parse().ok()?),
        };
        let digits = format!("{integer}{fraction}");
        let digits = digits.trim_start_matches('0');
        let mantissa = if digits.is_empty() {
            0
        } else {
            digits.parse::<u128>().ok()?
        };
        let exponent = i32::checked_sub(power_of_ten, i32::try_from(fraction.len()).ok()?)?;
        let amount = Self {
            negative,
            mantissa: mantissa.checked_mul(1_u128 << power_of_two)?,
            exponent,
        };
        Some(amount.normalized().rounded_to(-9))
    }

    /// As the API server keeps it in a field of `precision`.
    fn rounded_up(self, precision: Precision) -> Self {
        match precision {
            Precision::Nano => self,
            Precision::Milli => self.rounded_to(-3),
        }
    }

    /// Rounded up, away from zero, to a multiple of 10^`scale`.
    fn rounded_to(self, scale: i32) -> Self {
        if self.exponent >= scale {
            return self;
        }
        let mantissa = match 10_u128.checked_pow(scale.abs_diff(self.exponent)) {
            Some(divisor) => self.mantissa.div_ceil(divisor),
            // More digits dropped than a u128 has: less than one unit is left.
            None => 1,
        };
        Self {
            mantissa,
            exponent: scale,
            ..self
        }
        .normalized()
    }

    fn normalized(mut self) -> Self {
        if self.mantissa == 0 {
            return Self {
                negative: false,
                mantissa: 0,
                exponent: 0,
            };
        }
        while self.mantissa.is_multiple_of(10) {
            self.mantissa /= 10;
            self.exponent += 1;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What users write and what a real API server then stores (apimachinery's
    /// quantity_test.go: TestQuantityParseEmit, TestQuantityString).
    #[test]
    fn a_spelling_and_its_canonical_form_are_the_same_amount() {
        for (written, stored) in [
            ("0.5", "500m"),
            ("0.1", "100m"),
            ("1000m", "1"),
            ("1000", "1k"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("0.1Gi", "107374182400m"),
            ("300Mi", "300Mi"),
            ("307200Ki", "300Mi"),
            ("1e3", "1e3"),
            ("1e3", "1k"),
            ("1.08", "1080m"),
            ("1080000000n", "1080m"),
            (".001e12", "1e9"),
            ("+1", "1"),
            (".000000000001Ki", "2n"),
            ("0", "0"),
            ("-0.5", "-500m"),
        ] {
            assert!(
                same_amount(written, stored, Precision::Nano),
                "{written} = {stored}"
            );
        }
    }

    #[test]
    fn different_amounts_and_non_quantities_differ() {
        for (desired, live) in [
            ("500m", "501m"),
            ("1Gi", "1G"),
            ("1", "-1"),
            ("1", "1.0x"),
            ("", ""),
            ("half", "half"),
            ("1.1.1", "1.1.1"),
            ("1e", "1e"),
        ] {
            assert!(
                !same_amount(desired, live, Precision::Nano),
                "{desired} ≠ {live}"
            );
        }
    }

    #[test]
    fn resource_list_entries_are_rounded_up_to_a_milli_first() {
        assert!(same_amount("100u", "1m", Precision::Milli));
        assert!(same_amount("1500u", "2m", Precision::Milli));
        assert!(!same_amount("100u", "1m", Precision::Nano));
    }

    #[test]
    fn quantities_are_known_by_position() {
        fn path(dotted: &str) -> Vec<&str> {
            dotted.split('.').collect()
        }
        assert_eq!(
            at(&path(
                "spec.template.spec.containers.[].resources.requests.cpu"
            )),
            Some(Precision::Milli)
        );
        assert_eq!(
            at(&path("spec.template.spec.volumes.[].emptyDir.sizeLimit")),
            Some(Precision::Nano)
        );
        assert_eq!(
            at(&path("spec.metrics.[].pods.target.averageValue")),
            Some(Precision::Nano)
        );
        assert_eq!(
            at(&path("spec.resources.requests.storage")),
            Some(Precision::Milli)
        );
        assert_eq!(at(&path("metadata.labels.cpu")), None);
        assert_eq!(at(&path("spec.template.spec.containers.[].args.[]")), None);
        assert_eq!(
            at(&path("spec.template.spec.containers.[].resources.requests")),
            None
        );
    }
}
