#!/bin/bash
# The reference collection behind data/reference, as run on the 2-core reference machine.
#
#   INFERPERF_HOME=/path/to/refhome bash benchmarks/collect_reference.sh
#
# Runs in steps of growing per-family counts (the zoo iterates round-robin over families, so an interrupted
# chunk leaves every family about equally far); each chunk resumes: graphs already measured are skipped,
# failures are re-tried. The collector is pinned to core 0 and measures at 1 intra-op thread; it waits for
# a quiet machine and re-measures a graph when another process used > 0.3 cores during its timed phase, so
# light work on core 1 is fine. Export and commit between chunks:
#
#   inferperf dataset export --out data/reference --all
#
# Reports (graphs/hour, per-graph time percentiles) land in $REPORTS (default: ./collect-reports).
set -euo pipefail
: "${INFERPERF_HOME:?set INFERPERF_HOME to the home of the collection (its perf.db is the source of truth)}"
REPORTS=${REPORTS:-collect-reports}
INFERPERF=${INFERPERF:-.venv/bin/inferperf}
mkdir -p "$REPORTS"
# PLAN: "zoo:per-family" steps, in order. Synthetic families are fast (~2 s a graph), real ones ~4-8 s, so the
# synthetic ones go first; each step resumes the ones before it.
for step in ${PLAN:-all:40 random:320 canonical:160 real:60 real:70}; do
  zoo=${step%%:*}; pf=${step##*:}
  taskset -c 0 "$INFERPERF" collect --zoo "$zoo" --per-family "$pf" --batch 1 --retry-failed --json \
    > "$REPORTS/$zoo$pf.json" 2> "$REPORTS/$zoo$pf.err"
  echo "step $zoo:$pf done $(date -u +%FT%TZ)" >> "$REPORTS/chunks.log"
done
# batch sizes beyond 1 for a part of the graphs (each batch size is its own graph)
taskset -c 0 "$INFERPERF" collect --zoo all --per-family "${BATCH4_PER_FAMILY:-10}" --batch 4 --retry-failed --json \
  > "$REPORTS/batch4.json" 2> "$REPORTS/batch4.err"
