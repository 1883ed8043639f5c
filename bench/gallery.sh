#!/usr/bin/env bash
# The gallery in docs/results.md: real VGG-19 weights, 512 px, seed 1, every image made by the command
# printed beside it. About 12 minutes on 2 AVX-512 CPU cores (1.5 h on AVX2 only).
# Usage: bash bench/gallery.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
IMG=../shared/data/images SEED=../shared/data/seed OUT=${1:-bench/out/gallery}
NSTD=${NSTD:-.venv/bin/nstd}
# The real VGG-19 file: where this project's machines keep it, unless the caller chose a folder.
[ -z "${NSTD_WEIGHTS_DIR:-}" ] && [ -d ../shared/weights ] && export NSTD_WEIGHTS_DIR="$(pwd)/../shared/weights"
mkdir -p "$OUT"
run() {  # run OUTPUT ARGS…: print the command, then run it (an existing result is kept)
  local out=$OUT/$1; shift
  echo "nstd stylize $* --size 512 --seed 1 -o $out"
  [ -e "$out" ] || "$NSTD" stylize "$@" --size 512 --seed 1 -o "$out"
}
# 1. the default on four pairs
run tubingen-starry.png "$IMG/tubingen.jpg" "$IMG/starry_night.jpg"
run garden-picasso.png "$SEED/japanese_garden.jpg" "$SEED/picasso_selfportrait.jpg"
run brad-scream.png "$IMG/brad_pitt.jpg" "$IMG/the_scream.jpg"
run tubingen-nude.png "$IMG/tubingen.jpg" "$IMG/seated-nude.jpg"
# 2. the strength strip on one pair
for s in 0.2 0.35 0.5 0.65 0.8; do
  run "garden-picasso-$s.png" "$SEED/japanese_garden.jpg" "$SEED/picasso_selfportrait.jpg" --strength "$s"
done
# 3. two regions: a Van Gogh sky over a Munch town (masks: a plain cut at 40% of the height)
.venv/bin/python - "$IMG/tubingen.jpg" "$OUT" <<'PY'
import sys
from PIL import Image
w, h = Image.open(sys.argv[1]).size
for name, top in (("sky", 255), ("town", 0)):
    m = Image.new("L", (w, h), 255 - top)
    m.paste(top, (0, 0, w, int(0.4 * h)))
    m.save(f"{sys.argv[2]}/{name}.png")
PY
run tubingen-regions.png "$IMG/tubingen.jpg" --region "$OUT/sky.png=$IMG/starry_night.jpg" \
  --region "$OUT/town.png=$IMG/the_scream.jpg"
# 4. colour control: the painting's brushwork in the photo's colours
run brad-scream-0.5.png "$IMG/brad_pitt.jpg" "$IMG/the_scream.jpg"
run brad-scream-histogram.png "$IMG/brad_pitt.jpg" "$IMG/the_scream.jpg" --set preserve_colors=histogram
# the sheets
S="bench/sheet.py"
.venv/bin/python $S bench/results/gallery-512.jpg \
  --row "content=$IMG/tubingen.jpg,style=$IMG/starry_night.jpg,default=$OUT/tubingen-starry.png,content=$SEED/japanese_garden.jpg,style=$SEED/picasso_selfportrait.jpg,default=$OUT/garden-picasso.png" \
  --row "content=$IMG/brad_pitt.jpg,style=$IMG/the_scream.jpg,default=$OUT/brad-scream.png,content=$IMG/tubingen.jpg,style=$IMG/seated-nude.jpg,default=$OUT/tubingen-nude.png"
.venv/bin/python $S bench/results/strength-512.jpg \
  --row "content=$SEED/japanese_garden.jpg,0.2=$OUT/garden-picasso-0.2.png,0.35=$OUT/garden-picasso-0.35.png,0.5=$OUT/garden-picasso-0.5.png,0.65=$OUT/garden-picasso-0.65.png,0.8=$OUT/garden-picasso-0.8.png,style=$SEED/picasso_selfportrait.jpg"
.venv/bin/python $S bench/results/regions-colours-512.jpg \
  --row "content=$IMG/tubingen.jpg,sky mask=$OUT/sky.png,sky: starry night\ntown: the scream=$OUT/tubingen-regions.png,content=$IMG/brad_pitt.jpg,default=$OUT/brad-scream-0.5.png,preserve_colors: histogram=$OUT/brad-scream-histogram.png"
