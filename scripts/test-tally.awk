# The closing count of scripts/test.sh, from the skip records and cargo test's report:
#   awk -v more_passed=N -v more_failed=N -f scripts/test-tally.awk SKIPS_FILE TEST_OUTPUT
#
# libtest reports a test that returned early as "ok"; the harness (tests/src/skip.rs) records
# each test that did not run, or ran without what it compares against, as a line
# "binary<TAB>test<TAB>reason" in SKIPS_FILE. Every recorded test that libtest calls "ok" is
# moved from passed to skipped, and the reasons are listed, most common first. A record with
# the binary "scripts/test.sh" is a step of the script itself (the Podman runs, fuzzing) and
# counts as one skip. A record that matches no test in the report means the report cannot be
# trusted (a test name the harness got wrong, a cut-off run): it counts as a failure.
# more_passed and more_failed are the script's own steps that ran.

FILENAME == ARGV[1] {
  split($0, field, "\t")
  key = field[1] SUBSEP field[2]
  if (!(key in recorded)) tests[++ntests] = key
  if (!((key, field[3]) in recorded)) {
    recorded[key, field[3]] = 1
    records[++nrecords] = key SUBSEP field[3]
  }
  recorded[key] = 1
  next
}

# "     Running tests/bridge.rs (target/debug/deps/bridge-0123abcd)": the binary that follows.
/^ *Running .*\(.*\)$/ {
  binary = $NF
  gsub(/[()]/, "", binary)
  sub(/.*\//, "", binary)
  next
}
/^ *Doc-tests / { binary = "doc-tests " $2; next }

# Unanchored at the start: a child process's partial line may precede libtest's.
match($0, /test [^ ]+ \.\.\. (ok|FAILED)$/) {
  line = substr($0, RSTART + 5, RLENGTH - 5)
  name = line
  sub(/ \.\.\. .*/, "", name)
  outcome[binary, name] = line ~ /ok$/ ? "ok" : "failed"
}

/^test result:/ { passed += $4; failed += $6; skipped += $8 }

END {
  for (t = 1; t <= ntests; t++) {
    split(tests[t], part, SUBSEP)
    if (part[1] == "scripts/test.sh" || outcome[tests[t]] == "ok") {
      skipped++
      counted[tests[t]] = 1
      if (part[1] != "scripts/test.sh") passed--
    } else if (outcome[tests[t]] != "failed") {
      if (!unmatched++) print "!! skip records that match no test in the report (counted as failed):"
      print "   " part[1] " " part[2]
      failed++
    }
  }
  # The reasons of the tests counted as skipped (a test that failed is reported as failed).
  for (n = 1; n <= nrecords; n++) {
    split(records[n], part, SUBSEP)
    if (!((part[1], part[2]) in counted)) continue
    r = part[3]
    if (!(r in group_size)) reasons[++nreasons] = r
    # The test binary without cargo's hash: "bridge::same_shape_and_reachability_as_the_reference".
    program = part[1]
    sub(/-[0-9a-f]+$/, "", program)
    group_tests[r] = group_tests[r] (group_size[r]++ ? ", " : "") program "::" part[2]
  }
  if (nreasons > 0) {
    print "== skipped, and why:"
    # Most common reason first (an insertion sort: awk has no portable sort).
    for (i = 2; i <= nreasons; i++) {
      r = reasons[i]
      for (j = i - 1; j >= 1 && group_size[reasons[j]] < group_size[r]; j--) reasons[j + 1] = reasons[j]
      reasons[j + 1] = r
    }
    for (i = 1; i <= nreasons; i++) {
      r = reasons[i]
      names = group_tests[r]
      if (length(names) > 200) names = substr(names, 1, 200) "..."
      printf "  %4d  %s\n        %s\n", group_size[r], r, names
    }
  }
  printf "%d passed, %d failed, %d skipped\n", passed + more_passed, failed + more_failed, skipped
}
