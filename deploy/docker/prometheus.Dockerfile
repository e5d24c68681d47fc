# The fedge-prometheus image of deploy/docker-compose.yml: Debian's Prometheus
# (apt-get install prometheus) on the same base as the fedge images, scraping
# the coordinator's /metrics (prometheus.yml beside this file). No registry?
# deploy/seed-base-image.sh makes debian:bookworm-slim locally.
#
#   docker build -f deploy/docker/prometheus.Dockerfile -t fedge-prometheus deploy/docker
#
# Build context: deploy/docker.
FROM debian:bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive
# The package makes the user prometheus and /var/lib/prometheus (the mount
# point of the compose file's volume prometheus-data, owned by that user).
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt/* \
      /var/log/dpkg.log \
 && prometheus --version
COPY prometheus.yml /etc/prometheus/fedge.yml
COPY prometheus-entrypoint.sh /usr/local/bin/
USER prometheus
WORKDIR /var/lib/prometheus
EXPOSE 9090
ENTRYPOINT ["prometheus-entrypoint.sh"]
