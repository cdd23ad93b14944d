# The conntrackd baseline's configuration, shared by bench_sync.sh and
# bench_ha.sh (sourced after tests/lab/lab.sh).
#
# ctd_write_config FILE gwN DISABLE_EXTERNAL_CACHE "PROTOCOLS" [ADDRESS...]
#   FT-FW over unicast UDP on the sync0 link, with the anchor's tuned
#   settings: big netlink and socket buffers, a resend queue that holds a
#   whole burst, a resync 1 s after an overrun, caches sized for 1M+
#   entries.  DISABLE_EXTERNAL_CACHE On makes the backup write every entry
#   into its kernel table as it arrives (conntrackd's hot standby).  Only
#   PROTOCOLS are synced; the sync link's and loopback addresses, and the
#   ADDRESSes given, are ignored.  Its files live in the lab directory
#   (LockFile is O_EXCL: lab_down removing it avoids stale locks).
ctd_write_config() {
	local file=$1 gw=$2 dis=$3 protos=$4 me them p a
	shift 4
	case $gw in
	gw1) me=10.255.0.1 them=10.255.0.2 ;;
	gw2) me=10.255.0.2 them=10.255.0.1 ;;
	*) echo "ctd_write_config: gw1 or gw2, not $gw" >&2; return 2 ;;
	esac
	{
		cat <<CONF
Sync {
	Mode FTFW {
		ResendQueueSize 4194304
		DisableExternalCache $dis
	}
	UDP {
		IPv4_address $me
		IPv4_Destination_Address $them
		Port 3780
		Interface sync0
		SndSocketBuffer 67108864
		RcvSocketBuffer 67108864
		Checksum on
	}
}
General {
	Systemd off
	HashSize 262144
	HashLimit 4194304
	LogFile $LAB_DIR/ctd-$gw.daemon.log
	Syslog off
	LockFile $LAB_DIR/ctd-$gw.lock
	UNIX {
		Path $LAB_DIR/ctd-$gw.ctl
	}
	NetlinkBufferSize 134217728
	NetlinkBufferSizeMaxGrowth 536870912
	NetlinkOverrunResync 1
	Filter From Userspace {
		Protocol Accept {
CONF
		for p in $protos; do
			printf '\t\t\t%s\n' "$p"
		done
		printf '\t\t}\n\t\tAddress Ignore {\n'
		for a in 127.0.0.1 10.255.0.1 10.255.0.2 "$@"; do
			printf '\t\t\tIPv4_address %s\n' "$a"
		done
		printf '\t\t}\n\t}\n}\n'
	} >"$file"
}
