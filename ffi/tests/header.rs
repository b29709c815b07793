//! The committed header `include/rwal.h` is exactly what the pinned cbindgen generates from this
//! crate, and its version macros match `Cargo.toml`. After changing the ABI, regenerate it with
//! `RWAL_BLESS_HEADER=1 cargo test -p rwal-ffi --test header` and commit the result.

use std::path::PathBuf;

fn generate() -> String {
    let crate_dir = env!("CARGO_MANIFEST_DIR");
    let config =
        cbindgen::Config::from_file(format!("{crate_dir}/cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    parenthesize_negative_macros(&String::from_utf8(out).expect("UTF-8 header"))
}

/// cbindgen writes `#define RWAL_ERR_IO -2`, which is not one expression wherever it is
/// pasted: `RWAL_ERR_IO[p]` reads `-(p[2])`, and a missing operator, `f(x RWAL_ERR_IO)`,
/// compiles as a subtraction. Every negative value gets parentheses (CERT C PRE02-C).
fn parenthesize_negative_macros(header: &str) -> String {
    header
        .lines()
        .map(|line| {
            let mut words = line.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("#define"), Some(name), Some(value))
                    if value.len() > 1
                        && value.starts_with('-')
                        && value[1..].bytes().all(|b| b.is_ascii_digit()) =>
                {
                    format!("#define {name} ({value})\n")
                }
                _ => format!("{line}\n"),
            }
        })
        .collect()
}

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../include/rwal.h")
}

#[test]
fn the_committed_header_is_what_cbindgen_generates() {
    let fresh = generate();
    if std::env::var_os("RWAL_BLESS_HEADER").is_some() {
        // Blessing compares the header with itself: never where the check is what counts.
        assert!(
            std::env::var_os("CI").is_none(),
            "RWAL_BLESS_HEADER is set under CI, where the header must be checked, not written"
        );
        std::fs::write(committed_path(), &fresh).expect("write include/rwal.h");
    }
    let committed = std::fs::read_to_string(committed_path()).expect("include/rwal.h is committed");
    assert!(
        committed == fresh,
        "include/rwal.h is stale: regenerate it with RWAL_BLESS_HEADER=1 cargo test -p rwal-ffi --test header"
    );
    for name in [
        "rwal_open",
        "rwal_append_batch",
        "rwal_reader_next",
        "rwal_last_error",
        "RWAL_ERR_PANIC",
    ] {
        assert!(committed.contains(name), "{name} missing from the header");
    }
    assert!(committed.contains("#define RWAL_ERR_IO (-2)"));
    for line in committed
        .lines()
        .filter(|line| line.starts_with("#define "))
    {
        assert!(!line.contains(" -"), "not parenthesized: {line}");
    }
}

#[test]
fn the_version_macros_match_cargo_toml() {
    let header = std::fs::read_to_string(committed_path()).expect("header");
    for (macro_name, value) in [
        ("RWAL_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("RWAL_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("RWAL_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        assert!(
            header.contains(&format!("#define {macro_name} {value}")),
            "{macro_name} is not {value}"
        );
    }
    // SAFETY: rwal_version returns a static NUL-terminated string.
    let runtime = unsafe { std::ffi::CStr::from_ptr(rwal::rwal_version()) };
    assert_eq!(runtime.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}
