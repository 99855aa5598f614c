#!/bin/sh
# Checks that a Go toolchain that can build banger is on PATH: Go 1.21
# or later fetches the exact release go.mod asks for by itself (through
# the module proxy, GOTOOLCHAIN=auto); older ones cannot.
set -eu
GO="${1:-go}"
if ! command -v "$GO" >/dev/null 2>&1; then
	echo "check-go: $GO not found; install Go 1.21 or later from https://go.dev/dl/ (Debian 12's golang-go is 1.19, too old; bookworm-backports has golang-1.21 and later)" >&2
	exit 1
fi
GO=$(command -v "$GO")
# Outside the module: its go line must not make this Go fail or switch.
v=$(cd / && GOTOOLCHAIN=local "$GO" env GOVERSION 2>/dev/null || true)
minor=$(echo "$v" | sed -n 's/^go1\.\([0-9][0-9]*\).*/\1/p')
if [ -z "$minor" ] || [ "$minor" -lt 21 ]; then
	echo "check-go: $GO is ${v:-an unknown version}; banger needs Go 1.21 or later on PATH (it then fetches the release go.mod names); see https://go.dev/dl/" >&2
	exit 1
fi
