#!/usr/bin/env bash
# Runs every check and test of the project: gofmt, go vet, and go test -race.
# Needs: Go 1.26+, and PostgreSQL reachable at $MEDIATOR_TEST_DATABASE_URL
# (default postgres://postgres@127.0.0.1:5432/postgres) as a user that may
# create databases: each test makes and drops its own database.
set -euo pipefail
cd "$(dirname "$0")/.."

export MEDIATOR_TEST_DATABASE_URL=${MEDIATOR_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}

if ! command -v go >/dev/null; then
  echo "scripts/test.sh: Go is required (https://go.dev/dl/)" >&2
  exit 1
fi
if command -v pg_isready >/dev/null && ! pg_isready -d "$MEDIATOR_TEST_DATABASE_URL" -q; then
  echo "scripts/test.sh: PostgreSQL is not answering at $MEDIATOR_TEST_DATABASE_URL." >&2
  echo "  The tests need a real PostgreSQL (any recent version) where they may create databases." >&2
  echo "  Start one (e.g. pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start," >&2
  echo "  or docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16) or set MEDIATOR_TEST_DATABASE_URL." >&2
  exit 1
fi

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
go test -race -count=1 -timeout 15m "$@" ./...
