#!/bin/sh
# Starts the (pretend) application.
set -eu
cd "$(dirname "$0")/.."
exec ./bin/app --config conf/app.conf "$@"
