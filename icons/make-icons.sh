#!/usr/bin/env bash
# Draws pkgseed's icons with ImageMagick: the four tray states and the app icon's source. Each tray icon is a
# coloured disc with a white glyph and a dark rim, so it reads on light and on dark panels alike. Run it after
# changing a glyph; the app icon set (icons/app/) is then made by `npx tauri icon icons/app-source.png -o icons/app`.
set -euo pipefail
cd "$(dirname "$0")"
S=64 # tray icons are drawn at 64 px: panels scale them down to 16-32 px and stay sharp on HiDPI.

disc() { # colour, output, glyph drawing args...
    local colour=$1 out=$2; shift 2
    convert -size ${S}x${S} xc:none \
        -fill "$colour" -stroke '#1b1f23' -strokewidth 3 -draw "circle 32,32 32,3" \
        -stroke none -fill white "$@" \
        -strip -define png:compression-level=9 "$out"
}
# Seeding: an upward arrow on green.
disc '#1f9d55' tray-seeding.png -draw "polygon 32,12 50,32 39,32 39,52 25,52 25,32 14,32"
# Paused: two bars on grey.
disc '#6b7280' tray-paused.png -draw "rectangle 20,17 28,47" -draw "rectangle 36,17 44,47"
# Indexing: three dots on blue (work in progress).
disc '#2563eb' tray-indexing.png -draw "circle 18,32 18,38" -draw "circle 32,32 32,38" -draw "circle 46,32 46,38"
# Error: an exclamation mark on red.
disc '#dc2626' tray-error.png -draw "rectangle 28,12 36,38" -draw "circle 32,47 32,52"

# The app icon's source (512 px): the seeding disc, larger.
convert -size 512x512 xc:none -fill '#1f9d55' -stroke '#1b1f23' -strokewidth 16 -draw "circle 256,256 256,24" \
    -stroke none -fill white -draw "polygon 256,96 400,256 312,256 312,416 200,416 200,256 112,256" \
    -strip app-source.png
