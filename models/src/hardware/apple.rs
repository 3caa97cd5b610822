//! Apple silicon: which chip and GPU generation this is, and whether MLX can run matmuls on the
//! GPU's Neural Accelerators (the per-core tensor units Apple added with the M5 generation).
//!
//! The rules are pure functions of the strings macOS and Metal report, so they are table-tested
//! on any OS; only [`detect`] (macOS) reads the system.

use serde::Serialize;

/// MLX's rule (`is_nax_available`): Mac and iPad GPUs have Neural Accelerators from generation 17 on
/// (`applegpu_g17*`, the M5 family)...
const FIRST_NA_GPU_GENERATION: u32 = 17;
/// ...while phone GPUs (suffix `p`) need generation 18: the A18 Pro is `applegpu_g17p` and has none.
const FIRST_NA_PHONE_GPU_GENERATION: u32 = 18;
const PHONE_GPU_SUFFIX: char = 'p';
/// When Metal's architecture string cannot be parsed, the brand string decides: M5 was the first
/// M chip with Neural Accelerators.
const FIRST_NA_CHIP_GENERATION: u32 = 5;
/// MLX reaches the Neural Accelerators through Metal 4 tensor ops, which it gates on macOS 26.2.
const FIRST_NA_MACOS: MacosVersion = MacosVersion { major: 26, minor: 2, patch: 0 };

/// What this Mac is, and whether MLX's Neural Accelerator kernels apply to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppleProfile {
    /// `machdep.cpu.brand_string`, e.g. "Apple M5 Pro".
    pub chip: String,
    /// The N of "Apple MN" in [`Self::chip`]; `None` for any other brand string.
    pub chip_generation: Option<u32>,
    /// Metal's GPU architecture name as MLX reports it, e.g. "applegpu_g17s".
    pub gpu_architecture: Option<String>,
    /// The two digits after `g` in `applegpu_gNN<suffix>`; `None` when the name has another shape.
    pub gpu_generation: Option<u32>,
    /// The letter after the generation: `g` base/Pro, `s` Max, `d` Ultra, `p` phone.
    pub gpu_suffix: Option<char>,
    /// `kern.osproductversion`, e.g. "26.2".
    pub macos_version: Option<String>,
    /// The GPU has Neural Accelerators (from the architecture, else from the brand string).
    pub has_neural_accelerator: bool,
    /// This macOS is new enough for MLX to use them (26.2 or later).
    pub macos_supports_na: bool,
    /// Both of the above: the predicate the execution plan branches on.
    pub neural_accelerator: bool,
    /// What the loaded MLX itself answers (`metal::is_nax_available`); reported as a cross-check.
    pub mlx_has_nax_kernels: bool,
}

impl AppleProfile {
    /// Derives every field from what the system reported. Pure, so the rules can be tested on Linux.
    pub fn from_reported(
        chip: &str,
        gpu_architecture: Option<&str>,
        macos_version: Option<&str>,
        mlx_has_nax_kernels: bool,
    ) -> Self {
        let gpu = gpu_architecture.and_then(AppleGpuArchitecture::parse);
        let has_neural_accelerator = has_neural_accelerator(gpu_architecture, chip);
        let macos_supports_na = macos_version.is_some_and(macos_supports_neural_accelerator);
        AppleProfile {
            chip: chip.to_string(),
            chip_generation: chip_generation(chip),
            gpu_architecture: gpu_architecture.map(str::to_string),
            gpu_generation: gpu.map(|g| g.generation),
            gpu_suffix: gpu.map(|g| g.suffix),
            macos_version: macos_version.map(str::to_string),
            has_neural_accelerator,
            macos_supports_na,
            neural_accelerator: has_neural_accelerator && macos_supports_na,
            mlx_has_nax_kernels,
        }
    }
}

/// A Metal GPU architecture name of the form `applegpu_gNN<suffix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppleGpuArchitecture {
    pub generation: u32,
    pub suffix: char,
}

impl AppleGpuArchitecture {
    /// Parses `applegpu_g17s` into generation 17, suffix `s`. MLX reads the same two digits (the
    /// third- and second-to-last characters); unlike MLX, which turns any other shape into
    /// generation 0, this returns `None` so the caller can fall back to the brand string.
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("applegpu_g")?;
        let mut chars = rest.chars();
        let (tens, ones, suffix) = (chars.next()?, chars.next()?, chars.next()?);
        if chars.next().is_some() || !suffix.is_ascii_lowercase() {
            return None;
        }
        let generation = tens.to_digit(10)? * 10 + ones.to_digit(10)?;
        Some(AppleGpuArchitecture { generation, suffix })
    }

    pub fn has_neural_accelerator(self) -> bool {
        let first =
            if self.suffix == PHONE_GPU_SUFFIX { FIRST_NA_PHONE_GPU_GENERATION } else { FIRST_NA_GPU_GENERATION };
        self.generation >= first
    }
}

