//! The skip accounting itself: what the harness records for a test that cannot run, and how
//! scripts/test.sh turns those records and libtest's report into its closing line.

use ferrocni_tests::skip::{skip, SKIPS_FILE};
use ferrocni_tests::TempDir;
use std::path::Path;
use std::process::Command;

/// A record names the test binary as cargo prints it and the test as libtest does, and its
/// reason stays one field on one line.
#[test]
fn a_skip_is_recorded_with_the_binary_and_the_test() {
    let dir = TempDir::new("skp");
    let file = dir.path().join("skips");
    // Set for this process, so the record goes here and not into a run's list of skips: no
    // other test in this binary records one (awk, which they run, is what test.sh's own
    // tally runs on, so it is not checked for).
    std::env::set_var(SKIPS_FILE, &file);
    skip("needs\tsomething\nmissing");
    let binary = std::env::current_exe().expect("test binary");
    let binary = binary.file_name().expect("a file name").to_string_lossy();
    assert_eq!(
        std::fs::read_to_string(&file).expect("the record was written"),
        format!(
            "{binary}\ta_skip_is_recorded_with_the_binary_and_the_test\tneeds something missing\n"
        )
    );
}

fn tally(skips: &str, report: &str, more_passed: u32) -> String {
    let dir = TempDir::new("tly");
    std::fs::write(dir.path().join("skips"), skips).expect("write");
    std::fs::write(dir.path().join("report"), report).expect("write");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-tally.awk");
    let output = Command::new("awk")
        .arg("-v")
        .arg(format!("more_passed={more_passed}"))
        .args(["-v", "more_failed=0", "-f"])
        .arg(script)
        .arg(dir.path().join("skips"))
        .arg(dir.path().join("report"))
        .output()
        .expect("awk runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("text")
}

const REPORT: &str = "\
     Running tests/bridge.rs (target/debug/deps/bridge-0a1b)
test same_shape ... ok
noise from a child without a newlinetest vlans ... ok
test fails_after_a_partial_skip ... FAILED
test runs_fully ... ok
test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out
     Running tests/mtu.rs (target/debug/deps/mtu-2c3d)
test same_shape ... ok
test result: ok. 1 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out
   Doc-tests netlib
test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out
";

/// A recorded test libtest calls "ok" is skipped, not passed; one that failed stays failed; a
/// step of test.sh counts as one skip; libtest's ignored tests are skipped too; the reasons
/// are listed with the tests that were counted.
#[test]
fn recorded_tests_move_from_passed_to_skipped() {
    let skips = "\
bridge-0a1b\tsame_shape\tno reference bridge
bridge-0a1b\tvlans\tno VLAN filtering
bridge-0a1b\tfails_after_a_partial_skip\tno reference bridge
mtu-2c3d\tsame_shape\tno reference bridge
mtu-2c3d\tsame_shape\tno reference ptp
scripts/test.sh\tpodman e2e\tneeds podman
";
    let out = tally(skips, REPORT, 1);
    let lines: Vec<&str> = out.lines().collect();
    // libtest: 6 passed, 1 failed, 1 ignored; three of the passed were skips; plus test.sh's
    // one step that ran and one that was skipped.
    assert_eq!(
        lines.last(),
        Some(&"4 passed, 1 failed, 5 skipped"),
        "{out}"
    );
    assert!(
        out.contains("   2  no reference bridge\n        bridge::same_shape, mtu::same_shape\n"),
        "{out}"
    );
    assert!(out.contains("scripts/test.sh::podman e2e"), "{out}");
    assert!(!out.contains("fails_after_a_partial_skip"), "{out}");
}

/// A record that matches no test in the report (a wrong name, a cut-off run) cannot be
/// trusted to have been a pass: it counts as a failure.
#[test]
fn a_record_of_no_reported_test_is_a_failure() {
    let out = tally("bridge-0a1b\tnot_in_the_report\tneeds root\n", REPORT, 0);
    assert!(out.contains("bridge-0a1b not_in_the_report"), "{out}");
    assert_eq!(
        out.lines().last(),
        Some("6 passed, 2 failed, 1 skipped"),
        "{out}"
    );
}

/// Nothing recorded: libtest's counts as they are.
#[test]
fn without_records_the_counts_are_libtests() {
    assert_eq!(tally("", REPORT, 0), "6 passed, 1 failed, 1 skipped\n");
}
