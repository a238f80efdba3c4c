#!/usr/bin/env bash
# A smoke run of the order benchmark (bench/run.sh --quick): a few seconds at a low fixed rate, a
# short run as fast as possible and a short scarce-SKU run, on this build's binaries, into a
# temporary folder. Fails when the load generator records any error, the checker
# (tools/check-orders.sh) fails on the orders it placed, or no result JSON is written. No
# assertion on speed.
set -euo pipefail
: "${ORDERFLOWD:?}" "${ORDERFLOW:?}" "${OF_SOURCE_DIR:?}" "${OF_BUILD_PLUGIN_DIR:?}"
# The load generator is built next to the daemon: <build>/host/orderflowd -> <build>/bench/.
OF_LOADGEN=${OF_LOADGEN:-$(cd "$(dirname "$ORDERFLOWD")/.." && pwd)/bench/of-loadgen}
export ORDERFLOWD ORDERFLOW OF_BUILD_PLUGIN_DIR OF_LOADGEN
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
bash "$OF_SOURCE_DIR/bench/run.sh" --quick --out "$out"
result=$(ls "$out"/*.json)
python3 - "$result" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
labels = [r["label"] for r in d["runs"]]
assert labels == ["quick-rate", "quick-max", "quick-scarce"], labels
assert d["summary"]["errors_total"] == 0, d["summary"]["errors_total"]
assert d["checker"]["exit_status"] == 0, d["checker"]["output"]
for r in d["runs"]:
    assert r["intake"]["accepted"] > 0 and r["e2e"]["final"] == r["intake"]["accepted"], r["label"]
sc = d["runs"][2]["e2e"]["finals"]
assert sc["CONFIRMED"] == 50 and sc["REJECTED"] > 0, sc
print("bench smoke: %d orders, no error, the checker passes" % d["summary"]["orders_total"])
PY
