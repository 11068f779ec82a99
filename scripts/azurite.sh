#!/usr/bin/env bash
# Installs Azurite (Microsoft's Azure Storage emulator, npm package "azurite")
# into a cache directory if it is not there yet, and prints the absolute path
# of its azurite-blob executable on stdout (and nothing else on stdout).
#
# Used by the storage/backend tests, which start azurite-blob on a loopback
# port to run the azblob:// conformance suite. Needs Node.js (>= 18) and npm.
#
# Environment:
#   AZURITE_VERSION    version to install (default 3.37.0)
#   AZURITE_CACHE_DIR  install directory (default
#                      ${XDG_CACHE_HOME:-$HOME/.cache}/crayfish/azurite-$AZURITE_VERSION)
set -euo pipefail

version="${AZURITE_VERSION:-3.37.0}"
cache_root="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}"
dir="${AZURITE_CACHE_DIR:-$cache_root/crayfish/azurite-$version}"
bin="$dir/node_modules/.bin/azurite-blob"

for tool in node npm; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "azurite.sh: '$tool' not found in PATH; install Node.js 20 and npm to run the Azure (Azurite) tests" >&2
		exit 1
	fi
done

installed_version() {
	node -e 'process.stdout.write(require(process.argv[1]).version)' \
		"$dir/node_modules/azurite/package.json" 2>/dev/null || true
}

if [ ! -x "$bin" ] || [ "$(installed_version)" != "$version" ]; then
	mkdir -p "$dir"
	# Serialize concurrent installs into the same directory (parallel test
	# binaries); flock is optional.
	exec 9>"$dir/.install.lock"
	if command -v flock >/dev/null 2>&1; then
		flock 9
	fi
	if [ ! -x "$bin" ] || [ "$(installed_version)" != "$version" ]; then
		echo "azurite.sh: installing azurite@$version into $dir" >&2
		npm install --prefix "$dir" --no-audit --no-fund --no-save --loglevel=error \
			"azurite@$version" >&2
	fi
	exec 9>&-
fi

if [ ! -x "$bin" ]; then
	echo "azurite.sh: npm install finished but $bin is missing" >&2
	exit 1
fi
echo "$bin"
