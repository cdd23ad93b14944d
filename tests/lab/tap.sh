# tap.sh: TAP output for the lab tests (source it).  ok RC WHAT prints
# "ok N - WHAT" when RC is 0, "not ok N - WHAT" otherwise; diag prints a
# comment line.  tests/run-all.sh counts the lines.
n=0
ok() {
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi
}
diag() { echo "# $*"; }

# check_flows WHAT: two checks of the long-lived traffic (needs lab.sh,
# TCP_CONNS, UDP_FLOWS and the client's $LAB_DIR/long.pid): every flow kept
# its source address and port with no reset, and every TCP connection
# still carries data three seconds later (a stall of some connections
# hides in the total).
check_flows() {
	local c before after stalled
	c=$(lab_traffic_check "$TCP_CONNS")
	before=$(lab_traffic_records)
	cp "$LAB_DIR/server.report" "$LAB_DIR/server.report.before"
	sleep 3
	lab_traffic_check "$TCP_CONNS" >/dev/null
	after=$(lab_traffic_records)
	stalled=$(lab_traffic_stalled "$LAB_DIR/server.report.before")
	[ "$c" = "tcp=$TCP_CONNS udp=$UDP_FLOWS changed=0 reset=0" ]
	ok $? "$1: every connection and flow kept its source address and port ($c)"
	[ "$after" -gt "$before" ] && [ "$stalled" = 0 ] && kill -0 "$(cat "$LAB_DIR/long.pid")" 2>/dev/null
	ok $? "$1: every connection still carries data ($before -> $after records, $stalled stalled)"
}

# check_long_end WHAT [SECS]: the end of the long-lived traffic: stops the
# client (waiting up to SECS, default 30), then two checks: no connection
# broke (WHAT ends the sentence) and nothing reached a provider
# untranslated.
check_long_end() {
	local summary r leaks
	touch "$LAB_DIR/stop-long"
	lab_wait_for "! kill -0 $(cat "$LAB_DIR/long.pid") 2>/dev/null" "${2:-30}"
	summary=$(grep '^long:' "$LAB_DIR/long.log" | tail -1)
	diag "$summary"
	case $summary in *" broken=0 "*) r=0 ;; *) r=1 ;; esac
	ok $r "no connection broke$1"
	leaks=$(lab_leaks)
	ok "$([ "${leaks:-1}" -eq 0 ] && echo 0 || echo 1)" "nothing left towards a provider untranslated ($leaks leaked)"
}

# no_sanitizer_report LOG: 0 when an ASan/UBSan build left no report in LOG.
no_sanitizer_report() { ! grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$1"; }