/// The M-series generation in a brand string: "Apple M5 Pro" -> 5, "Apple M10" -> 10.
/// Anything else ("Apple A18 Pro", "Intel(R) Core(TM) i9", "Apple Mx") -> `None`.
pub fn chip_generation(brand: &str) -> Option<u32> {
    let rest = brand.trim().strip_prefix("Apple M")?;
    let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let (digits, after) = rest.split_at(digits_end);
    // "Apple M5X" is no brand Apple uses; refusing it beats guessing a generation from it.
    if digits.is_empty() || !(after.is_empty() || after.starts_with(' ')) {
        return None;
    }
    digits.parse().ok()
}

/// Whether the GPU has Neural Accelerators: decided by the Metal architecture when it parses,
/// otherwise by the brand string (M5 or later).
pub fn has_neural_accelerator(gpu_architecture: Option<&str>, chip: &str) -> bool {
    match gpu_architecture.and_then(AppleGpuArchitecture::parse) {
        Some(gpu) => gpu.has_neural_accelerator(),
        None => chip_generation(chip).is_some_and(|generation| generation >= FIRST_NA_CHIP_GENERATION),
    }
}

/// Whether a `kern.osproductversion` string is 26.2 or later; unparseable versions are not.
pub fn macos_supports_neural_accelerator(version: &str) -> bool {
    MacosVersion::parse(version).is_some_and(|v| v >= FIRST_NA_MACOS)
}

/// `major.minor[.patch]`, compared numerically (26.10 is after 26.2); missing parts count as 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MacosVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl MacosVersion {
    pub fn parse(version: &str) -> Option<Self> {
        let mut parts = version.trim().split('.');
        let mut next = |required: bool| match parts.next() {
            Some(part) => part.parse::<u32>().ok(),
            None if required => None,
            None => Some(0),
        };
        let parsed = MacosVersion { major: next(true)?, minor: next(false)?, patch: next(false)? };
        parts.next().is_none().then_some(parsed)
    }
}

