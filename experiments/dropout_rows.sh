#!/usr/bin/env bash
# Issue 34's dropout rows: for each dropout rate, one pass of `doom-cpu` (its 2,000 random episodes, the
# shipped Doom V, which is doom-cpu's V, then M and C with doom-cpu's budgets, no rounds) with M trained at
# that rate and C trained in a dream at the same rate; then C's 100 real episodes on seeds 1234 (the run's
# own evaluate) and 7. The rows share the episodes and latents (hard links).
#
#   bash experiments/dropout_rows.sh OUT RATE [RATE ...]      (WM=command to run, default `worldmodels`)
#
# Every step resumes: run it again after a stop. Logs stage times to OUT/times.tsv.
set -euo pipefail
OUT=$1
shift
WM=${WM:-worldmodels}
PY=${PY:-python}
BASE=$OUT/base
mkdir -p "$OUT"
stamp() { printf '%s\t%s\t%s\n' "$1" "$2" "$(date +%s)" >>"$OUT/times.tsv"; }

if [ ! -f "$BASE/.base-done" ]; then
    stamp base start
    $WM collect --preset doom-cpu --run-dir "$BASE" --quiet
    V=$($PY -c "from worldmodels.pretrained import pretrained_dir; print(pretrained_dir('doom'))")/vae.pt
    cp "$V" "$BASE/vae.pt.tmp" && mv "$BASE/vae.pt.tmp" "$BASE/vae.pt"
    $WM encode --run-dir "$BASE" --quiet
    touch "$BASE/.base-done"
    stamp base end
fi

for R in "$@"; do  # each rate's one pass (lever_row.sh without its rounds)
    ONE_PASS_ONLY=1 bash "$(dirname "$0")/lever_row.sh" "$OUT" "rate-$R" --mdnrnn.dropout "$R"
done
