#!/usr/bin/env bash
# Entrypoint of the fedge-prometheus image (deploy/docker/prometheus.Dockerfile):
# Prometheus with /etc/prometheus/fedge.yml (deploy/docker/prometheus.yml),
# its UI and HTTP API on port 9090, its data in /var/lib/prometheus/metrics2
# (the volume prometheus-data), and these settings of deploy/.env:
#   FEDGE_PROMETHEUS_SCRAPE_INTERVAL  how often /metrics is scraped (e.g. 5s)
#   FEDGE_PROMETHEUS_RETENTION        how long samples are kept (e.g. 7d)
#   FEDGE_TLS=0                       the coordinator serves plain HTTP
#                                     (developer mode): scrape without TLS
# Extra arguments are appended to prometheus' flags.
set -euo pipefail

log() { echo "prometheus-entrypoint: $*" >&2; }
die() { log "error: $*"; exit 1; }

config=/tmp/prometheus.yml
cp /etc/prometheus/fedge.yml "$config"
interval="${FEDGE_PROMETHEUS_SCRAPE_INTERVAL:-5s}"
[[ "$interval" =~ ^[0-9]+(ms|s|m|h)$ ]] ||
  die "FEDGE_PROMETHEUS_SCRAPE_INTERVAL: expected a duration like 5s, got '$interval'"
sed -i -E "s/^(  (scrape|evaluation)_interval:).*/\1 $interval/" "$config"
case "${FEDGE_TLS:-1}" in
  0|false|no|off)
    log "FEDGE_TLS=0: scraping the coordinator over plain HTTP"
    sed -i 's/^    scheme: https/    scheme: http/' "$config" ;;
  *)
    [[ -r /certs/ca.pem ]] || die "/certs/ca.pem missing (did the certs service run?)" ;;
esac

flags=(
  --config.file="$config"
  --storage.tsdb.path=/var/lib/prometheus/metrics2
  --storage.tsdb.retention.time="${FEDGE_PROMETHEUS_RETENTION:-7d}"
  --web.listen-address=0.0.0.0:9090
  "$@"
)
log "scraping coordinator:8080/metrics every $interval"
exec /usr/bin/prometheus "${flags[@]}"
