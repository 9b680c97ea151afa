#!/bin/sh
# Make sure the Debian packages named as arguments are installed: install the missing ones when
# we are root on a Debian-like system, otherwise say exactly what to install and stop.
set -eu
missing=""
for pkg in "$@"; do
  if command -v dpkg-query >/dev/null 2>&1; then
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
  else
    command -v "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"  # not Debian: look for the command
  fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing the system packages the tests need:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  exit 0
fi
echo "The tests need these system packages, which are not installed:$missing" >&2
if command -v apt-get >/dev/null 2>&1; then
  echo "Install them with: sudo apt-get install$missing" >&2
else
  echo "Install them with your system's package manager (on macOS: xcode-select --install gives g++)." >&2
fi
exit 1
