#!/usr/bin/env bash
# Backs up every member of a RiftKV cluster: reads the members from URL's /v1/admin/status and
# asks each node to write an online snapshot of itself into OUTDIR/<node_id>-<timestamp> on
# that node's own file system (POST /v1/admin/backup). One timestamp (UTC) for the whole run.
#
#   ops/backup-cluster.sh http://10.0.0.1:8701 /var/backups/riftkv
#
# OUTDIR must be absolute (each node resolves it on its own machine). With --auth on, set
# RIFTKV_TOKEN to a token with the admin permission; for https, RIFTKV_CA to the CA file.
# Every member is asked even when one fails; the exit code is 1 if any backup failed, 2 for
# usage errors. Restore one node with `riftkv admin restore` (docs/operations.md).
set -euo pipefail

usage() {
    echo "usage: $0 URL OUTDIR  (OUTDIR absolute, on every node's file system)" >&2
    exit 2
}
[[ $# -eq 2 ]] || usage
url="${1%/}"
outdir="${2%/}"
[[ "$outdir" == /* ]] || usage
for tool in curl jq; do
    command -v "$tool" >/dev/null || {
        echo "$0: needs $tool" >&2
        exit 2
    }
done

curl_args=(--silent --show-error --max-time 600)
[[ -n "${RIFTKV_TOKEN:-}" ]] && curl_args+=(--header "Authorization: Bearer $RIFTKV_TOKEN")
[[ -n "${RIFTKV_CA:-}" ]] && curl_args+=(--cacert "$RIFTKV_CA")
scheme="${url%%://*}"

status=$(curl "${curl_args[@]}" --fail "$url/v1/admin/status") || {
    echo "$0: cannot read $url/v1/admin/status" >&2
    exit 2
}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
failed=0
while IFS=$'\t' read -r node api; do
    out="$outdir/$node-$stamp"
    body=$(jq -cn --arg out "$out" '{out: $out}')
    answer=$(curl "${curl_args[@]}" --write-out '\n%{http_code}' -X POST \
        --header 'content-type: application/json' --data "$body" \
        "$scheme://$api/v1/admin/backup" 2>&1) || true
    code="${answer##*$'\n'}"
    if [[ "$code" == 201 ]]; then
        echo "$node: backed up into $out (on $api)"
    else
        echo "$node: backup FAILED ($api, HTTP ${code:-none}): ${answer%$'\n'*}" >&2
        failed=1
    fi
done < <(jq -r '.members[] | [.node_id, .api_addr] | @tsv' <<<"$status")
exit "$failed"
