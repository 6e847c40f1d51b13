#!/bin/sh
# Creates a SoftHSM2 token for local development of the PKCS#11 provider.
# Usage: scripts/softhsm-init.sh DIR [TOKEN_LABEL]
#   Writes DIR/softhsm2.conf, DIR/tokens/ and DIR/user.pin (mode 600), initializes the token,
#   and prints the SOFTHSM2_CONF line to export. PINs are random; the SO PIN is not kept.
set -eu
dir=${1:?usage: softhsm-init.sh DIR [TOKEN_LABEL]}
label=${2:-cryptoutil}
command -v softhsm2-util >/dev/null 2>&1 || { echo "softhsm2-util not found: apt-get install -y softhsm2" >&2; exit 1; }
mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$dir" > "$dir/softhsm2.conf"
pin=$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
so_pin=$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
umask 077
printf '%s\n' "$pin" > "$dir/user.pin"
SOFTHSM2_CONF="$dir/softhsm2.conf" softhsm2-util --init-token --free --label "$label" --so-pin "$so_pin" --pin "$pin" >/dev/null
echo "token '$label' ready; PIN file: $dir/user.pin"
echo "export SOFTHSM2_CONF=$dir/softhsm2.conf"
