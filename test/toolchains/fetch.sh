#!/usr/bin/env bash
# fetch.sh: Go toolchains and Debian packages for blindspot's tests, fetched
# without touching the system's apt state (a private apt configuration whose
# one source line uses the mirror of /etc/apt/sources.list.d/*.sources).
#
#   fetch.sh go 1.NN                     print the path of Go 1.NN's go command
#   fetch.sh deb SUITE PKG[=VER]...      unpack packages, print one dir per PKG
#
# Go 1.19 is the system's golang-1.19-go (installed with apt-get if missing);
# 1.21, 1.22, 1.23 come from bookworm-backports and 1.24 from trixie
# (golang-1.NN-go + golang-1.NN-src unpacked into one tree, run with
# GOTOOLCHAIN=local). Packages are unpacked with dpkg -x into
# $CACHE/debs/SUITE/PKG/. Only results go to stdout; progress goes to stderr.
#
# Cached and idempotent: a tree is used once its .done marker exists, which
# is written only after the tree was verified. Concurrent calls serialise on
# an flock in the cache. Apt lists are refreshed at most once a day.
#
# Environment: BLINDSPOT_CACHE (default /var/cache/blindspot),
# BLINDSPOT_DEBIAN_MIRROR (default: the machine's own Debian mirror).
set -euo pipefail

CACHE=${BLINDSPOT_CACHE:-/var/cache/blindspot}
LOCK_WAIT=1800 # seconds to wait for another fetch.sh holding the lock
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

log() { echo "fetch.sh: $*" >&2; }
die() { log "$*"; exit 1; }
usage() {
	echo "usage: fetch.sh go 1.NN | fetch.sh deb SUITE PKG[=VERSION]..." >&2
	exit 2
}

# suite_of_go prints the Debian suite that carries golang-1.NN-go.
suite_of_go() {
	case $1 in
	1.21 | 1.22 | 1.23) echo bookworm-backports ;;
	1.24) echo trixie ;;
	*) return 1 ;;
	esac
}

# mirror prints the URI of the machine's Debian mirror: the first URIs: of a
# deb822 stanza in /etc/apt/sources.list.d/*.sources that is not
# debian-security (or of a one-line entry in /etc/apt/sources.list).
mirror() {
	if [[ -n ${BLINDSPOT_DEBIAN_MIRROR:-} ]]; then
		echo "$BLINDSPOT_DEBIAN_MIRROR"
		return
	fi
	local uri=""
	shopt -s nullglob
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		uri=$(awk '
			/^[ \t]*$/ { if (u != "" && u !~ /security/) { print u; exit } u = ""; next }
			tolower($1) == "uris:" { u = $2 }
			END { if (u != "" && u !~ /security/) print u }
		' "$f" | head -n1)
		[[ -n $uri ]] && break
	done
	shopt -u nullglob
	if [[ -z $uri && -r /etc/apt/sources.list ]]; then
		uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($i !~ /security/) { print $i; exit } break } }' /etc/apt/sources.list)
	fi
	[[ -n $uri ]] || die "no Debian mirror in /etc/apt/sources.list.d/*.sources"
	echo "${uri%/}"
}

