//! The C boundary seen from Rust: NULL pointers, paths that are not UTF-8, a panic inside a
//! call, and the per-thread last error.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;

use rwal::*;

fn last_error() -> String {
    let mut buf = [0u8; 512];
    // SAFETY: buf has 512 writable bytes.
    let len = unsafe { rwal_last_error(buf.as_mut_ptr().cast(), buf.len()) };
    assert!(len < buf.len());
    CStr::from_bytes_until_nul(&buf)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

fn temp(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rwal-ffi-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn null_pointers_are_invalid_arguments_with_a_message() {
    let mut lsn = 0u64;
    // SAFETY: NULL handles are what is being tested; the outputs are valid.
    unsafe {
        assert_eq!(
            rwal_append(std::ptr::null_mut(), b"x".as_ptr(), 1, &mut lsn),
            RWAL_ERR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("log is NULL"), "{}", last_error());
        assert_eq!(
            rwal_commit(std::ptr::null_mut(), 1),
            RWAL_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            rwal_last_lsn(std::ptr::null(), &mut lsn),
            RWAL_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            rwal_open(std::ptr::null(), std::ptr::null(), std::ptr::null_mut()),
            RWAL_ERR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("dir is NULL"), "{}", last_error());
        assert_eq!(rwal_close(std::ptr::null_mut()), RWAL_OK);
        assert_eq!(
            rwal_reader_set_verify_checksums(std::ptr::null_mut(), false),
            RWAL_ERR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("reader is NULL"), "{}", last_error());
        rwal_reader_free(std::ptr::null_mut());
        rwal_options_free(std::ptr::null_mut());
    }
    assert_eq!(lsn, 0, "outputs are written only on success");
}

#[test]
fn a_path_that_is_not_utf8_is_a_path_like_any_other() {
    let base = temp("utf8");
    let mut raw = base.as_os_str().as_bytes().to_vec();
    raw.extend_from_slice(b"/log-\xff\xfe");
    let path = CString::new(raw.clone()).unwrap();
    let mut log = std::ptr::null_mut();
    // SAFETY: a NUL-terminated path and a writable out-pointer.
    unsafe {
        assert_eq!(
            rwal_open(path.as_ptr(), std::ptr::null(), &mut log),
            RWAL_OK,
            "{}",
            last_error()
        );
        let mut lsn = 0;
        assert_eq!(rwal_append(log, b"x".as_ptr(), 1, &mut lsn), RWAL_OK);
        assert_eq!(rwal_close(log), RWAL_OK);
    }
    assert!(std::path::Path::new(std::ffi::OsStr::from_bytes(&raw))
        .join("control")
        .exists());
    let _ = std::fs::remove_dir_all(base);
}

#[test]
fn a_panic_comes_back_as_rwal_err_panic() {
    assert_eq!(panic_inside_boundary(), RWAL_ERR_PANIC);
    assert!(
        last_error().contains("panic inside rwal"),
        "{}",
        last_error()
    );
}

#[test]
fn a_panic_while_freeing_is_kept_as_the_last_error_instead_of_aborting() {
    // Without the boundary the panic would unwind into an `extern "C"` function and abort
    // the whole test process.
    panic_inside_free();
    assert!(
        last_error().contains("panic inside rwal"),
        "{}",
        last_error()
    );
    let mut lsn = 0u64;
    // SAFETY: a NULL handle, to put another message in the last error.
    let status = unsafe { rwal_append(std::ptr::null_mut(), b"x".as_ptr(), 1, &mut lsn) };
    assert_eq!(status, RWAL_ERR_INVALID_ARGUMENT);
    assert!(!last_error().contains("panic"), "{}", last_error());
    assert_eq!(panic_inside_guarded_call(), 0);
    assert!(
        last_error().contains("panic inside rwal"),
        "{}",
        last_error()
    );
}

#[test]
fn the_last_error_belongs_to_its_thread() {
    let mut lsn = 0u64;
    // SAFETY: a NULL handle is what is being tested.
    let status = unsafe { rwal_append(std::ptr::null_mut(), b"x".as_ptr(), 1, &mut lsn) };
    assert_eq!(status, RWAL_ERR_INVALID_ARGUMENT);
    let other = std::thread::spawn(|| {
        let opts = rwal_options_new();
        // SAFETY: live options.
        let status = unsafe { rwal_options_set_segment_size(opts, 3) };
        // SAFETY: from rwal_options_new.
        unsafe { rwal_options_free(opts) };
        (status, last_error())
    })
    .join()
    .unwrap();
    assert_eq!(other.0, RWAL_ERR_INVALID_ARGUMENT);
    assert!(other.1.contains("segment_bytes"));
    assert!(
        last_error().contains("log is NULL"),
        "another thread's failure overwrote this one's"
    );
}

/// Every status code the header defines (read from `include/rwal.h`, so that a code added
/// later is checked too) is named by `rwal_status_str` with its own macro's name.
#[test]
fn status_names_are_static_and_every_code_has_one() {
    let header =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../include/rwal.h")).unwrap();
    let mut codes = Vec::new();
    for line in header.lines() {
        let Some(definition) = line.strip_prefix("#define ") else {
            continue;
        };
        let mut words = definition.split_whitespace();
        let (Some(name), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        if name == "RWAL_OK" || name == "RWAL_END" || name.starts_with("RWAL_ERR_") {
            let value: i32 = value.trim_matches(['(', ')']).parse().unwrap();
            codes.push((name.to_string(), value));
        }
    }
    assert!(codes.len() >= 23, "{codes:?}");
    for (macro_name, code) in codes {
        // SAFETY: rwal_status_str returns a static NUL-terminated string.
        let name = unsafe { CStr::from_ptr(rwal_status_str(code)) }
            .to_str()
            .unwrap();
        assert_eq!(name, macro_name, "{code}");
    }
}
