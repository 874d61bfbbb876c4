#!/usr/bin/env bash
# Java 17+ and Maven run the local Kafka broker; a C compiler builds replay's native fetch loop;
# Prometheus (promtool and the server) checks and runs the alert rules.
# Install them with apt-get when missing and we are root on Debian/Ubuntu; otherwise say what to install.
set -euo pipefail
missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v cc >/dev/null || command -v gcc >/dev/null || missing+=(gcc)
# promtool checks the alert rules in make lint; the Prometheus server runs in the monitoring tests.
{ command -v promtool >/dev/null && command -v prometheus >/dev/null; } || missing+=(prometheus)
if [ "${KSTREAM_E2E_BROWSER:-1}" = "1" ] && [ ! -x /usr/bin/chromium ]; then missing+=(chromium); fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]} with apt-get"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "error: missing ${missing[*]}: install them (or use the conda env in environment.yml)" >&2
  exit 2
fi
