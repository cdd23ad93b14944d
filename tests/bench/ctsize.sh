# shellcheck shell=bash
# The conntrack table size a benchmark needs, shared by bench_sync.sh and
# bench_ha.sh.  Both knobs are global: written in the initial namespace,
# read-only in a child.  nf_conntrack_max limits each namespace on its
# own; nf_conntrack_buckets is one hash table for the whole machine, so
# the lab's gateways fill the same buckets (netns only salts the hash).
# The kernel pairs the two (max = buckets by default); a benchmark that
# raises max without buckets measures chains a node of its own, sized
# the same way, would not walk: with 300 000 entries in gw1, gw2's
# creates cost 50 % more in 262 144 buckets (README, "Benchmarks").
#
# ctsize_raise MAX BUCKETS: raise each to at least its value (0: leave
# it); ctsize_restore puts back what was raised, unless someone changed
# it meanwhile.  Errors go to stderr; 1 when a value could not be set.
ctsize_max=/proc/sys/net/netfilter/nf_conntrack_max
ctsize_buckets=/proc/sys/net/netfilter/nf_conntrack_buckets
ctsize_saved=""	# "file old set" triples, one per line

ctsize_raise_one() {
	local file=$1 want=$2 old
	old=$(cat "$file")
	[ "$want" -gt "$old" ] || return 0
	if ! echo "$want" >"$file"; then
		echo "ctsize: cannot raise $file from $old to $want" >&2
		return 1
	fi
	# The kernel rounds the bucket count up to whole pages.
	ctsize_saved="$ctsize_saved$file $old $(cat "$file")
"
}

ctsize_raise() {
	ctsize_raise_one $ctsize_max "$1" || return 1
	ctsize_raise_one $ctsize_buckets "$2"
}

ctsize_restore() {
	local file old set
	while read -r file old set; do
		[ -n "$file" ] && [ "$(cat "$file")" = "$set" ] && echo "$old" >"$file"
	done <<<"$ctsize_saved"
	ctsize_saved=""
}
