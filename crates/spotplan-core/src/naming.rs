//! Instance type naming rules, shared by the catalog and its build script (one definition).

/// Splits a family into Karpenter's instance-category and instance-generation:
/// `m6i` -> (`m`, 6); `u7in-16tb` -> (`u`, 7); `u-6tb1` -> (`u`, 6); `hpc7g` -> (`hpc`, 7).
pub fn category_and_generation(family: &str) -> (&str, u8) {
    let letters = family.bytes().take_while(u8::is_ascii_lowercase).count();
    let generation = family
        .bytes()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(u8::is_ascii_digit)
        .fold(0u32, |n, d| {
            n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
        });
    (
        &family[..letters],
        u8::try_from(generation).unwrap_or(u8::MAX),
    )
}

/// The family of an instance type: `m6i` in `m6i.4xlarge`.
pub fn family_of(instance_type: &str) -> &str {
    instance_type.split('.').next().unwrap_or(instance_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_split() {
        assert_eq!(category_and_generation("m6i"), ("m", 6));
        assert_eq!(category_and_generation("c7i-flex"), ("c", 7));
        assert_eq!(category_and_generation("u-6tb1"), ("u", 6));
        assert_eq!(category_and_generation("hpc7g"), ("hpc", 7));
        assert_eq!(category_and_generation("p6-b200"), ("p", 6));
        assert_eq!(category_and_generation("mac2-m2pro"), ("mac", 2));
        assert_eq!(family_of("m6i.4xlarge"), "m6i");
    }
}
