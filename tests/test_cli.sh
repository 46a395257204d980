#!/bin/sh
# End-to-end test of the `conure` program (examples/conure): --quick pipelines
# on the embedded default and on ml100k, the results JSON (structure, and the
# EXACT constancy of Conure's matrix columns), eval, resume, info on a good and
# on damaged model files, bad input lines, config files, and the T1-only preset
# settings (lastfm on a small generated S3-Rec file).
#
# usage: test_cli.sh PATH/TO/conure
# env:   CONURE_SOURCE_ROOT (source tree), CONURE_SHARED_DATA (../shared/data)
set -eu

CONURE=${1:?usage: test_cli.sh PATH/TO/conure}
SRC=${CONURE_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
DATA=${CONURE_SHARED_DATA:-$SRC/../shared/data}
CHECK="python3 $SRC/tests/test_cli_check.py"
W=$(mktemp -d "${TMPDIR:-/tmp}/conure-cli-test.XXXXXX")
trap 'rm -rf "$W"' EXIT INT TERM
# keep the shared CPUs usable: one compute thread
RUN="$CONURE run --threads 1 --progress plain"

step() { echo "# $*"; }
fail() { echo "FAIL: $*"; exit 1; }
expect_fail() { # expect_fail PATTERN CMD...: CMD exits non-zero and prints PATTERN
    pat=$1; shift
    if "$@" >"$W/out" 2>&1; then cat "$W/out"; fail "expected failure: $*"; fi
    grep -q -- "$pat" "$W/out" || { cat "$W/out"; fail "no '$pat' in the message of: $*"; }
}

if [ ! -d "$DATA/movielens-100k" ]; then
    fail "ml100k data not found at $DATA/movielens-100k: this test needs ../shared/data (set CONURE_SHARED_DATA)"
fi

step "usage"
"$CONURE" --version >/dev/null
"$CONURE" help | grep -q "conure run" || fail "help text"
expect_fail "unknown option" "$CONURE" run --no-such-flag
expect_fail "unknown preset" "$CONURE" run --preset nope
expect_fail "not an integer" "$CONURE" run --seed x
expect_fail "unknown method" "$CONURE" run --methods conure,magic

step "embedded default, --quick, all methods"
t0=$(date +%s)
$RUN --quick --results "$W/d.json" --model "$W/d.model" >"$W/d.out" 2>"$W/d.err" ||
    { cat "$W/d.err"; fail "conure run --quick"; }
echo "#   $(($(date +%s) - t0)) s"
grep -q "summary" "$W/d.out" || fail "no summary table"
grep -q "epoch" "$W/d.err" || fail "no progress lines"
$CHECK results "$W/d.json" 3 conure,sinmo,sinmoall,fineall
[ "$($CHECK get "$W/d.json" quick)" = True ] || fail "quick not recorded"
[ "$($CHECK get "$W/d.json" preset)" = default ] || fail "preset not recorded"

step "dropout and tied-embedding options: range checked, recorded, applied; Conure's columns stay exact"
expect_fail "is not a number in" "$CONURE" run --quick --t1-dropout 1.5
$RUN --quick --methods conure --t1-dropout 0.3 --task-dropout 0.2 --results "$W/dr.json" \
    >/dev/null 2>"$W/dr.err" || { cat "$W/dr.err"; fail "conure run --t1-dropout"; }
$CHECK results "$W/dr.json" 3 conure
[ "$($CHECK get "$W/dr.json" settings.t1_dropout)" = 0.3 ] || fail "t1_dropout not recorded"
[ "$($CHECK get "$W/dr.json" settings.task_dropout)" = 0.2 ] || fail "task_dropout not recorded"
[ "$($CHECK get "$W/d.json" settings.t1_dropout)" = 0 ] || fail "default t1_dropout is not 0"
# the same seed without dropout gave d.json: dropout must change T1's result
[ "$($CHECK get "$W/dr.json" methods.conure.tasks.0.metrics.ndcg@20)" != \
  "$($CHECK get "$W/d.json" methods.conure.tasks.0.metrics.ndcg@20)" ] || fail "--t1-dropout had no effect"
$RUN --quick --methods conure --t1-tie-embedding --results "$W/tie.json" --model "$W/tie.model" \
    >/dev/null 2>"$W/tie.err" || { cat "$W/tie.err"; fail "conure run --t1-tie-embedding"; }
$CHECK results "$W/tie.json" 3 conure
[ "$($CHECK get "$W/tie.json" settings.t1_tie_embedding)" = True ] || fail "t1_tie_embedding not recorded"
[ "$($CHECK get "$W/tie.json" methods.conure.tasks.0.metrics.ndcg@20)" != \
  "$($CHECK get "$W/d.json" methods.conure.tasks.0.metrics.ndcg@20)" ] || fail "--t1-tie-embedding had no effect"
"$CONURE" eval --threads 1 --model "$W/tie.model" --results "$W/tie-e.json" >/dev/null 2>&1 || fail "eval of a tied model"
$CHECK same-final "$W/tie.json" "$W/tie-e.json" conure conure

step "info on the model, and on damaged copies"
"$CONURE" info "$W/d.model" >"$W/info.out" || fail "conure info"
grep -q "^tasks  *3" "$W/info.out" || { cat "$W/info.out"; fail "info: tasks"; }
grep -q "phase done" "$W/info.out" || fail "info: phases"
grep -q "^capacity" "$W/info.out" || fail "info: capacity"
size=$(wc -c <"$W/d.model")
cp "$W/d.model" "$W/bad.model"
printf '\377\377\377\377' | dd of="$W/bad.model" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
expect_fail "cannot load model" "$CONURE" info "$W/bad.model"
head -c $((size / 3)) "$W/d.model" >"$W/trunc.model"
expect_fail "cannot load model" "$CONURE" info "$W/trunc.model"
expect_fail "cannot load model" "$CONURE" info "$W/d.json"
expect_fail "cannot load model" "$CONURE" info "$W/missing.model"

step "eval reproduces the run's Conure metrics"
"$CONURE" eval --threads 1 --model "$W/d.model" --results "$W/e.json" >/dev/null 2>"$W/e.err" ||
    { cat "$W/e.err"; fail "conure eval"; }
$CHECK same-final "$W/d.json" "$W/e.json" conure conure
expect_fail "not an option of 'eval'" "$CONURE" eval --model "$W/d.model" --seed 3

step "add a task to a saved model: --tasks 2, then --resume"
$RUN --quick --methods conure --tasks 2 --model "$W/t2.model" --results "$W/t2.json" \
    >/dev/null 2>"$W/t2.err" || { cat "$W/t2.err"; fail "run --tasks 2"; }
$CHECK results "$W/t2.json" 2 conure
$RUN --quick --resume "$W/t2.model" --model "$W/t3.model" --results "$W/t3.json" \
    >/dev/null 2>"$W/t3.err" || { cat "$W/t3.err"; fail "run --resume"; }
$CHECK results "$W/t3.json" 3 conure
$CHECK same-columns "$W/d.json" "$W/t3.json" 2
"$CONURE" info "$W/t3.model" | grep -q "^tasks  *3" || fail "resumed model has not 3 tasks"
expect_fail "nothing to add" $RUN --quick --resume "$W/t3.model"

step "config file"
cat >"$W/c.conf" <<EOF
# a small config
preset = default
quick
methods = conure
tasks = 1
t1-epochs = 1,1
EOF
$RUN --config "$W/c.conf" --results "$W/c.json" >/dev/null 2>"$W/c.err" ||
    { cat "$W/c.err"; fail "run --config"; }
$CHECK results "$W/c.json" 1 conure
printf 'no-such-key = 1\n' >"$W/bad.conf"
expect_fail "bad.conf:1: unknown key" "$CONURE" run --config "$W/bad.conf"

step "bad input lines: named error, or skipped and counted"
mkdir "$W/baddata"
cp "$SRC/examples/data/ml-latest-small/movies.csv" "$W/baddata/"
{ cat "$SRC/examples/data/ml-latest-small/ratings.csv"; printf '7,oops,4.0,1\r\n'; } >"$W/baddata/ratings.csv"
expect_fail "ratings.csv:100838: movieId 'oops'" $RUN --quick --data "$W/baddata"
$RUN --quick --data "$W/baddata" --skip-bad-lines --methods conure --tasks 1 \
    --results "$W/s.json" >/dev/null 2>"$W/s.err" || { cat "$W/s.err"; fail "--skip-bad-lines"; }
[ "$($CHECK get "$W/s.json" dataset.bad_lines_skipped)" = 1 ] || fail "skipped line not counted"
expect_fail "not found" $RUN --preset ml100k --data "$W/nowhere"

step "T1-only preset (lastfm) on a small S3-Rec file: preset settings recorded, both methods"
mkdir -p "$W/s3"
# 60 users, items 1..30 in runs of consecutive ids (a learnable next-item pattern)
awk 'BEGIN { for (u = 1; u <= 60; u++) { s = u "";
      for (k = 0; k < 8 + u % 7; k++) s = s " " (1 + (u + k) % 30); print s } }' >"$W/s3/LastFM.txt"
