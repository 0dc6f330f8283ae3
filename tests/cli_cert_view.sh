#!/usr/bin/env bash
# Certificates looked at the way a person would: the comparison page opened in headless Chromium
# and screenshotted, the label PDF turned into PNG with pdftoppm; every picture must exist and not
# be blank. The certificates, labels and page come from `test_cert_label --demo DIR` (built next
# to the renflow binary); the page is also made through `renflow certify --compare` from files and
# directories (a file that is not a certificate, or a directory without one, must exit 1 naming it).
# Without chromium or pdftoppm the viewing steps are skipped with a message (failed when CI=true).
# RF_CERT_VIEW_KEEP=DIR keeps the screenshots there.
set -u
R=${RF_CLI:?RF_CLI must point to the renflow binary}
BIN="$(dirname "$R")/test_cert_label"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
missing_tool() {
  if [ "${CI:-}" = "true" ]; then echo "FAIL $1 is not installed (CI=true)"; fail=1
  else echo "skip $1 is not installed: $2 not checked"; fi
}
# "width height nonwhite colours red" of a PNG, decoded with cairo by the test binary
stats() { "$BIN" --png-stats "$1" 2>/dev/null; }
# not blank: at least $2 of the pixels not white and at least $3 distinct (coarse) colours
not_blank() {
  local s; s=$(stats "$1") || return 1
  echo "     $1: $s (width height non-white colours red-pixels)"
  awk -v s="$s" -v f="$2" -v c="$3" 'BEGIN{split(s,a," "); exit !(a[1]>100 && a[2]>100 && a[3]>=f && a[4]>=c)}'
}

check "test_cert_label is built next to renflow" '[ -x "$BIN" ]'
[ -x "$BIN" ] || exit 1
"$BIN" --demo "$T/demo" > "$T/demo.out" 2>&1
check "demo certificates, labels and pages written" '[ -f "$T/demo/compare/index.html" ] && [ -f "$T/demo/label/label.pdf" ] && [ -f "$T/demo/label-failing/label.png" ]'
check "the page warns about different test data" 'grep -q "different test data" "$T/demo/compare/index.html"'
check "the one-data-set page does not" '! grep -q "different test data" "$T/demo/compare-same-data/index.html"'
check "the page shows the Pareto plot" 'grep -q "src=\"pareto.svg\"" "$T/demo/compare/index.html" && [ -s "$T/demo/compare/pareto.svg" ] && [ -s "$T/demo/compare/pareto.png" ]'
check "label PNG is not blank" 'not_blank "$T/demo/label/label.png" 0.15 40'

# ---- the command line: renflow certify --compare (files, or directories written by certify) ----
C="$T/demo/certs"
mkdir -p "$T/dirs/flow-d"
cp "$C/flow-a.json" "$T/dirs/flow-d/certificate.json"
"$R" certify --compare "$C/flow-a.json" "$C/flow-b.json" "$C/flow-c.json" "$T/dirs/flow-d/" --out "$T/cli" > "$T/out" 2> "$T/err"
rc=$?
check "certify --compare exits 0" '[ $rc -eq 0 ] || { cat "$T/err"; false; }'
check "certify --compare writes the page" '[ -f "$T/cli/index.html" ] && [ -f "$T/cli/pareto.svg" ] && grep -q "flow-b" "$T/cli/index.html"'
check "a directory is read as DIR/certificate.json and named by the directory" 'grep -q "<th>flow-d</th>" "$T/cli/index.html"'
printf '{"schema": "someone-else/9"}\n' > "$T/notcert.json"
"$R" certify --compare "$C/flow-a.json" "$T/notcert.json" --out "$T/cli2" > "$T/out" 2> "$T/err"
rc=$?
check "a file that is not a certificate exits 1 and is named" '[ $rc -eq 1 ] && grep -q "notcert.json" "$T/err"'
"$R" certify --compare "$C/flow-a.json" "$T/dirs" --out "$T/cli3" > "$T/out" 2> "$T/err"
rc=$?
check "a directory without certificate.json exits 1 and names the file" '[ $rc -eq 1 ] && grep -q "dirs/certificate.json" "$T/err"'
check "nothing is written after an error" '[ ! -e "$T/cli2/index.html" ] && [ ! -e "$T/cli3/index.html" ]'

# ---- headless Chromium: the page and its images ----
CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
shot() { # URL PNG WIDTH HEIGHT
  timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
    --user-data-dir="$T/chrome" --screenshot="$2" --window-size="$3,$4" "$1" > "$T/chrome.log" 2>&1
}
if [ -n "$CHROME" ]; then
  shot "file://$T/demo/compare/index.html" "$T/page.png" 1280 2400
  check "chromium screenshot of the comparison page exists" '[ -s "$T/page.png" ] || { tail -5 "$T/chrome.log"; false; }'
  check "the screenshot is not blank" 'not_blank "$T/page.png" 0.10 40'
  # the images alone (SVG plot and labels as <img>): a page that is blank unless they load
  cat > "$T/demo/compare/images.html" <<EOF
<!DOCTYPE html><html><body style="margin:0;background:#fff">
<img src="pareto.svg" width="760"><br>
$(grep -o '<img src="labels/[^"]*"' "$T/demo/compare/index.html" | head -2 | sed 's/$/ width="380">/')
</body></html>
EOF
  shot "file://$T/demo/compare/images.html" "$T/images.png" 800 1400
  check "the SVG plot and labels render in chromium" 'not_blank "$T/images.png" 0.10 30'
  if [ -n "${RF_CERT_VIEW_KEEP:-}" ]; then
    mkdir -p "$RF_CERT_VIEW_KEEP" && cp "$T/page.png" "$T/images.png" "$RF_CERT_VIEW_KEEP/"
  fi
else
  missing_tool chromium "the comparison page in a browser"
fi

# ---- pdftoppm: the PDF label as a picture, the same page as cairo's PNG ----
if command -v pdftoppm > /dev/null 2>&1; then
  pdftoppm -png -r 72 -singlefile "$T/demo/label-failing/label.pdf" "$T/pdf" > "$T/pdf.log" 2>&1
  check "pdftoppm renders the PDF label" '[ -s "$T/pdf.png" ] || { cat "$T/pdf.log"; false; }'
  check "the PDF label is not blank" 'not_blank "$T/pdf.png" 0.12 30'
  # at 72 dpi one PDF point is one pixel: the PDF page is the PNG label at half its scale (2 px/pt),
  # and the failing guarantee is drawn in red in both
  check "the PDF page has the label's size and its red" '
    p=$(stats "$T/pdf.png"); q=$(stats "$T/demo/label-failing/label.png");
    awk -v p="$p" -v q="$q" "BEGIN{split(p,a,\" \"); split(q,b,\" \");
      exit !(a[1] >= b[1]/2 - 1 && a[1] <= b[1]/2 + 1 && a[2] >= b[2]/2 - 1 && a[2] <= b[2]/2 + 1 && a[5] > 5000)}"'
  if [ -n "${RF_CERT_VIEW_KEEP:-}" ]; then mkdir -p "$RF_CERT_VIEW_KEEP" && cp "$T/pdf.png" "$RF_CERT_VIEW_KEEP/"; fi
else
  missing_tool pdftoppm "the PDF label as an image"
fi
exit $fail