/// Reads the brand string and macOS version, and takes the GPU architecture from MLX's device info.
#[cfg(target_os = "macos")]
pub(super) fn detect(gpu_info: Option<&mlx_bridge::device::DeviceInfo>) -> Result<AppleProfile, super::HardwareError> {
    let chip = super::sysctl::string("machdep.cpu.brand_string")?;
    let macos_version = super::sysctl::string("kern.osproductversion")?;
    let architecture = gpu_info.and_then(|info| info.architecture.as_deref());
    Ok(AppleProfile::from_reported(
        &chip,
        architecture,
        Some(&macos_version),
        mlx_bridge::device::metal_nax_available(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neural_accelerator_predicate_by_machine() {
        // (chip, Metal architecture, macOS) -> [has NA, macOS supports it, the predicate]
        type Machine = (&'static str, Option<&'static str>, &'static str);
        let cases: &[(Machine, [bool; 3])] = &[
            (("Apple M1 Max", Some("applegpu_g13s"), "26.2"), [false, true, false]),
            (("Apple M5", Some("applegpu_g17g"), "26.1"), [true, false, false]),
            (("Apple M5 Pro", Some("applegpu_g17s"), "26.2"), [true, true, true]),
            (("Apple A18 Pro", Some("applegpu_g17p"), "26.2"), [false, true, false]),
            (("phone part", Some("applegpu_g18p"), "26.2"), [true, true, true]),
            (("Apple M5 Max", Some("applegpu_g17s"), "26.10"), [true, true, true]),
            (("Apple M5", Some("applegpu_g17g"), "27.0"), [true, true, true]),
            (("Apple M5", Some("applegpu_g17g"), "26"), [true, false, false]),
            (("Apple M4 Pro", Some("applegpu_g16s"), "26.2"), [false, true, false]),
            // The architecture decides when it parses, even against the brand string.
            (("Apple M5", Some("applegpu_g16s"), "26.2"), [false, true, false]),
            // Unparseable or missing architecture: the brand string decides.
            (("Apple M10", None, "26.2"), [true, true, true]),
            (("Apple M5 Pro", Some("applegpu_gXYs"), "26.2"), [true, true, true]),
            (("Apple M4", Some("metal3"), "26.2"), [false, true, false]),
            (("Intel(R) Core(TM) i9-9980HK", None, "26.2"), [false, true, false]),
            (("", None, "26.2"), [false, true, false]),
            (("Apple Mx", Some("applegpu_gXYs"), "26.2"), [false, true, false]),
            (("Intel(R) Core", Some("applegpu_gXYs"), "26.2"), [false, true, false]),
        ];
        for &((chip, architecture, macos), [has_na, supports, predicate]) in cases {
            let profile = AppleProfile::from_reported(chip, architecture, Some(macos), false);
            let case = format!("{chip:?} {architecture:?} macOS {macos}");
            assert_eq!(profile.has_neural_accelerator, has_na, "has_neural_accelerator for {case}");
            assert_eq!(profile.macos_supports_na, supports, "macos_supports_na for {case}");
            assert_eq!(profile.neural_accelerator, predicate, "neural_accelerator for {case}");
        }
    }

    #[test]
    fn unknown_macos_version_does_not_support_na() {
        let profile = AppleProfile::from_reported("Apple M5", Some("applegpu_g17g"), None, true);
        assert!(profile.has_neural_accelerator);
        assert!(!profile.macos_supports_na);
        assert!(!profile.neural_accelerator);
        assert!(profile.mlx_has_nax_kernels, "reported as given, not recomputed");
    }

    #[test]
    fn chip_generation_from_brand_string() {
        let cases: &[(&str, Option<u32>)] = &[
            ("Apple M1", Some(1)),
            ("Apple M1 Max", Some(1)),
            ("Apple M5", Some(5)),
            ("Apple M5 Pro", Some(5)),
            ("Apple M10", Some(10)),
            ("Apple M12 Ultra", Some(12)),
            ("  Apple M3  ", Some(3)),
            ("Apple Mx", None),
            ("Apple M", None),
            ("Apple M5X", None),
            ("Apple A18 Pro", None),
            ("Intel(R) Core", None),
            ("", None),
        ];
        for &(brand, expected) in cases {
            assert_eq!(chip_generation(brand), expected, "{brand:?}");
        }
        assert!(chip_generation("Apple M10").unwrap() >= FIRST_NA_CHIP_GENERATION);
    }

    #[test]
    fn gpu_architecture_parsing() {
        let parsed = |generation, suffix| Some(AppleGpuArchitecture { generation, suffix });
        let cases: &[(&str, Option<AppleGpuArchitecture>)] = &[
            ("applegpu_g13s", parsed(13, 's')),
            ("applegpu_g14d", parsed(14, 'd')),
            ("applegpu_g17g", parsed(17, 'g')),
            ("applegpu_g17p", parsed(17, 'p')),
            ("applegpu_g18c", parsed(18, 'c')),
            ("applegpu_gXYs", None),
            ("applegpu_g1s", None),
            ("applegpu_g17", None),
            ("applegpu_g17sx", None),
            ("applegpu_g17S", None),
            ("sm_90", None),
            ("", None),
        ];
        for &(name, expected) in cases {
            assert_eq!(AppleGpuArchitecture::parse(name), expected, "{name:?}");
        }
    }

    #[test]
    fn macos_versions_compare_numerically() {
        let version = |major, minor, patch| Some(MacosVersion { major, minor, patch });
        assert_eq!(MacosVersion::parse("26.2"), version(26, 2, 0));
        assert_eq!(MacosVersion::parse("26"), version(26, 0, 0));
        assert_eq!(MacosVersion::parse("26.2.1"), version(26, 2, 1));
        assert_eq!(MacosVersion::parse(" 15.7.3\n"), version(15, 7, 3));
        for bad in ["", "26.", "26.x", "26.2.1.4", "twenty-six", "-26.2"] {
            assert_eq!(MacosVersion::parse(bad), None, "{bad:?}");
        }
        assert!(MacosVersion::parse("26.10") > MacosVersion::parse("26.2"));

        for (version, supported) in [
            ("26.2", true),
            ("26.2.1", true),
            ("26.10", true),
            ("27.0", true),
            ("26.1", false),
            ("26.1.9", false),
            ("26", false),
            ("15.7", false),
            ("", false),
            ("garbage", false),
        ] {
            assert_eq!(macos_supports_neural_accelerator(version), supported, "{version:?}");
        }
    }
}
