#!/usr/bin/env bash
# Open-Vocabulary SAM's shapes-world table through the user-data commands: the world written as
# files (`ovdet shapes generate`), SAM2CLIP on det-train's images, CLIP2SAM on det-train's COCO
# file, eval-ovsam on det-val's; the same seeds and steps as `ovdet shapes reproduce-ovsam`.
# Usage: scripts/ovsam_from_files.sh [OUT]   (about 45 min on one CPU thread)
set -euo pipefail
out=${1:-runs/ovsam-files}
ovdet=${OVDET:-ovdet}
$ovdet shapes generate --out "$out/world" --captions 1 --det-style 0 --det-captions 0 \
    --det-val-uniform 0 --det-captions-companion 0
$ovdet train sam2clip --images "$out/world/det-train/images" --sam shapes-sam \
    --clip shapes-clip --out "$out/sam2clip"
$ovdet train clip2sam --gt "$out/world/det-train/annotations.json" \
    --images "$out/world/det-train" --sam2clip "$out/sam2clip" --out "$out/ovsam"
$ovdet eval-ovsam --gt "$out/world/det-val/annotations.json" --images "$out/world/det-val" \
    --model "$out/ovsam" --sam shapes-sam --baselines --out "$out/table.json"
