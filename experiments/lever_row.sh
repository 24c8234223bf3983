#!/usr/bin/env bash
# One of issue 34's rows with rounds: a lever's settings on `doom-cpu`'s budgets, from the base that
# dropout_rows.sh makes (doom-cpu's 2,000 random episodes encoded by the shipped V, in OUT/base).
#
#   bash experiments/lever_row.sh OUT NAME [FLAG VALUE ...]     (WM=command to run, default `worldmodels`)
#
# OUT/NAME: one pass (M and C, no rounds) with the flags, its C scored on seeds 1234 (the run's own
# evaluate) and 7. OUT/NAME-rounds: a copy of it given doom-cpu's 3 rounds of iterative training, its agent
# scored on the same seeds. Examples:
#   bash experiments/lever_row.sh OUT rate-0.2 --mdnrnn.dropout 0.2
#   bash experiments/lever_row.sh OUT refit --mdnrnn.done_refit_epochs 10
#   bash experiments/lever_row.sh OUT action --mdnrnn.action_input controller
# ONE_PASS_ONLY=1: stop after the one pass (dropout_rows.sh's rows). Every step resumes: run it again after
# a stop. Logs step times to OUT/times.tsv.
set -euo pipefail
OUT=$1
NAME=$2
shift 2
WM=${WM:-worldmodels}
BASE=$OUT/base
ROW=$OUT/$NAME
ROUNDS=$ROW-rounds
stamp() { printf '%s\t%s\t%s\n' "$1" "$2" "$(date +%s)" >>"$OUT/times.tsv"; }
[ -f "$BASE/.base-done" ] || { echo "$BASE: no base; run experiments/dropout_rows.sh $OUT first" >&2; exit 1; }

if [ ! -d "$ROW" ]; then
    mkdir -p "$ROW.tmp"
    cp -al "$BASE/episodes" "$BASE/latents" "$ROW.tmp/"
    cp "$BASE/vae.pt" "$BASE/config.json" "$ROW.tmp/"
    cp "$BASE/metrics.jsonl" "$ROW.tmp/" 2>/dev/null || true
    mv "$ROW.tmp" "$ROW"
fi
stamp "$NAME" start
$WM run --run-dir "$ROW" "$@" --iterate.rounds 0 --quiet
[ -f "$ROW/eval_seed7.json" ] || $WM evaluate --run-dir "$ROW" --seed 7 --out "$ROW/eval_seed7.json" --quiet
stamp "$NAME" end
[ -z "${ONE_PASS_ONLY:-}" ] || exit 0

if [ ! -d "$ROUNDS" ]; then  # the one pass's seed-7 score is not the agent's
    cp -a "$ROW" "$ROUNDS.tmp" && rm -f "$ROUNDS.tmp/eval_seed7.json" && mv "$ROUNDS.tmp" "$ROUNDS"
fi
stamp "$NAME-rounds" start
$WM iterate --run-dir "$ROUNDS" --iterate.rounds 3 --quiet
$WM run --run-dir "$ROUNDS" --quiet
[ -f "$ROUNDS/eval_seed7.json" ] || $WM evaluate --run-dir "$ROUNDS" --seed 7 --out "$ROUNDS/eval_seed7.json" --quiet
stamp "$NAME-rounds" end