$RUN --preset lastfm --data "$W/s3" --quick --results "$W/l.json" >"$W/l.out" 2>"$W/l.err" ||
    { cat "$W/l.err"; fail "lastfm --quick"; }
$CHECK results "$W/l.json" 1 conure,sinmo
[ "$($CHECK get "$W/l.json" settings.t1.lr)" = 0.008 ] || fail "T1-only preset lr is not 8e-3"
[ "$($CHECK get "$W/l.json" settings.t1.batch)" = 256 ] || fail "T1-only preset batch is not 256"
[ "$($CHECK get "$W/l.json" settings.t1_tie_embedding)" = True ] || fail "T1-only preset is not tied"
[ "$($CHECK get "$W/l.json" settings.t1_dropout)" = 0.5 ] || fail "T1-only preset dropout is not 0.5"
[ "$($CHECK get "$W/l.json" settings.exclude_history)" = True ] || fail "T1-only preset keeps history"
[ "$($CHECK get "$W/l.json" settings.patience)" = 1 ] || fail "--quick patience is not 1"
$RUN --preset lastfm --data "$W/s3" --quick --methods sinmo --t1-lr 0.002 --patience 3 \
    --results "$W/l2.json" >/dev/null 2>"$W/l2.err" || { cat "$W/l2.err"; fail "lastfm --t1-lr"; }
[ "$($CHECK get "$W/l2.json" settings.t1.lr)" = 0.002 ] || fail "--t1-lr not applied over the preset"
[ "$($CHECK get "$W/l2.json" settings.patience)" = 3 ] || fail "--patience did not win over --quick"

step "ml100k, --quick, all methods (data from $DATA)"
t0=$(date +%s)
$RUN --preset ml100k --data "$DATA/movielens-100k" --quick --results "$W/m.json" \
    --model "$W/m.model" >"$W/m.out" 2>"$W/m.err" || { cat "$W/m.err"; fail "ml100k --quick"; }
echo "#   $(($(date +%s) - t0)) s"
$CHECK results "$W/m.json" 5 conure,sinmo,sinmoall,fineall
"$CONURE" info "$W/m.model" | grep -q "^tasks  *5" || fail "ml100k model has not 5 tasks"
"$CONURE" eval --threads 1 --preset ml100k --model "$W/m.model" --results "$W/me.json" \
    >/dev/null 2>&1 || fail "eval ml100k"
$CHECK same-final "$W/m.json" "$W/me.json" conure conure
expect_fail "does not match" "$CONURE" eval --model "$W/m.model"

echo "ok: conure CLI"