# apt_setup SUITE prepares $CACHE/apt/SUITE and sets APT_OPTS and APT_DIR.
apt_setup() {
	local suite=$1
	APT_DIR=$CACHE/apt/$suite
	mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/parts" "$APT_DIR/state" "$APT_DIR/log"
	local signed="signed-by=$KEYRING"
	[[ -r $KEYRING ]] || { log "no $KEYRING: trusting $suite unsigned"; signed="trusted=yes"; }
	echo "deb [$signed] $(mirror) $suite main" >"$APT_DIR/sources.list.new"
	mv "$APT_DIR/sources.list.new" "$APT_DIR/sources.list"
	# Read before the system's apt.conf.d, which this keeps apt from reading
	# (its hooks and extra index targets are the system's business).
	printf 'Dir::Etc::Parts "%s";\nDir::Etc::Main "/dev/null";\n' "$APT_DIR/parts" >"$APT_DIR/apt.conf"
	APT_OPTS=(
		-o "Dir::Etc::SourceList=$APT_DIR/sources.list"
		-o Dir::Etc::SourceParts=/dev/null
		-o Dir::Etc::Preferences=/dev/null
		-o Dir::Etc::PreferencesParts=/dev/null
		-o "Dir::State=$APT_DIR/state"
		-o "Dir::State::Lists=$APT_DIR/lists"
		-o Dir::State::status=/dev/null
		-o "Dir::Cache=$APT_DIR/cache"
		-o "Dir::Log=$APT_DIR/log"
		-o Debug::NoLocking=1
		-o APT::Sandbox::User=root
		-o Acquire::Languages=none
		-o Acquire::Check-Valid-Until=false
		-o Acquire::Retries=3
		-o Acquire::http::Timeout=60
		-q
	)
}

apt_private() { APT_CONFIG=$APT_DIR/apt.conf apt-get "${APT_OPTS[@]}" "$@"; }

# apt_update SUITE [force] refreshes SUITE's lists when older than a day.
apt_update() {
	local stamp=$APT_DIR/updated
	if [[ ${2:-} != force && -e $stamp && -z $(find "$stamp" -mmin +1440) ]]; then
		return
	fi
	log "apt-get update ($1)"
	apt_private update >&2 || die "apt-get update of $1 failed"
	touch "$stamp"
}

# download SUITE DESTDIR PKG[=VER]...: apt-get download into DESTDIR.
download() {
	local suite=$1 dest=$2
	shift 2
	apt_setup "$suite"
	apt_update "$suite"
	mkdir -p "$dest"
	local err=$APT_DIR/download.err
	if ! (cd "$dest" && apt_private download "$@" 2>"$err" >&2); then
		cat "$err" >&2
		# A .deb the lists name but the mirror no longer has: the lists
		# are stale, refresh them once (an unknown package is not that).
		grep -q '^E: Failed to fetch' "$err" || die "apt-get download $* from $suite failed"
		log "refreshing the lists of $suite once"
		apt_update "$suite" force
		(cd "$dest" && apt_private download "$@" >&2) || die "apt-get download $* from $suite failed"
	fi
}

# debver DEB prints PKG=VERSION of a .deb file.
debver() { dpkg-deb --showformat='${Package}=${Version}\n' -W "$1"; }

# with_lock runs "$@" holding the cache lock.
with_lock() {
	mkdir -p "$CACHE"
	(
		flock -w "$LOCK_WAIT" 9 || die "timed out waiting for $CACHE/.lock"
		"$@"
	) 9>"$CACHE/.lock"
}

go_tree_bin() { echo "$CACHE/toolchains/go$1/usr/lib/go-$1/bin/go"; }

# verify_go GO MINOR: GO runs, reports release MINOR, and its GOROOT is its own tree.
verify_go() {
	local gobin=$1 minor=$2 ver root
	ver=$(env -u GOROOT -u GOFLAGS GOTOOLCHAIN=local "$gobin" version 2>&1) || die "$gobin version: $ver"
	[[ $ver == "go version go$minor."* || $ver == "go version go$minor "* ]] || die "$gobin reports '$ver', want go$minor"
	root=$(env -u GOROOT GOTOOLCHAIN=local "$gobin" env GOROOT 2>&1) || die "$gobin env GOROOT: $root"
	[[ $(realpath "$root") == $(realpath "$(dirname "$(dirname "$gobin")")") ]] || die "$gobin uses GOROOT $root, not its own tree"
	log "$ver"
}

