//! Makes peerbench's `src/main.rs` includable: `src/main.rs` of this crate `include!`s it so that
//! rwal runs under peerbench's own workload functions (timing loops, percentiles, RESULT lines),
//! which are private to that file and can only be called from the module that contains them.
//!
//! `include!` rejects the file as it stands, and it declares its modules with plain `mod x;`.
//! So this writes `$OUT_DIR/peerbench_main.rs`: the same file with exactly these line edits
//! (every line kept, so line numbers in panics and backtraces stay peerbench's):
//!
//! - each `//!` line (an inner doc comment, which `include!` refuses) becomes a `//` comment;
//! - `mod adapters;`, `mod log;` and `mod phys;` are commented out: this crate's `main.rs`
//!   declares them, pointing at the same peerbench files (and adding rwal to the registry);
//! - `fn main() {` becomes `fn peerbench_main() {`, which this crate's `main` calls.
//!
//! Anything else that differs from what these edits expect fails the build with a message.

use std::path::PathBuf;

/// Where peerbench's sources are, from this crate's directory (`benches/compare` of the repo,
/// which sits next to `shared/`). The `#[path]` attributes in `src/main.rs` use the same place.
const PEERBENCH_SRC: &str = "../../../shared/peerbench/src";

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let src = manifest.join(PEERBENCH_SRC).join("main.rs");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", src.display());
    let text = std::fs::read_to_string(&src).unwrap_or_else(|e| {
        panic!(
            "cannot read peerbench's main.rs at {}: {e}\n\
             rwal-compare expects peerbench at ../shared/peerbench next to the repository",
            src.display()
        )
    });

    let replaced = [
        (
            "mod adapters;",
            "// mod adapters;  (rwal-compare: declared in its main.rs)",
        ),
        (
            "mod log;",
            "// mod log;  (rwal-compare: declared in its main.rs)",
        ),
        (
            "mod phys;",
            "// mod phys;  (rwal-compare: declared in its main.rs)",
        ),
        ("fn main() {", "fn peerbench_main() {"),
    ];
    let mut seen = [0usize; 4];
    let mut out = String::with_capacity(text.len() + 256);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("//!") {
            out.push_str("//");
            out.push_str(rest);
        } else if let Some(i) = replaced.iter().position(|(from, _)| line == *from) {
            seen[i] += 1;
            out.push_str(replaced[i].1);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    for (i, (from, _)) in replaced.iter().enumerate() {
        assert!(
            seen[i] == 1,
            "peerbench's main.rs has changed: expected the line `{from}` exactly once, found it \
             {} times; update rwal-compare's build.rs and main.rs",
            seen[i]
        );
    }

    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    std::fs::write(dest.join("peerbench_main.rs"), out).expect("write peerbench_main.rs");
}
