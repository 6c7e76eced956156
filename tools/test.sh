#!/usr/bin/env bash
# The README's test command: set up what is missing, then run every test.
# Extra arguments go to `bazel test` (e.g. a narrower target pattern).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh

# Style first (seconds); its failure fails the run, after the tests have run.
lint_rc=0
tools/lint.sh || lint_rc=$?

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
if [ "$#" -gt 0 ]; then
  bazel test "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
else
  bazel test //... 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  # TensorFlow words some errors differently on its oneDNN and Eigen kernels
  # (chosen by CPU and by TF_ENABLE_ONEDNN_OPTS). The tests that compare
  # messages (tag tf_messages) run again on both paths, so no test can
  # depend on which one this machine takes by default.
  for onednn in 0 1; do
    echo "== tests tagged tf_messages with TF_ENABLE_ONEDNN_OPTS=${onednn}"
    bazel test --build_tests_only --test_tag_filters=tf_messages \
      --test_env=TF_ENABLE_ONEDNN_OPTS="${onednn}" //... 2>&1 | tee -a "$log"
    step_rc=${PIPESTATUS[0]}
    [ "$step_rc" -eq 0 ] || rc=$step_rc
  done
fi
set -e

# One closing line in the plain 'N passed, N failed' form, from Bazel's summary.
passed=$(grep -cE '^//\S+\s+(\(cached\) )?PASSED' "$log" || true)
failed=$(grep -cE '^//\S+\s+(FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD)' "$log" || true)
echo "tests: ${passed} passed, ${failed} failed"
[ "$lint_rc" -eq 0 ] || { echo "lint failed (tools/lint.sh)"; exit "$lint_rc"; }
exit "$rc"