fetch_go_locked() {
	local minor=$1 suite=$2
	local dir=$CACHE/toolchains/go$minor gobin
	gobin=$(go_tree_bin "$minor")
	[[ -e $dir/.done ]] && return
	local tmp=$CACHE/toolchains/.go$minor.tmp
	rm -rf "$tmp" "$dir"
	download "$suite" "$tmp/debs" "golang-$minor-go" "golang-$minor-src"
	local deb
	for deb in "$tmp"/debs/*.deb; do
		log "unpack $(basename "$deb")"
		dpkg -x "$deb" "$tmp/tree"
	done
	mv "$tmp/tree" "$dir"
	verify_go "$gobin" "$minor"
	for deb in "$tmp"/debs/*.deb; do debver "$deb"; done >"$dir/.done.new"
	mv "$dir/.done.new" "$dir/.done"
	rm -rf "$tmp"
}

cmd_go() {
	[[ $# -eq 1 ]] || usage
	local minor=$1 suite
	if [[ $minor == 1.19 ]]; then
		local sys=/usr/lib/go-1.19/bin/go
		if [[ ! -x $sys ]]; then
			[[ $(id -u) == 0 ]] || die "$sys is missing and installing golang-1.19-go needs root"
			log "apt-get install golang-1.19-go"
			export DEBIAN_FRONTEND=noninteractive
			with_lock sh -c 'apt-get install -y -q golang-1.19-go >&2 || { apt-get update -q >&2 && apt-get install -y -q golang-1.19-go >&2; }'
		fi
		verify_go "$sys" 1.19
		echo "$sys"
		return
	fi
	suite=$(suite_of_go "$minor") || die "no Debian toolchain for Go $minor (have 1.19, 1.21, 1.22, 1.23, 1.24)"
	local gobin
	gobin=$(go_tree_bin "$minor")
	if [[ ! -e $CACHE/toolchains/go$minor/.done ]]; then
		with_lock fetch_go_locked "$minor" "$suite"
	fi
	echo "$gobin"
}

fetch_debs_locked() {
	local suite=$1
	shift
	local spec pkg want dir todo=()
	for spec in "$@"; do
		pkg=${spec%%=*}
		want=""
		[[ $spec == *=* ]] && want=$pkg=${spec#*=}
		dir=$CACHE/debs/$suite/$pkg
		if [[ -e $dir/.done ]] && [[ -z $want || $(cat "$dir/.done") == "$want" ]]; then
			continue
		fi
		todo+=("$spec")
	done
	[[ ${#todo[@]} -gt 0 ]] || return 0
	local tmp=$CACHE/debs/.$suite.tmp
	rm -rf "$tmp"
	download "$suite" "$tmp/debs" "${todo[@]}"
	for spec in "${todo[@]}"; do
		pkg=${spec%%=*}
		dir=$CACHE/debs/$suite/$pkg
		local deb
		deb=$(find "$tmp/debs" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
		[[ -n $deb ]] || die "apt-get download $spec left no .deb"
		log "unpack $(basename "$deb")"
		rm -rf "$tmp/tree" "$dir"
		dpkg -x "$deb" "$tmp/tree"
		debver "$deb" >"$tmp/tree/.done"
		mkdir -p "$(dirname "$dir")"
		mv "$tmp/tree" "$dir"
	done
	rm -rf "$tmp"
}

cmd_deb() {
	[[ $# -ge 2 ]] || usage
	local suite=$1 spec
	shift
	[[ $suite =~ ^[a-z][a-z0-9-]*$ ]] || die "bad suite name '$suite'"
	for spec in "$@"; do
		[[ $spec =~ ^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+:~-]+)?$ ]] || die "bad package '$spec'"
	done
	local all=1
	for spec in "$@"; do
		[[ $spec != *=* && -e $CACHE/debs/$suite/$spec/.done ]] || all=0
	done
	[[ $all == 1 ]] || with_lock fetch_debs_locked "$suite" "$@"
	for spec in "$@"; do
		echo "$CACHE/debs/$suite/${spec%%=*}"
	done
}

[[ $# -ge 1 ]] || usage
case $1 in
go) shift; cmd_go "$@" ;;
deb) shift; cmd_deb "$@" ;;
*) usage ;;
esac
