#!/usr/bin/env bash
# Plots the test and validation accuracy of a fashion_mnist run against the budget it had used
# at each epoch, from the run's epochs.csv, with gnuplot (Debian: gnuplot-nox).
#   bash examples/fashion_mnist/plot.sh [OUT_DIR]   ->   OUT_DIR/accuracy.png
# OUT_DIR is the run's --out (default fashion_mnist_out). A run without limits has no budget
# fraction to plot against: its plot uses wall time instead. A score not measured is an empty
# field: by default the test set is evaluated once, at the run's end (its accuracy is in the
# last row only: one point), with --test-every-epoch at every epoch's end (a curve); a run that
# stopped between epochs may end with a row without validation.
set -euo pipefail
dir="${1:-fashion_mnist_out}"
csv="$dir/epochs.csv"
png="$dir/accuracy.png"
if [[ ! -f "$csv" ]]; then
  echo "plot.sh: no $csv (run fashion_mnist --out $dir first)" >&2
  exit 1
fi
if ! command -v gnuplot >/dev/null 2>&1; then
  echo "plot.sh: gnuplot not found (Debian: sudo apt-get install gnuplot-nox)" >&2
  exit 1
fi
if [[ $(wc -l <"$csv") -lt 2 ]]; then
  echo "plot.sh: $csv has no epochs to plot" >&2
  exit 1
fi
if awk -F, 'NR > 1 && $3 > 0 { found = 1 } END { exit !found }' "$csv"; then
  x='($3*100)'; xlabel='budget used (%)'
else
  x='2'; xlabel='wall time (s)'
fi
# What to plot: the columns with at least one value (gnuplot fails on a column with none).
count() { awk -F, -v c="$1" 'NR > 1 && $c != "" { n++ } END { print n + 0 }' "$csv"; }
plots=()
tests=$(count 10)
if [[ $tests -gt 1 ]]; then
  plots+=("csv skip 1 using $x:10 with linespoints pointtype 7 title 'test accuracy'")
elif [[ $tests -eq 1 ]]; then
  plots+=("csv skip 1 using $x:10 with points pointtype 7 pointsize 1.5 title 'test accuracy (at the run''s end)'")
fi
if [[ $(count 9) -gt 0 ]]; then
  plots+=("csv skip 1 using $x:9 with linespoints pointtype 5 title 'validation accuracy'")
fi
if [[ ${#plots[@]} -eq 0 ]]; then
  echo "plot.sh: $csv has no accuracy to plot" >&2
  exit 1
fi
plot=$(IFS=,; echo "${plots[*]}")
# pngcairo draws smoother lines; the libgd png terminal is the fallback.
terminal=png
if gnuplot -e 'set terminal' 2>&1 | grep -q pngcairo; then terminal=pngcairo; fi
gnuplot -e "csv='$csv'; png='$png'" - <<GNUPLOT
set terminal $terminal size 900,560 noenhanced
set output png
set datafile separator ','
set title 'fashion_mnist: accuracy against budget used'
set xlabel '$xlabel'
set ylabel 'accuracy'
set grid
set key bottom right
plot $plot
GNUPLOT
echo "wrote $png"
