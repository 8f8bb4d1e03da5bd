#!/usr/bin/env bash
# Self-host the JavaScript the built site needs, so it works offline:
# require.js and the Jupyter widget manager (widgets), and MathJax (math).
# Fetched with `npm pack` from the npm registry into _vendor/vendor/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=_vendor/vendor
STAMP="$DEST/.versions"
VERSIONS="@jupyter-widgets/html-manager@1.0.15 requirejs@2.3.8 mathjax@3.2.2"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$VERSIONS" ]]; then
  exit 0
fi
command -v npm >/dev/null || { echo "vendor_js.sh: npm is needed to fetch the site's JavaScript (apt-get install npm)" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack $VERSIONS --silent >/dev/null)
for f in "$TMP"/*.tgz; do d="${f%.tgz}"; mkdir -p "$d"; tar -xzf "$f" -C "$d"; done
rm -rf "$DEST"; mkdir -p "$DEST/html-manager" "$DEST/mathjax/output/chtml/fonts" "$DEST/mathjax/input/tex"
# widget manager: the AMD bundle and the icon fonts it references (same folder)
HM="$TMP/jupyter-widgets-html-manager-1.0.15/package/dist"
cp "$HM"/embed-amd.js "$DEST/html-manager/"
cp "$HM"/*.woff "$HM"/*.woff2 "$HM"/*.ttf "$HM"/*.eot "$HM"/*.svg "$DEST/html-manager/"
cp "$TMP/requirejs-2.3.8/package/require.js" "$DEST/require.js"
# MathJax: the combined component plus what it loads lazily (fonts, TeX extensions, a11y, ui)
MJ="$TMP/mathjax-3.2.2/package/es5"
cp "$MJ/tex-mml-chtml.js" "$DEST/mathjax/"
cp -r "$MJ/output/chtml/fonts/woff-v2" "$DEST/mathjax/output/chtml/fonts/"
cp -r "$MJ/input/tex/extensions" "$DEST/mathjax/input/tex/"
cp -r "$MJ/a11y" "$MJ/ui" "$DEST/mathjax/"
echo "$VERSIONS" > "$STAMP"
echo "vendored: $VERSIONS ($(du -sh "$DEST" | cut -f1))"
